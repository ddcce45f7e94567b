#include "onnx_graph_preparation.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/freeze_module.h>
#include <torch/csrc/jit/passes/remove_mutation.h>

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <unordered_set>
#include <vector>

#include "mcompress/models/module_copy.h"
#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

// The interpreter's message is a TorchScript traceback; its last line says what failed.
std::string last_line(const std::string& text) {
  size_t end = text.find_last_not_of(" \n");
  if (end == std::string::npos) return text;
  const size_t start = text.rfind('\n', end);
  return text.substr(start == std::string::npos ? 0 : start + 1, end - (start == std::string::npos ? 0 : start + 1) + 1);
}

// Values computed from the input's data rather than only its shape: a
// branch on one of them cannot be decided once for every input.
std::unordered_set<const Value*> data_dependent_values(const Graph& graph) {
  static const std::unordered_set<c10::Symbol> shape_queries{
      c10::Symbol::fromQualString("aten::size"), c10::Symbol::fromQualString("aten::dim"),
      c10::Symbol::fromQualString("aten::numel"), c10::Symbol::fromQualString("prim::dtype"),
      c10::Symbol::fromQualString("prim::device")};
  std::unordered_set<const Value*> dependent(graph.inputs().begin() + 1, graph.inputs().end());
  for (const Node* node : graph.nodes()) {
    if (shape_queries.count(node->kind())) continue;
    // What a branch or loop computes inside is not among its inputs: assume the worst.
    if (!node->blocks().empty()) {
      dependent.insert(node->outputs().begin(), node->outputs().end());
      continue;
    }
    const bool reads_data = std::any_of(node->inputs().begin(), node->inputs().end(),
                                        [&](const Value* input) { return dependent.count(input) > 0; });
    if (reads_data) dependent.insert(node->outputs().begin(), node->outputs().end());
  }
  return dependent;
}

// Values the example run can report: a tuple cannot hold the module itself.
bool observable(const Value* value) {
  return value->node()->kind() != c10::prim::Constant && value->type()->kind() != c10::TypeKind::ClassType;
}

// Runs a copy of `graph` whose only output is a tuple of every observable
// top-level value, and maps each value of `graph` to what it held.
std::unordered_map<const Value*, c10::IValue> observe(const std::shared_ptr<Graph>& graph, const c10::IValue& self,
                                                      const at::Tensor& example) {
  std::shared_ptr<Graph> probe = graph->copy();
  std::vector<const Value*> originals;
  std::vector<Value*> copies;
  auto collect = [&](const Value* original, Value* copy) {
    if (!observable(original)) return;
    originals.push_back(original);
    copies.push_back(copy);
  };
  for (size_t i = 0; i < graph->inputs().size(); ++i) collect(graph->inputs()[i], probe->inputs()[i]);
  // copy() keeps the order of nodes, so the two lists walk in step.
  auto original_node = graph->nodes().begin();
  for (Node* copy_node : probe->nodes()) {
    for (size_t i = 0; i < copy_node->outputs().size(); ++i) collect(original_node->outputs()[i], copy_node->outputs()[i]);
    ++original_node;
  }
  while (!probe->outputs().empty()) probe->eraseOutput(0);
  Node* tuple = probe->createTuple(copies);
  probe->appendNode(tuple);
  probe->registerOutput(tuple->output());

  torch::jit::GraphFunction function("mcompress_export_probe", probe, nullptr, torch::jit::ExecutorExecutionMode::SIMPLE);
  c10::IValue result;
  try {
    torch::NoGradGuard no_grad;
    result = function({self, example});
  } catch (const std::exception& error) {
    throw Error(fmt::format("the model does not run on an input of shape [{}] ({}); check the input shape",
                            fmt::join(example.sizes(), ", "), last_line(error.what())));
  }
  const auto& elements = result.toTupleRef().elements();
  std::unordered_map<const Value*, c10::IValue> observed;
  for (size_t i = 0; i < originals.size(); ++i) observed.emplace(originals[i], elements[i]);
  return observed;
}

// The branch taken moves before the If, whose outputs become the branch's.
void keep_branch(Node* if_node, bool condition) {
  torch::jit::Block* branch = if_node->blocks()[condition ? 0 : 1];
  for (auto it = branch->nodes().begin(); it != branch->nodes().end();) {
    Node* node = *it;
    ++it;
    node->moveBefore(if_node);
  }
  for (size_t i = 0; i < if_node->outputs().size(); ++i) if_node->outputs()[i]->replaceAllUsesWith(branch->outputs()[i]);
  if_node->destroy();
}

std::optional<bool> decided_condition(const Node* if_node,
                                      const std::unordered_map<const Value*, c10::IValue>& observed) {
  const Value* condition = if_node->input(0);
  if (auto constant = torch::jit::toIValue(condition)) return constant->toBool();
  auto found = observed.find(condition);
  if (found == observed.end() || !found->second.isBool()) return std::nullopt;
  return found->second.toBool();
}

}  // namespace

std::string source_location(const Node* node) {
  torch::jit::SourceRange range = node->sourceRange();
  if (!range.source()) return "";
  // A loaded model's nodes point into its serialized code; the model's own source generated it.
  if (auto original = range.findSourceRangeThatGenerated()) range = *original;
  if (auto where = range.file_line_col()) {
    const auto& [file, line, column] = *where;
    return fmt::format("{}:{}:{}", file.empty() ? "<model code>" : file, line, column);
  }
  return "";
}

ExportableForward prepare_forward_for_export(const torch::jit::Module& model, const at::Tensor& example) {
  if (!model.find_method("forward")) throw Error("the model has no forward method to export");
  torch::jit::Module copy = deep_copy(model);
  copy.eval();
  ExportableForward forward;
  try {
    forward.frozen = torch::jit::freeze(copy, c10::nullopt, /*optimize_numerics=*/true);
  } catch (const c10::Error& error) {
    throw Error(fmt::format("the model cannot be frozen for export: {}", error.what_without_backtrace()));
  }
  forward.graph = forward.frozen.get_method("forward").graph()->copy();
  torch::jit::RemoveTensorMutation(forward.graph);
  const c10::IValue self = forward.frozen._ivalue();

  // Each round inlines what the run decided; branches inside a kept branch
  // are decided by the next run.
  for (;;) {
    forward.observed = observe(forward.graph, self, example);
    const auto dependent = data_dependent_values(*forward.graph);
    std::vector<std::pair<Node*, bool>> decided;
    for (Node* node : forward.graph->nodes()) {
      if (node->kind() != c10::prim::If || dependent.count(node->input(0))) continue;
      if (auto condition = decided_condition(node, forward.observed)) decided.emplace_back(node, *condition);
    }
    if (decided.empty()) break;
    for (const auto& [node, condition] : decided) keep_branch(node, condition);
    torch::jit::EliminateDeadCode(forward.graph);
    torch::jit::RemoveTensorMutation(forward.graph);
  }
  return forward;
}

}  // namespace mcompress
