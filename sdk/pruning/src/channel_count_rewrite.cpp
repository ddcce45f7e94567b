#include "mcompress/pruning/channel_count_rewrite.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/script.h>

#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "graph_constants.h"

namespace mcompress {
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;
using detail::constant_int;
using detail::constant_int_list;

bool is_conv(const Node* node) {
  return node->kind() == c10::aten::conv1d || node->kind() == c10::aten::conv2d ||
         node->kind() == c10::aten::conv3d;
}

bool is_plain_tensor(const Value* value) { return value->type()->kind() == c10::TypeKind::TensorType; }

// The module's own `weight`, which is what nn layers pass to these ops.
std::optional<at::Tensor> own_weight(const torch::jit::Module& module) {
  auto slot = module.type()->findAttributeSlot("weight");
  if (!slot) return std::nullopt;
  const c10::IValue value = module._ivalue()->getSlot(*slot);
  if (!value.isTensor()) return std::nullopt;
  return value.toTensor();
}

struct Candidate {
  std::shared_ptr<Graph> graph;
  Node* node = nullptr;
  size_t input = 0;      // the argument to replace
  bool as_list = false;  // [w.size(0)] instead of w.size(0)
  bool valid = true;     // false once one module running this code disagrees
  std::string where;
};

void find_candidates(torch::jit::Block* block, const std::shared_ptr<Graph>& graph,
                     const torch::jit::Module& module, const std::string& path,
                     std::map<Node*, Candidate>& candidates) {
  for (Node* node : block->nodes()) {
    for (torch::jit::Block* inner : node->blocks()) find_candidates(inner, graph, module, path, candidates);
    const auto weight = own_weight(module);
    if (is_conv(node)) {
      auto groups = constant_int(node->input(6));
      if (!groups || *groups <= 1 || !is_plain_tensor(node->input(1))) continue;
      const bool depthwise = weight && weight->dim() > 1 && weight->size(0) == *groups && weight->size(1) == 1;
      auto [it, inserted] = candidates.emplace(node, Candidate{graph, node, 6, false, true, path + ": groups"});
      it->second.valid = it->second.valid && depthwise;
    } else if (node->kind() == c10::aten::layer_norm) {
      auto shape = constant_int_list(node->input(1));
      if (!shape || shape->size() != 1 || !is_plain_tensor(node->input(2))) continue;
      const bool matches = weight && weight->dim() == 1 && weight->size(0) == (*shape)[0];
      auto [it, inserted] =
          candidates.emplace(node, Candidate{graph, node, 1, true, true, path + ": normalized_shape"});
      it->second.valid = it->second.valid && matches;
    }
  }
}

bool calls_layer_op(const torch::jit::Block* block, int depth) {
  for (const Node* node : block->nodes()) {
    if (is_conv(node) || node->kind() == c10::aten::layer_norm) return true;
    for (const torch::jit::Block* inner : node->blocks()) {
      if (calls_layer_op(inner, depth)) return true;
    }
    if (node->kind() == c10::prim::CallFunction && depth < 8) {
      if (auto* callee = torch::jit::tryToGraphFunction(const_cast<Node*>(node))) {
        if (calls_layer_op(callee->graph()->block(), depth + 1)) return true;
      }
    }
  }
  return false;
}

// nn.LayerNorm calls F.layer_norm, a TorchScript function of its own: its
// shape argument is only visible once that call is inlined into the method.
void inline_layer_functions(torch::jit::Block* block) {
  for (auto it = block->nodes().begin(); it != block->nodes().end();) {
    Node* node = *it++;
    for (torch::jit::Block* inner : node->blocks()) inline_layer_functions(inner);
    if (node->kind() != c10::prim::CallFunction) continue;
    auto* callee = torch::jit::tryToGraphFunction(node);
    if (!callee || !calls_layer_op(callee->graph()->block(), 0)) continue;
    node->removeInput(0);  // the function constant; the call's arguments remain
    const auto outputs = torch::jit::inlineCallTo(node, callee);
    // The inlined body may call further functions.
    if (!outputs.empty()) inline_layer_functions(block);
    return;
  }
}

}  // namespace

torch::jit::Module with_channel_counts_following_weights(const torch::jit::Module& model,
                                                         std::vector<std::string>* rewrites) {
  // New types and functions: graphs the host's other copies run (and have
  // compiled, with the old code inlined) are never touched.
  torch::jit::Module result = model.clone(/*inplace=*/true);
  std::map<Node*, Candidate> candidates;
  for (const auto& named : result.named_modules()) {
    for (const auto& method : named.value.get_methods()) {
      auto graph = torch::jit::toGraphFunction(method.function()).graph();
      inline_layer_functions(graph->block());
      find_candidates(graph->block(), graph, named.value, named.name.empty() ? "(root)" : named.name,
                      candidates);
    }
  }
  std::set<std::string> described;
  for (auto& [node, candidate] : candidates) {
    if (!candidate.valid) continue;
    Graph& graph = *candidate.graph;
    torch::jit::WithInsertPoint insert_at(node);
    Value* weight = node->input(candidate.input == 6 ? 1 : 2);
    Value* size = graph.insert(c10::aten::size, {weight, graph.insertConstant(int64_t{0})});
    Value* replacement = size;
    if (candidate.as_list) {
      replacement = graph.insertNode(graph.createList(c10::IntType::get(), {size}))->output();
    }
    node->replaceInput(candidate.input, replacement);
    described.insert(candidate.where);
  }
  if (rewrites) rewrites->assign(described.begin(), described.end());
  return result;
}

}  // namespace mcompress
