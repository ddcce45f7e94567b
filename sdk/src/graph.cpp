#include "mcompress/sdk/graph.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

#include <algorithm>

#include <fmt/format.h>

#include "mcompress/sdk/error.h"

namespace mcompress {

std::shared_ptr<torch::jit::Graph> inlined_forward_graph(const torch::jit::Module& module) {
  auto method = module.find_method("forward");
  if (!method) throw Error("the model has no forward method");
  auto graph = method->graph()->copy();
  torch::jit::Inline(*graph);
  return graph;
}

std::optional<AttributePath> attribute_path(const torch::jit::Value* value) {
  std::vector<std::string> names;
  const torch::jit::Value* v = value;
  while (v->node()->kind() == torch::jit::prim::GetAttr) {
    names.push_back(v->node()->s(torch::jit::attr::name));
    v = v->node()->input(0);
  }
  // The chain must end at the graph's first input (self).
  if (names.empty() || v->node()->kind() != torch::jit::prim::Param || v->offset() != 0) {
    return std::nullopt;
  }
  AttributePath path;
  path.attribute = names.front();
  for (size_t i = names.size(); i-- > 1;) {
    if (!path.module_path.empty()) path.module_path += ".";
    path.module_path += names[i];
  }
  return path;
}

torch::jit::Module submodule_at(const torch::jit::Module& root, const std::string& path) {
  torch::jit::Module current = root;
  size_t start = 0;
  while (start < path.size()) {
    size_t dot = path.find('.', start);
    if (dot == std::string::npos) dot = path.size();
    const std::string name = path.substr(start, dot - start);
    auto slot = current.type()->findAttributeSlot(name);
    if (!slot || !current._ivalue()->getSlot(*slot).isModule()) {
      throw Error(fmt::format("the model has no submodule '{}'", path));
    }
    current = current._ivalue()->getSlot(*slot).toModule();
    start = dot + 1;
  }
  return current;
}

namespace {

void collect_nodes(torch::jit::Block* block, std::vector<torch::jit::Node*>& out) {
  for (torch::jit::Node* node : block->nodes()) {
    out.push_back(node);
    for (torch::jit::Block* sub : node->blocks()) collect_nodes(sub, out);
  }
}

}  // namespace

// Scripted models branch on flags such as `self.training` or torchvision's
// `self.use_res_connect`, which hides layers inside prim::If blocks where they
// cannot be tapped, and couples values that only one branch relates.
void fold_flag_attributes(const std::shared_ptr<torch::jit::Graph>& graph,
                          const torch::jit::Module& module, bool include_ints,
                          const std::vector<std::string>& keep) {
  std::vector<torch::jit::Node*> nodes;
  collect_nodes(graph->block(), nodes);
  for (torch::jit::Node* node : nodes) {
    if (node->kind() == torch::jit::prim::SetAttr) return;
  }
  for (torch::jit::Node* node : nodes) {
    if (node->kind() != torch::jit::prim::GetAttr) continue;
    const auto type = node->output()->type()->kind();
    const bool flag = type == c10::TypeKind::BoolType || type == c10::TypeKind::FloatType ||
                      (include_ints && type == c10::TypeKind::IntType);
    if (!flag) continue;
    auto path = attribute_path(node->output());
    if (!path || std::find(keep.begin(), keep.end(), path->attribute) != keep.end()) continue;
    const c10::IValue value = submodule_at(module, path->module_path).attr(path->attribute);
    torch::jit::WithInsertPoint insert_at(node);
    node->output()->replaceAllUsesWith(graph->insertConstant(value));
  }
  auto mutable_graph = graph;
  torch::jit::ConstantPropagationImmutableTypes(mutable_graph);
  torch::jit::EliminateDeadCode(graph);
}

std::vector<c10::IValue> run_with_taps(const torch::jit::Module& module,
                                       const std::shared_ptr<torch::jit::Graph>& graph,
                                       const std::vector<torch::jit::Value*>& taps,
                                       const std::vector<c10::IValue>& inputs) {
  // Return (original output, tap0, tap1, ...) as one tuple.
  std::vector<torch::jit::Value*> outputs{graph->outputs().at(0)};
  outputs.insert(outputs.end(), taps.begin(), taps.end());
  auto* tuple = graph->insertNode(graph->createTuple(outputs));
  tuple->moveBefore(graph->return_node());
  graph->return_node()->replaceInput(0, tuple->output());

  // Restore the graph's single output so the caller can tap again, also
  // when the model throws (e.g. on an input size it does not accept).
  auto restore = [&] {
    graph->return_node()->replaceInput(0, outputs.front());
    tuple->destroy();
  };
  try {
    // A function run once or a few times: optimising the graph costs more
    // than it saves (seconds for a ResNet-50).
    torch::jit::GraphOptimizerEnabledGuard no_optimization(false);
    torch::jit::GraphFunction function("mcompress_taps", graph, nullptr);
    std::vector<c10::IValue> stack{module._ivalue()};
    stack.insert(stack.end(), inputs.begin(), inputs.end());
    auto result = function(stack).toTuple();
    std::vector<c10::IValue> values(result->elements().begin() + 1, result->elements().end());
    restore();
    return values;
  } catch (...) {
    restore();
    throw;
  }
}

}  // namespace mcompress
