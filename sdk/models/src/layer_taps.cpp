#include "mcompress/models/layer_taps.h"

#include <torch/csrc/jit/api/function_impl.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <map>

#include "mcompress/sdk/error.h"
#include "mcompress/models/graph.h"

namespace mcompress {
namespace {

using torch::jit::Node;
using torch::jit::Value;

// The op a layer's weight feeds, or "" when the node is not a layer op.
std::string layer_op(const Node* node) {
  const std::string kind = node->kind().toQualString();
  if (kind == "aten::conv1d" || kind == "aten::conv2d" || kind == "aten::conv3d" ||
      kind == "aten::_convolution" || kind == "aten::convolution")
    return "conv";
  if (kind == "aten::linear") return "linear";
  if (kind == "aten::batch_norm") return "batch_norm";
  if (kind == "aten::layer_norm") return "layer_norm";
  return "";
}

struct FoundLayer {
  LayerInfo info;
  Value* output = nullptr;
};

// Layer ops in graph order whose weight is `<module path>.weight`.
std::vector<FoundLayer> find_layers(torch::jit::Graph& graph) {
  std::vector<FoundLayer> found;
  std::map<std::string, bool> seen;
  for (Node* node : graph.nodes()) {
    const std::string op = layer_op(node);
    if (op.empty()) continue;
    for (Value* input : node->inputs()) {
      auto path = attribute_path(input);
      if (!path || path->attribute != "weight") continue;
      if (!seen[path->module_path]) {
        seen[path->module_path] = true;
        found.push_back({{path->module_path, op}, node->output(0)});
      }
      break;
    }
  }
  return found;
}

}  // namespace

std::vector<LayerInfo> tappable_layers(const torch::jit::Module& model) {
  auto graph = inlined_forward_graph(model);
  std::vector<LayerInfo> layers;
  for (const auto& layer : find_layers(*graph)) layers.push_back(layer.info);
  return layers;
}

LayerTaps::LayerTaps(const torch::jit::Module& model, const std::vector<std::string>& layers)
    : model_(model) {
  auto graph = inlined_forward_graph(model);
  std::map<std::string, Value*> by_path;
  std::vector<std::string> known;
  for (const auto& layer : find_layers(*graph)) {
    by_path[layer.info.path] = layer.output;
    known.push_back(layer.info.path);
  }
  std::vector<Value*> outputs{graph->outputs().at(0)};
  std::vector<std::string> missing;
  for (const auto& path : layers) {
    auto it = by_path.find(path);
    if (it == by_path.end())
      missing.push_back(path);
    else
      outputs.push_back(it->second);
  }
  if (!missing.empty()) {
    throw Error(fmt::format("the model has no layer {}; its layers (modules whose weight feeds a "
                            "conv, linear or norm op) are: {}",
                            fmt::join(missing, ", "), fmt::join(known, ", ")));
  }
  // Return (output, layer 0, layer 1, ...) as one tuple.
  auto* tuple = graph->insertNode(graph->createTuple(outputs));
  tuple->moveBefore(graph->return_node());
  graph->return_node()->replaceInput(0, tuple->output());
  function_ = std::make_shared<torch::jit::GraphFunction>("mcompress_layer_taps", graph, nullptr);
}

LayerTaps::Result LayerTaps::run(const torch::Tensor& inputs) const {
  std::vector<c10::IValue> stack{model_._ivalue(), inputs};
  auto values = (*function_)(stack).toTuple();
  const auto& elements = values->elements();
  Result result;
  if (!elements.at(0).isTensor()) {
    throw Error(fmt::format("the model's forward returned {}, but a Tensor was expected",
                            elements.at(0).type()->str()));
  }
  result.output = elements.at(0).toTensor();
  for (size_t i = 1; i < elements.size(); ++i) result.layers.push_back(elements[i].toTensor());
  return result;
}

}  // namespace mcompress
