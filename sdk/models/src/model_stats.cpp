#include "mcompress/models/model_stats.h"

#include <torch/csrc/jit/ir/ir.h>

#include "mcompress/models/evaluate.h"
#include "mcompress/models/graph.h"
#include "mcompress/models/quantized_layer.h"

namespace mcompress {

int64_t count_parameters(const torch::jit::Module& model) {
  int64_t total = 0;
  for (const auto& parameter : model.parameters(/*recurse=*/true)) total += parameter.numel();
  // Quantized layers hold their weights as packed buffers; they are still weights.
  return total + quantized_weight_elements(model);
}

namespace {

using torch::jit::Node;
using torch::jit::Value;

enum class CostKind { Linear, QuantizedLinear, Convolution, OneDnnConvolution, TransposedConvolution, MatMul, None };

CostKind cost_kind(const Node* node) {
  const std::string kind = node->kind().toQualString();
  if (kind == "aten::linear" || kind == "aten::mkldnn_linear") return CostKind::Linear;
  if (kind == "mcompress::quantized_linear") return CostKind::QuantizedLinear;
  if (kind == "aten::conv1d" || kind == "aten::conv2d" || kind == "aten::conv3d") {
    return CostKind::Convolution;
  }
  if (kind == "aten::conv_transpose1d" || kind == "aten::conv_transpose2d" ||
      kind == "aten::conv_transpose3d") {
    return CostKind::TransposedConvolution;
  }
  if (kind == "aten::_convolution" || kind == "aten::convolution") {
    // Argument 6 is `transposed`; a non-constant flag is assumed false.
    auto transposed = torch::jit::toIValue(node->input(6));
    return transposed && transposed->isBool() && transposed->toBool()
               ? CostKind::TransposedConvolution
               : CostKind::Convolution;
  }
  if (kind == "aten::matmul" || kind == "aten::mm" || kind == "aten::bmm") return CostKind::MatMul;
  // What optimize_inference's oneDNN and BLAS-free forms run (inference_optimization.h).
  if (kind == "prim::mkldnn_convolution") return CostKind::OneDnnConvolution;
  if (kind == "aten::mkldnn_convolution") return CostKind::Convolution;
  return CostKind::None;
}

// The layer a compute node belongs to: the module owning its weight (input 1
// for linear/conv; either operand for matmul).
std::string owner_path(const Node* node) {
  for (size_t i : {size_t(1), size_t(0)}) {
    if (auto path = attribute_path(node->input(i))) return path->module_path;
  }
  return "";
}

int64_t product_from(at::IntArrayRef sizes, size_t first) {
  int64_t product = 1;
  for (size_t i = first; i < sizes.size(); ++i) product *= sizes[i];
  return product;
}

struct Tapped {
  torch::Tensor input, weight, bias, output;
};

LayerCost cost_of(const Node* node, CostKind kind, const Tapped& t) {
  LayerCost cost;
  cost.module_path = owner_path(node);
  cost.op = node->kind().toUnqualString();
  if (kind == CostKind::QuantizedLinear) {
    // The weight is packed: its logical shape is [outputs, inputs].
    cost.out_channels = t.output.size(-1);
    cost.macs = t.output.numel() * t.input.size(-1);
    cost.params = cost.out_channels * t.input.size(-1) + (t.bias.defined() ? t.bias.numel() : 0);
    return cost;
  }
  if (kind == CostKind::MatMul) {
    // Each output element is a dot product over the shared inner dimension.
    cost.macs = t.output.numel() * t.input.size(-1);
    cost.out_channels = t.output.dim() > 0 ? t.output.size(-1) : 1;
    if (attribute_path(node->input(1))) cost.params = t.weight.numel();
    return cost;
  }
  cost.params = t.weight.numel() + (t.bias.defined() ? t.bias.numel() : 0);
  if (kind == CostKind::OneDnnConvolution) {
    // A reordered grouped weight has a dim for the groups: count per output channel.
    cost.out_channels = t.output.size(1);
    cost.macs = t.output.numel() * (t.weight.numel() / cost.out_channels);
    return cost;
  }
  cost.out_channels = t.weight.size(0);
  if (kind == CostKind::Linear) {
    cost.macs = t.output.numel() * t.weight.size(1);
  } else if (kind == CostKind::Convolution) {
    // weight is [out, in/groups, k...]: each output element reads in/groups*k inputs.
    cost.macs = t.output.numel() * product_from(t.weight.sizes(), 1);
  } else {
    // Transposed weight is [in, out/groups, k...]: each input element scatters out/groups*k.
    cost.macs = t.input.numel() * product_from(t.weight.sizes(), 1);
    cost.out_channels = t.weight.size(1);
  }
  return cost;
}

torch::Tensor tensor_or_empty(const c10::IValue& value) {
  return value.isTensor() ? value.toTensor() : torch::Tensor();
}

}  // namespace

std::vector<LayerCost> layer_costs(const torch::jit::Module& model,
                                   const torch::Tensor& example_input) {
  // Costs are per sample, and BN must not update its statistics while we look.
  torch::NoGradGuard no_grad;
  EvalModeGuard eval_mode(model);
  auto graph = inlined_forward_graph(model);
  fold_flag_attributes(graph, model, /*include_ints=*/true);
  // Only top-level nodes: values inside data-dependent if/loop blocks cannot
  // be returned from the graph, so layers there are not counted.
  std::vector<Node*> nodes;
  std::vector<Value*> taps;
  for (Node* node : graph->nodes()) {
    const CostKind kind = cost_kind(node);
    if (kind == CostKind::None) continue;
    nodes.push_back(node);
    const bool has_bias = kind != CostKind::MatMul;
    Value* bias = kind == CostKind::QuantizedLinear ? node->input(4)
                  : has_bias                          ? node->input(2)
                                                      : node->input(1);
    taps.insert(taps.end(), {node->input(0), node->input(1), bias, node->output()});
  }
  if (nodes.empty()) return {};

  const torch::Tensor sample =
      example_input.dim() > 0 ? example_input.slice(0, 0, 1) : example_input;
  const auto values = run_with_taps(model, graph, taps, {sample});

  std::vector<LayerCost> costs;
  for (size_t i = 0; i < nodes.size(); ++i) {
    Tapped t{tensor_or_empty(values[4 * i]), tensor_or_empty(values[4 * i + 1]),
             tensor_or_empty(values[4 * i + 2]), tensor_or_empty(values[4 * i + 3])};
    if (!t.input.defined() || !t.weight.defined() || !t.output.defined()) continue;
    const CostKind kind = cost_kind(nodes[i]);
    if (kind == CostKind::MatMul) t.bias = torch::Tensor();
    costs.push_back(cost_of(nodes[i], kind, t));
  }
  return costs;
}

int64_t count_macs(const torch::jit::Module& model, const torch::Tensor& example_input) {
  int64_t total = 0;
  for (const auto& cost : layer_costs(model, example_input)) total += cost.macs;
  return total;
}

}  // namespace mcompress
