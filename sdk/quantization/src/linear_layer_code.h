#pragma once
// Reading and editing the code of linear-layer classes: shared by the
// quantizer (which rewrites torch.linear calls) and GPTQ's calibration
// (which records their inputs). Internal to mcompress_quantization.
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/script.h>

#include <memory>
#include <vector>

namespace mcompress::linear_code {

inline bool is_self_attribute(const torch::jit::Value* value, const torch::jit::Graph& graph,
                              const std::string& name) {
  const torch::jit::Node* node = value->node();
  return node->kind() == c10::prim::GetAttr && node->s(c10::attr::name) == name &&
         node->input() == graph.inputs()[0];
}

// aten::linear(x, self.weight, ...) in the code of the module itself.
inline bool is_own_linear(const torch::jit::Node* node, const torch::jit::Graph& graph) {
  return node->kind() == c10::aten::linear && is_self_attribute(node->input(1), graph, "weight");
}

// Visits nested blocks' nodes before the node that holds them.
template <typename Visit>
void for_each_node(torch::jit::Block* block, const Visit& visit) {
  for (torch::jit::Node* node : block->nodes()) {
    for (torch::jit::Block* inner : node->blocks()) for_each_node(inner, visit);
    visit(node);
  }
}

inline std::vector<std::shared_ptr<torch::jit::Graph>> method_graphs(const c10::ClassTypePtr& type) {
  std::vector<std::shared_ptr<torch::jit::Graph>> graphs;
  for (torch::jit::Function* method : type->methods()) {
    graphs.push_back(torch::jit::toGraphFunction(*method).graph());
  }
  return graphs;
}

// The torch.linear(x, self.weight, b) calls of the class's code, per method graph.
inline std::vector<std::pair<std::shared_ptr<torch::jit::Graph>, std::vector<torch::jit::Node*>>>
own_linear_calls(const c10::ClassTypePtr& type) {
  std::vector<std::pair<std::shared_ptr<torch::jit::Graph>, std::vector<torch::jit::Node*>>> found;
  for (const auto& graph : method_graphs(type)) {
    std::vector<torch::jit::Node*> calls;
    for_each_node(graph->block(), [&](torch::jit::Node* node) {
      if (is_own_linear(node, *graph)) calls.push_back(node);
    });
    if (!calls.empty()) found.emplace_back(graph, std::move(calls));
  }
  return found;
}

}  // namespace mcompress::linear_code
