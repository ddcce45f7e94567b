// How LibTorch's quantized ops (the forward int8_quant writes) become ONNX
// QDQ nodes (opset 13): each int8 op is its float op between
// DequantizeLinear of its inputs and a QuantizeLinear of its output, the
// form ONNX Runtime fuses into int8 kernels (QLinearConv, QGemm, ...).
//
//  - activations: uint8 (or int8) per tensor, with the scale and zero point
//    LibTorch used (quantize_outputs() writes the pair after each op);
//  - weights: the packed params' own int8 values as an int8 initializer,
//    per output channel (DequantizeLinear axis 0) or per tensor;
//  - bias: int32 with scale input_scale * weight_scale and zero point 0,
//    the form ONNX Runtime's QDQ Conv and Gemm fusions require.
// docs/onnx.md lists the ops.
#include <ATen/core/dispatch/Dispatcher.h>
#include <fmt/format.h>

#include <functional>
#include <limits>
#include <unordered_map>

#include "onnx_conversion.h"

namespace mcompress::onnx_conversion {
namespace {

using Attributes = std::vector<OnnxAttribute>;

// The ONNX names of a DequantizeLinear's scale and zero point.
struct QuantizationInitializers {
  std::string scale;
  std::string zero_point;
};

QuantizationInitializers per_tensor_initializers(Conversion& c, const TensorQuantization& q) {
  const OnnxDataType type = q.dtype == at::kQInt8 ? OnnxDataType::Int8 : OnnxDataType::Uint8;
  return {c.float_constant(q.scale), c.typed_constant(at::scalar_tensor(q.zero_point, at::kLong), type, "zero_point")};
}

std::optional<TensorQuantization> quantization_of(const at::Tensor& tensor) {
  if (!tensor.is_quantized() || tensor.qscheme() != at::kPerTensorAffine) return std::nullopt;
  return TensorQuantization{tensor.q_scale(), tensor.q_zero_point(), tensor.scalar_type()};
}

bool same_quantization(const TensorQuantization& a, const TensorQuantization& b) {
  return a.scale == b.scale && a.zero_point == b.zero_point && a.dtype == b.dtype;
}

const Operand& quantized_input(const Conversion& c, size_t index) {
  const Operand& x = c.tensor_input(index);
  if (!x.quantization)
    c.fail(fmt::format("input {} is expected to be a quantized tensor (from quantize_per_tensor or another "
                       "quantized op), but it is float",
                       index));
  return x;
}

// The op's results (conv2d_unpack and linear_unpack: the weight, then the bias or None).
torch::jit::Stack call_operator(const Conversion& c, const char* name, const c10::IValue& packed) {
  try {
    const auto op = c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
    torch::jit::Stack stack{packed};
    op.callBoxed(&stack);
    return stack;
  } catch (const c10::Error& error) {
    c.fail(fmt::format("{} failed on the layer's packed weights ({}); re-run int8_quant with this LibTorch",
                       name, error.what_without_backtrace()));
  }
}

// The packed params object (Conv2dPackedParamsBase, LinearPackedParamsBase)
// the frozen graph holds as a constant.
c10::IValue packed_params(const Conversion& c, size_t index) {
  const Operand& o = c.operand(c.node().input(index));
  if (o.kind != Operand::Kind::Known || !o.value.isObject())
    c.fail(fmt::format("input {} must be the layer's packed weights, a constant of the model; here it is computed "
                       "in forward",
                       index));
  return o.value;
}

struct DequantizedWeight {
  std::string name;   // the float weight, output of DequantizeLinear
  at::Tensor scales;  // float32, one per output channel (or one)
  bool per_channel = false;
};

// The int8 weight as an initializer and the DequantizeLinear that reads it.
// `transposed`: stored as [in, out] for MatMul (per-channel axis 1).
DequantizedWeight dequantized_weight(Conversion& c, const at::Tensor& weight, const std::string& hint,
                                     bool transposed = false) {
  if (!weight.is_quantized() || (weight.scalar_type() != at::kQInt8 && weight.scalar_type() != at::kQUInt8))
    c.fail(fmt::format("the packed weight is {}, not int8; only int8 weights (int8_quant's) export",
                       c10::toString(weight.scalar_type())));
  const OnnxDataType type = weight.scalar_type() == at::kQInt8 ? OnnxDataType::Int8 : OnnxDataType::Uint8;
  DequantizedWeight out;
  at::Tensor zero_points;
  if (weight.qscheme() == at::kPerChannelAffine || weight.qscheme() == at::kPerChannelSymmetric) {
    if (weight.q_per_channel_axis() != 0)
      c.fail(fmt::format("the weight is quantized per channel along dimension {}; only the output channels "
                         "(dimension 0) export",
                         weight.q_per_channel_axis()));
    out.per_channel = true;
    out.scales = weight.q_per_channel_scales().to(at::kFloat);
    zero_points = weight.q_per_channel_zero_points();
  } else if (weight.qscheme() == at::kPerTensorAffine || weight.qscheme() == at::kPerTensorSymmetric) {
    out.scales = at::scalar_tensor(weight.q_scale(), at::kFloat);
    zero_points = at::scalar_tensor(weight.q_zero_point(), at::kLong);
  } else {
    c.fail("the weight's quantization scheme is neither per tensor nor per channel");
  }
  at::Tensor values = weight.int_repr();
  if (transposed) values = values.t();
  const std::string quantized = c.typed_constant(values, type, hint);
  Attributes attributes;
  if (out.per_channel) attributes.push_back({"axis", int64_t{transposed ? 1 : 0}});
  out.name = c.emit1("DequantizeLinear",
                     {quantized, c.typed_constant(out.scales, OnnxDataType::Float, hint + ".scale"),
                      c.typed_constant(zero_points, type, hint + ".zero_point")},
                     attributes);
  return out;
}

// int32 bias at scale input_scale * weight_scale, zero point 0: what the
// int8 kernels add to their int32 sums.
std::string dequantized_bias(Conversion& c, const at::Tensor& bias, double input_scale, const DequantizedWeight& weight,
                             const std::string& hint) {
  const at::Tensor scales = (weight.scales.to(at::kDouble) * input_scale).expand(bias.sizes()).contiguous();
  constexpr double kInt32Max = std::numeric_limits<int32_t>::max();
  const at::Tensor quantized = (bias.to(at::kDouble) / scales).round().clamp(-kInt32Max, kInt32Max);
  Attributes attributes;
  at::Tensor scale_values = scales.to(at::kFloat), zero_points = at::zeros(bias.sizes(), at::kInt);
  if (!weight.per_channel) {
    scale_values = scale_values.flatten()[0];
    zero_points = zero_points.flatten()[0];
  } else {
    attributes.push_back({"axis", int64_t{0}});
  }
  return c.emit1("DequantizeLinear",
                 {c.typed_constant(quantized, OnnxDataType::Int32, hint),
                  c.typed_constant(scale_values, OnnxDataType::Float, hint + ".scale"),
                  c.typed_constant(zero_points, OnnxDataType::Int32, hint + ".zero_point")},
                 attributes);
}

std::string maybe_relu(Conversion& c, const std::string& x, bool relu) { return relu ? c.emit1("Relu", {x}) : x; }

// quantized::conv2d(_relu)(x, packed, output_scale, output_zero_point).
void quantized_conv2d(Conversion& c, bool relu) {
  const Operand& x = quantized_input(c, 0);
  const c10::IValue packed = packed_params(c, 1);
  if (call_operator(c, "quantized::conv2d_transpose", packed).front().toInt() != 0)
    c.fail("transposed quantized convolutions are not supported");
  const torch::jit::Stack unpacked = call_operator(c, "quantized::conv2d_unpack", packed);
  const at::Tensor weight = unpacked.at(0).toTensor();
  const std::string hint = c.node().input(1)->debugName();
  const DequantizedWeight w = dequantized_weight(c, weight, hint);
  std::vector<std::string> inputs{x.name, w.name};
  if (const c10::IValue& bias = unpacked.at(1); bias.isTensor())
    inputs.push_back(dequantized_bias(c, bias.toTensor(), x.quantization->scale, w, hint + ".bias"));
  const std::vector<int64_t> padding = call_operator(c, "quantized::conv2d_padding", packed).front().toIntVector();
  std::vector<int64_t> pads = padding;
  pads.insert(pads.end(), padding.begin(), padding.end());  // ONNX: all begins, then all ends
  const std::string y =
      c.emit1("Conv", inputs,
              {{"dilations", call_operator(c, "quantized::conv2d_dilation", packed).front().toIntVector()},
               {"group", call_operator(c, "quantized::conv2d_groups", packed).front().toInt()},
               {"kernel_shape", std::vector<int64_t>(weight.sizes().begin() + 2, weight.sizes().end())},
               {"pads", pads},
               {"strides", call_operator(c, "quantized::conv2d_stride", packed).front().toIntVector()}});
  c.set_tensor_output(maybe_relu(c, y, relu), x.batch_axis);
}

// quantized::linear(_relu)(x, packed, output_scale, output_zero_point).
void quantized_linear(Conversion& c, bool relu) {
  const Operand& x = quantized_input(c, 0);
  const torch::jit::Stack unpacked = call_operator(c, "quantized::linear_unpack", packed_params(c, 1));
  const at::Tensor weight = unpacked.at(0).toTensor();
  const c10::IValue& bias = unpacked.at(1);
  const std::string hint = c.node().input(1)->debugName();
  std::string y;
  if (x.shape.size() == 2) {
    const DequantizedWeight w = dequantized_weight(c, weight, hint);
    std::vector<std::string> inputs{x.name, w.name};
    if (bias.isTensor())
      inputs.push_back(dequantized_bias(c, bias.toTensor(), x.quantization->scale, w, hint + ".bias"));
    y = c.emit1("Gemm", inputs, {{"transB", int64_t{1}}});
  } else {
    // Gemm takes matrices only: other ranks multiply by the transposed weight.
    const DequantizedWeight w = dequantized_weight(c, weight, hint, /*transposed=*/true);
    y = c.emit1("MatMul", {x.name, w.name});
    if (bias.isTensor()) y = c.emit1("Add", {y, c.constant(bias.toTensor(), hint + ".bias")});
  }
  c.set_tensor_output(maybe_relu(c, y, relu), x.batch_axis);
}

// quantized::add(_relu)(a, b, output_scale, output_zero_point).
void quantized_add(Conversion& c, bool relu) {
  if (c.node().inputs().size() != 4 || !c.is_tensor(c.node().input(1)))
    c.fail("only the addition of two quantized tensors exports; add a tensor, not a number");
  const Operand& a = quantized_input(c, 0);
  const Operand& b = quantized_input(c, 1);
  const int64_t batch_axis = a.batch_axis >= 0 ? a.batch_axis : b.batch_axis;
  c.set_tensor_output(maybe_relu(c, c.emit1("Add", {a.name, b.name}), relu), batch_axis);
}

// quantized::cat(tensors, dim, output_scale, output_zero_point).
void quantized_cat(Conversion& c) {
  const Operand& list = c.operand(c.node().input(0));
  if (list.kind != Operand::Kind::TensorList) c.fail("input 0 is not a list of tensors");
  int64_t batch_axis = -1;
  for (const Operand& element : list.elements) {
    if (element.kind != Operand::Kind::Tensor || !element.quantization)
      c.fail("concatenates something that is not a quantized tensor computed from the input");
    batch_axis = element.batch_axis;
  }
  const int64_t rank = static_cast<int64_t>(list.elements.front().shape.size());
  int64_t axis = c.int_input(1);
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank) c.fail(fmt::format("dimension {} is out of range for rank {}", c.int_input(1), rank));
  if (axis == batch_axis && c.dynamic_batch())
    c.fail("concatenation along the batch dimension; export with --fixed-batch");
  c.set_tensor_output(c.emit1("Concat", c.tensor_list_names(0), {{"axis", axis}}), batch_axis);
}

// quantized::hardswish(x, output_scale, output_zero_point): x * HardSigmoid(x) (HardSwish is opset 14).
void quantized_hardswish(Conversion& c) {
  const Operand& x = quantized_input(c, 0);
  const std::string gate = c.emit1("HardSigmoid", {x.name}, {{"alpha", 1.0f / 6.0f}, {"beta", 0.5f}});
  c.set_tensor_output(c.emit1("Mul", {x.name, gate}), x.batch_axis);
}

// quantize_per_tensor(x, scale, zero_point, dtype): the values themselves;
// quantize_outputs() writes the QuantizeLinear with the scale and zero point.
void quantize_per_tensor(Conversion& c) {
  const Operand& x = c.tensor_input(0);
  if (x.quantization) c.fail("quantizes a tensor that is quantized already");
  c.set_tensor_output(x.name, x.batch_axis);
}

// dequantize(q): the dequantized values the operand already holds.
void dequantize(Conversion& c) {
  const Operand& x = quantized_input(c, 0);
  c.set_tensor_output(x.name, x.batch_axis);
}

using Conversions = std::unordered_map<std::string, std::function<void(Conversion&)>>;

const Conversions& conversions() {
  static const Conversions table = [] {
    Conversions t;
    t["aten::quantize_per_tensor"] = quantize_per_tensor;
    t["aten::dequantize"] = dequantize;
    t["quantized::conv2d"] = [](Conversion& c) { quantized_conv2d(c, /*relu=*/false); };
    t["quantized::conv2d_relu"] = [](Conversion& c) { quantized_conv2d(c, /*relu=*/true); };
    t["quantized::linear"] = [](Conversion& c) { quantized_linear(c, /*relu=*/false); };
    t["quantized::linear_relu"] = [](Conversion& c) { quantized_linear(c, /*relu=*/true); };
    t["quantized::add"] = [](Conversion& c) { quantized_add(c, /*relu=*/false); };
    t["quantized::add_relu"] = [](Conversion& c) { quantized_add(c, /*relu=*/true); };
    t["quantized::cat"] = quantized_cat;
    t["quantized::hardswish"] = quantized_hardswish;
    return t;
  }();
  return table;
}

}  // namespace

bool convert_quantized_node(Conversion& conversion) {
  const auto& table = conversions();
  const auto found = table.find(conversion.node().kind().toQualString());
  if (found == table.end()) {
    if (std::string(conversion.node().kind().toQualString()).rfind("quantized::", 0) == 0)
      conversion.fail("no ONNX conversion exists for this quantized op; the export handles quantize_per_tensor, "
                      "dequantize and quantized::conv2d, conv2d_relu, linear, linear_relu, add, add_relu, cat and "
                      "hardswish (docs/onnx.md), so keep this layer in float (int8_quant's `ignore`)");
    return false;
  }
  found->second(conversion);
  return true;
}

void quantize_outputs(Conversion& c) {
  const torch::jit::Node& node = c.node();
  for (size_t i = 0; i < node.outputs().size(); ++i) {
    const torch::jit::Value* value = node.output(i);
    const Operand* converted = c.find_operand(value);
    if (!converted || converted->kind != Operand::Kind::Tensor || converted->quantization) continue;
    const c10::IValue& seen = c.observed(value);
    if (!seen.isTensor()) continue;
    const std::optional<TensorQuantization> q = quantization_of(seen.toTensor());
    if (!q) continue;
    Operand quantized = *converted;
    quantized.quantization = q;
    // An op that only renames its quantized input (contiguous, eval dropout) needs no second pair.
    bool renamed_input = false;
    for (const torch::jit::Value* input : node.inputs()) {
      const Operand* in = c.find_operand(input);
      renamed_input |= in && in->kind == Operand::Kind::Tensor && in->name == converted->name && in->quantization &&
                       same_quantization(*in->quantization, *q);
    }
    if (!renamed_input) {
      const QuantizationInitializers params = per_tensor_initializers(c, *q);
      const std::string integers = c.emit1("QuantizeLinear", {converted->name, params.scale, params.zero_point});
      quantized.name = c.emit1("DequantizeLinear", {integers, params.scale, params.zero_point});
    }
    c.set_operand(value, std::move(quantized));
  }
}

}  // namespace mcompress::onnx_conversion
