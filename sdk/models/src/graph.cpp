#include "mcompress/models/graph.h"

#include <ATen/Parallel.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/runtime/interpreter.h>

#include <algorithm>
#include <future>

#include <fmt/format.h>

#include "mcompress/sdk/error.h"

namespace mcompress {

namespace {

// Inlines every method and function call of `block`, and of the bodies it
// inlines, from the callees' own graphs. torch::jit::Inline inlines each
// callee's optimised graph instead, which it first builds by running the
// pre-optimisation passes on every method of the model: most of the time of
// a dependency analysis on a freshly loaded model. Constant propagation,
// which the analysis needs, runs once on the whole graph afterwards.
void inline_calls(torch::jit::Block* block) {
  for (torch::jit::Node* node = block->nodes().front(); node != block->return_node();) {
    torch::jit::GraphFunction* callee = nullptr;
    if (node->kind() == c10::prim::CallMethod) {
      if (auto type = node->input(0)->type()->cast<c10::ClassType>()) {
        callee = torch::jit::tryToGraphFunction(type->getMethod(node->s(torch::jit::attr::name)));
      }
    } else if (node->kind() == c10::prim::CallFunction) {
      callee = torch::jit::tryToGraphFunction(node);
      if (callee) node->removeInput(0);  // the function constant; the arguments remain
    }
    if (!callee) {
      for (torch::jit::Block* inner : node->blocks()) inline_calls(inner);
      node = node->next();
      continue;
    }
    // Continue at the first inlined node, so calls in the body are inlined too.
    torch::jit::Node* before = node->prev();
    torch::jit::inlineCallTo(node, callee, callee->graph().get());
    node = before->next();
  }
}

}  // namespace

std::shared_ptr<torch::jit::Graph> inlined_forward_graph(const torch::jit::Module& module) {
  auto method = module.find_method("forward");
  if (!method) throw Error("the model has no forward method");
  auto graph = method->graph()->copy();
  inline_calls(graph->block());
  torch::jit::ConstantPropagationImmutableTypes(graph);
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
  return run_with_taps_on_each(module, graph, taps, {inputs}).front();
}

std::vector<std::vector<c10::IValue>> run_with_taps_on_each(
    const torch::jit::Module& module, const std::shared_ptr<torch::jit::Graph>& graph,
    const std::vector<torch::jit::Value*>& taps, const std::vector<std::vector<c10::IValue>>& input_sets) {
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
    // Compiled straight into interpreter code: a graph executor would first
    // copy the graph and run passes that a graph run once or twice does not
    // repay. Runs share the code, each with its own interpreter state.
    const torch::jit::Code code(graph, "mcompress_taps");
    const bool grad_enabled = c10::GradMode::is_enabled();
    auto run = [&](const std::vector<c10::IValue>& inputs) {
      c10::AutoGradMode grad_mode(grad_enabled);
      std::vector<c10::IValue> stack{module._ivalue()};
      stack.insert(stack.end(), inputs.begin(), inputs.end());
      torch::jit::InterpreterState(code).run(stack);
      auto result = stack.back().toTuple();
      return std::vector<c10::IValue>(result->elements().begin() + 1, result->elements().end());
    };
    std::vector<std::future<std::vector<c10::IValue>>> others;
    for (size_t i = 0; i + 1 < input_sets.size(); ++i) {
      others.push_back(std::async(std::launch::async, [&run, &inputs = input_sets[i]] {
        at::init_num_threads();  // a new thread starts with LibTorch's default intra-op threads
        return run(inputs);
      }));
    }
    std::vector<std::vector<c10::IValue>> results(input_sets.size());
    if (!input_sets.empty()) results.back() = run(input_sets.back());
    for (size_t i = 0; i < others.size(); ++i) results[i] = others[i].get();
    restore();
    return results;
  } catch (...) {
    restore();
    throw;
  }
}

std::optional<torch::Tensor> own_tensor(const torch::jit::Module& module, const std::string& name) {
  auto slot = module.type()->findAttributeSlot(name);
  if (!slot) return std::nullopt;
  const c10::IValue value = module._ivalue()->getSlot(*slot);
  if (!value.isTensor()) return std::nullopt;
  return value.toTensor();
}

}  // namespace mcompress
