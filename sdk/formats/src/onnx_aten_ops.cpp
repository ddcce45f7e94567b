// How each supported TorchScript op on the input's data becomes ONNX nodes
// (opset 13). docs/onnx.md lists them; an op missing here is refused by
// the graph walk with its name and source line.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <functional>
#include <numeric>
#include <unordered_map>

#include "onnx_conversion.h"

namespace mcompress::onnx_conversion {
namespace {

using Attributes = std::vector<OnnxAttribute>;

int64_t normalized_axis(const Conversion& c, int64_t axis, int64_t rank) {
  const int64_t normalized = axis < 0 ? axis + rank : axis;
  if (normalized < 0 || normalized >= rank) c.fail(fmt::format("dimension {} is out of range for rank {}", axis, rank));
  return normalized;
}

int64_t output_rank(const Conversion& c, size_t index = 0) {
  return c.observed(c.node().output(index)).toTensor().dim();
}

// A list parameter such as `stride` may hold one value for every spatial dimension.
std::vector<int64_t> per_dimension(const Conversion& c, std::vector<int64_t> values, size_t dims, const char* what) {
  if (values.size() == 1 && dims > 1) values.assign(dims, values[0]);
  if (values.size() != dims) c.fail(fmt::format("{} has {} values for {} spatial dimensions", what, values.size(), dims));
  return values;
}

std::vector<int64_t> symmetric_pads(const std::vector<int64_t>& padding) {
  std::vector<int64_t> pads = padding;
  pads.insert(pads.end(), padding.begin(), padding.end());  // ONNX: all begins, then all ends
  return pads;
}

// The same tensor under another TorchScript name: no ONNX node.
void alias(Conversion& c) {
  const Operand& x = c.tensor_input(0);
  c.set_tensor_output(x.name, x.batch_axis);
}

void elementwise(Conversion& c, const std::string& op_type, Attributes attributes = {}) {
  const Operand& x = c.tensor_input(0);
  c.set_tensor_output(c.emit1(op_type, {x.name}, std::move(attributes)), x.batch_axis);
}

int64_t batch_axis_of_inputs(const Conversion& c, size_t count) {
  for (size_t i = 0; i < count && i < c.node().inputs().size(); ++i)
    if (c.is_tensor(c.node().input(i))) return c.operand(c.node().input(i)).batch_axis;
  return -1;
}

// add/sub (with alpha), mul, div: tensors or numbers on either side.
void arithmetic(Conversion& c, const std::string& op_type, bool reversed = false) {
  const auto& node = c.node();
  std::string self = c.tensor_name(0);
  std::string other = c.tensor_name(1);
  if (node.inputs().size() >= 3 && (op_type == "Add" || op_type == "Sub")) {
    if (node.input(2)->type()->kind() == c10::TypeKind::StringType) c.fail("a rounding mode is not supported");
    const double alpha = c.number_input(2);
    if (alpha != 1.0) {
      std::string& scaled = reversed ? self : other;
      scaled = c.emit1("Mul", {scaled, c.float_constant(alpha)});
    }
  }
  if (node.inputs().size() >= 3 && op_type == "Div" && c.string_input(2))
    c.fail(fmt::format("division with rounding_mode '{}' has no ONNX conversion here", *c.string_input(2)));
  if (reversed) std::swap(self, other);
  c.set_tensor_output(c.emit1(op_type, {self, other}), batch_axis_of_inputs(c, 2));
}

void convolution(Conversion& c) {
  const auto& node = c.node();
  const bool underscore = node.kind() == c10::Symbol::fromQualString("aten::_convolution");
  const Operand& x = c.tensor_input(0);
  if (c.is_tensor(node.input(1))) c.fail("the convolution's weight is computed from the input; only constant weights are supported");
  const at::Tensor weight = c.operand(node.input(1)).value.toTensor();
  const size_t dims = static_cast<size_t>(weight.dim() - 2);
  if (underscore && c.bool_input(6)) c.fail("transposed convolutions are not supported");
  const std::vector<int64_t> stride = per_dimension(c, c.ints_input(3), dims, "stride");
  const std::vector<int64_t> dilation = per_dimension(c, c.ints_input(5), dims, "dilation");
  const int64_t groups = c.int_input(underscore ? 8 : 6);
  std::vector<int64_t> pads;
  if (node.input(4)->type()->kind() == c10::TypeKind::StringType) {
    const std::string mode = *c.string_input(4);
    std::vector<int64_t> begin(dims, 0), end(dims, 0);
    if (mode == "same") {
      // PyTorch puts the odd padding element at the end.
      for (size_t d = 0; d < dims; ++d) {
        const int64_t total = dilation[d] * (weight.size(static_cast<int64_t>(d) + 2) - 1);
        begin[d] = total / 2;
        end[d] = total - begin[d];
      }
    } else if (mode != "valid") {
      c.fail(fmt::format("padding '{}' is not 'same' or 'valid'", mode));
    }
    pads = begin;
    pads.insert(pads.end(), end.begin(), end.end());
  } else {
    pads = symmetric_pads(per_dimension(c, c.ints_input(4), dims, "padding"));
  }
  std::vector<std::string> inputs{x.name, c.tensor_name(1)};
  if (!c.is_none(node.input(2))) inputs.push_back(c.tensor_name(2));
  std::vector<int64_t> kernel(weight.sizes().begin() + 2, weight.sizes().end());
  c.set_tensor_output(c.emit1("Conv", inputs,
                              {{"dilations", dilation},
                               {"group", groups},
                               {"kernel_shape", kernel},
                               {"pads", pads},
                               {"strides", stride}}),
                      x.batch_axis);
}

void linear(Conversion& c) {
  const auto& node = c.node();
  const Operand& x = c.tensor_input(0);
  if (c.is_tensor(node.input(1))) c.fail("the layer's weight is computed from the input; only constant weights are supported");
  const at::Tensor weight = c.operand(node.input(1)).value.toTensor();
  const bool has_bias = !c.is_none(node.input(2));
  if (x.shape.size() == 2) {
    std::vector<std::string> inputs{x.name, c.tensor_name(1)};
    if (has_bias) inputs.push_back(c.tensor_name(2));
    c.set_tensor_output(c.emit1("Gemm", inputs, {{"transB", int64_t{1}}}), x.batch_axis);
    return;
  }
  // Gemm takes matrices only: other ranks multiply by the transposed weight.
  std::string y = c.emit1("MatMul", {x.name, c.constant(weight.t().contiguous(), node.input(1)->debugName() + ".T")});
  if (has_bias) y = c.emit1("Add", {y, c.tensor_name(2)});
  c.set_tensor_output(y, x.batch_axis);
}

void addmm(Conversion& c) {
  const Operand& mat1 = c.tensor_input(1);
  c.set_tensor_output(c.emit1("Gemm", {mat1.name, c.tensor_name(2), c.tensor_name(0)},
                              {{"beta", static_cast<float>(c.number_input(3))},
                               {"alpha", static_cast<float>(c.number_input(4))}}),
                      mat1.batch_axis);
}

void matmul(Conversion& c) {
  c.set_tensor_output(c.emit1("MatMul", {c.tensor_name(0), c.tensor_name(1)}), batch_axis_of_inputs(c, 2));
}

void clip(Conversion& c, std::optional<double> low, std::optional<double> high) {
  const Operand& x = c.tensor_input(0);
  c.set_tensor_output(c.emit1("Clip", {x.name, low ? c.float_constant(*low) : "", high ? c.float_constant(*high) : ""}),
                      x.batch_axis);
}

std::optional<double> optional_number(const Conversion& c, size_t index) {
  if (c.is_none(c.node().input(index))) return std::nullopt;
  return c.number_input(index);
}

// x * f(x), for SiLU (Sigmoid) and Hardswish (HardSigmoid).
void gated_by_itself(Conversion& c, const std::string& gate, Attributes attributes = {}) {
  const Operand& x = c.tensor_input(0);
  const std::string g = c.emit1(gate, {x.name}, std::move(attributes));
  c.set_tensor_output(c.emit1("Mul", {x.name, g}), x.batch_axis);
}

Attributes hard_sigmoid_attributes() { return {{"alpha", 1.0f / 6.0f}, {"beta", 0.5f}}; }

// Opset 13 has no Gelu: the erf form, or tanh's approximation.
void gelu(Conversion& c) {
  const Operand& x = c.tensor_input(0);
  const std::string approximate =
      c.node().inputs().size() > 1 ? c.string_input(1).value_or("none") : std::string("none");
  std::string inner;
  if (approximate == "none") {
    inner = c.emit1("Erf", {c.emit1("Mul", {x.name, c.float_constant(M_SQRT1_2)})});
  } else if (approximate == "tanh") {
    const std::string cube = c.emit1("Mul", {c.emit1("Mul", {x.name, x.name}), x.name});
    const std::string sum = c.emit1("Add", {x.name, c.emit1("Mul", {cube, c.float_constant(0.044715)})});
    inner = c.emit1("Tanh", {c.emit1("Mul", {sum, c.float_constant(std::sqrt(2.0 / M_PI))})});
  } else {
    c.fail(fmt::format("gelu approximation '{}' is not 'none' or 'tanh'", approximate));
  }
  const std::string one_plus = c.emit1("Add", {inner, c.float_constant(1.0)});
  const std::string half_x = c.emit1("Mul", {x.name, c.float_constant(0.5)});
  c.set_tensor_output(c.emit1("Mul", {half_x, one_plus}), x.batch_axis);
}

void batch_norm(Conversion& c) {
  const auto& node = c.node();
  const Operand& x = c.tensor_input(0);
  if (c.bool_input(5)) c.fail("batch_norm in training mode; the model is exported in eval mode, check its code");
  if (x.shape.size() < 2) c.fail("batch_norm needs an input with a channel dimension");
  const int64_t channels = x.shape[1];
  for (size_t i = 1; i <= 4; ++i)
    if (c.is_tensor(node.input(i))) c.fail("batch_norm's statistics or affine parameters are computed from the input");
  if (c.is_none(node.input(3)) || c.is_none(node.input(4)))
    c.fail("batch_norm without running statistics cannot run in eval mode as ONNX BatchNormalization");
  const std::string scale = c.is_none(node.input(1)) ? c.constant(at::ones({channels}), "bn_scale") : c.tensor_name(1);
  const std::string bias = c.is_none(node.input(2)) ? c.constant(at::zeros({channels}), "bn_bias") : c.tensor_name(2);
  c.set_tensor_output(c.emit1("BatchNormalization", {x.name, scale, bias, c.tensor_name(3), c.tensor_name(4)},
                              {{"epsilon", static_cast<float>(c.number_input(7))}}),
                      x.batch_axis);
}

void pooling(Conversion& c, bool is_max) {
  const Operand& x = c.tensor_input(0);
  const size_t dims = x.shape.size() - 2;
  const std::vector<int64_t> kernel = per_dimension(c, c.ints_input(1), dims, "kernel_size");
  std::vector<int64_t> stride = c.ints_input(2);
  stride = stride.empty() ? kernel : per_dimension(c, stride, dims, "stride");
  const std::vector<int64_t> padding = per_dimension(c, c.ints_input(3), dims, "padding");
  Attributes attributes{{"kernel_shape", kernel}, {"pads", symmetric_pads(padding)}, {"strides", stride}};
  if (is_max) {
    attributes.push_back({"dilations", per_dimension(c, c.ints_input(4), dims, "dilation")});
    attributes.push_back({"ceil_mode", int64_t{c.bool_input(5)}});
  } else {
    attributes.push_back({"ceil_mode", int64_t{c.bool_input(4)}});
    attributes.push_back({"count_include_pad", int64_t{c.bool_input(5)}});
    if (c.node().inputs().size() > 6 && !c.is_none(c.node().input(6)))
      c.fail("avg_pool's divisor_override has no ONNX counterpart");
  }
  c.set_tensor_output(c.emit1(is_max ? "MaxPool" : "AveragePool", {x.name}, attributes), x.batch_axis);
}

// ONNX has no adaptive pooling: global pooling for a 1x1 output, a plain
// pooling whose windows tile the input when the output size divides it.
void adaptive_pooling(Conversion& c, bool is_max) {
  const Operand& x = c.tensor_input(0);
  if (is_max && c.node().outputs().size() > 1 && c.node().output(1)->hasUses())
    c.fail("adaptive_max_pool's indices are used; ONNX export supports its values only");
  const size_t dims = x.shape.size() - 2;
  const std::vector<int64_t> size = per_dimension(c, c.ints_input(1), dims, "output_size");
  const std::vector<int64_t> input_size(x.shape.begin() + 2, x.shape.end());
  std::string y;
  if (std::all_of(size.begin(), size.end(), [](int64_t s) { return s == 1; })) {
    y = c.emit1(is_max ? "GlobalMaxPool" : "GlobalAveragePool", {x.name});
  } else if (size == input_size) {
    y = x.name;
  } else {
    std::vector<int64_t> window;
    for (size_t d = 0; d < dims; ++d) {
      if (size[d] <= 0 || input_size[d] % size[d] != 0)
        c.fail(fmt::format("adaptive pooling from [{}] to [{}]: ONNX has no adaptive pooling, and these windows "
                           "overlap unevenly. Output [1, 1] (GlobalAveragePool) and output sizes that divide the "
                           "input size convert; export with an --input-shape whose spatial size is a multiple of [{}]",
                           fmt::join(input_size, ", "), fmt::join(size, ", "), fmt::join(size, ", ")));
      window.push_back(input_size[d] / size[d]);
    }
    y = c.emit1(is_max ? "MaxPool" : "AveragePool", {x.name}, {{"kernel_shape", window}, {"strides", window}});
  }
  c.set_tensor_output(y, x.batch_axis);
}

// A Reshape whose first entry copies the batch dimension (0) keeps the batch dynamic.
void reshape_to(Conversion& c, const Operand& x, std::vector<int64_t> target, const std::vector<bool>& batch_entries) {
  int64_t batch_axis = -1;
  for (size_t i = 0; i < target.size(); ++i) {
    if (i < batch_entries.size() && batch_entries[i] && x.batch_axis == 0) {
      if (i != 0) c.fail("the batch size moves to another dimension; export with --fixed-batch");
      target[i] = 0;
      batch_axis = 0;
    }
  }
  if (batch_axis < 0 && x.batch_axis == 0 && !target.empty() && target[0] == -1) {
    // x.view(-1, C): the batch stays first when the other sizes account for the rest.
    const int64_t rest_in = std::accumulate(x.shape.begin() + 1, x.shape.end(), int64_t{1}, std::multiplies<>());
    const int64_t rest_out = std::accumulate(target.begin() + 1, target.end(), int64_t{1}, std::multiplies<>());
    if (rest_in == rest_out) {
      target[0] = 0;
      batch_axis = 0;
    }
  }
  if (batch_axis < 0 && x.batch_axis >= 0 && c.dynamic_batch())
    c.fail(fmt::format("reshape to [{}] mixes the batch dimension into a fixed size; write x.view(x.size(0), ...) "
                       "or torch.flatten(x, 1), or export with --fixed-batch",
                       fmt::join(target, ", ")));
  c.set_tensor_output(c.emit1("Reshape", {x.name, c.ints_constant(target)}), batch_axis);
}

void view(Conversion& c) {
  const Operand& x = c.tensor_input(0);
  const Operand& shape = c.operand(c.node().input(1));
  if (shape.derived_from_batch && c.dynamic_batch())
    c.fail("the target shape is computed from the batch size; export with --fixed-batch");
  reshape_to(c, x, c.ints_input(1), shape.batch_entries);
}

void flatten(Conversion& c) {
  const Operand& x = c.tensor_input(0);
  const int64_t rank = static_cast<int64_t>(x.shape.size());
  if (rank == 0) return alias(c);
  const int64_t start = normalized_axis(c, c.int_input(1), rank);
  const int64_t end = normalized_axis(c, c.int_input(2), rank);
  if (start >= end) return alias(c);
  if (start == 1 && end == rank - 1) {
    c.set_tensor_output(c.emit1("Flatten", {x.name}, {{"axis", int64_t{1}}}), x.batch_axis);
    return;
  }
  std::vector<int64_t> target(static_cast<size_t>(start), 0);  // 0: copy the dimension
  target.push_back(-1);
  target.insert(target.end(), x.shape.begin() + end + 1, x.shape.end());
  std::vector<bool> batch_entries(target.size(), false);
  if (start > 0 && x.batch_axis == 0) batch_entries[0] = true;
  reshape_to(c, x, target, batch_entries);
}

void concatenate(Conversion& c) {
  const int64_t axis = normalized_axis(c, c.int_input(1), output_rank(c));
  const std::vector<std::string> names = c.tensor_list_names(0);
  const Operand& list = c.operand(c.node().input(0));
  int64_t batch_axis = -1;
  for (const Operand& element : list.elements)
    if (element.kind == Operand::Kind::Tensor) batch_axis = element.batch_axis;
  if (axis == batch_axis && c.dynamic_batch()) c.fail("concatenation along the batch dimension; export with --fixed-batch");
  c.set_tensor_output(c.emit1("Concat", names, {{"axis", axis}}), batch_axis);
}

// The axes a reduction removes; the batch axis after them.
void reduction(Conversion& c, const std::string& op_type) {
  const Operand& x = c.tensor_input(0);
  const int64_t rank = static_cast<int64_t>(x.shape.size());
  const auto& node = c.node();
  std::vector<int64_t> axes;
  bool keepdim = false;
  if (node.inputs().size() >= 3 && !c.is_none(node.input(1))) {
    for (int64_t axis : c.ints_input(1)) axes.push_back(normalized_axis(c, axis, rank));
    keepdim = c.bool_input(2);
    if (node.inputs().size() > 3 && !c.is_none(node.input(3))) c.fail("a reduction with a dtype is not supported");
  } else if (node.inputs().size() == 2 && !c.is_none(node.input(1))) {
    c.fail("a reduction with a dtype is not supported");
  }
  if (axes.empty())
    for (int64_t axis = 0; axis < rank; ++axis) axes.push_back(axis);
  int64_t batch_axis = x.batch_axis;
  if (batch_axis >= 0 && std::find(axes.begin(), axes.end(), batch_axis) != axes.end()) batch_axis = -1;
  if (batch_axis >= 0 && !keepdim)
    batch_axis -= std::count_if(axes.begin(), axes.end(), [&](int64_t a) { return a < x.batch_axis; });
  std::string y;
  if (op_type == "ReduceSum")  // opset 13 takes ReduceSum's axes as an input, ReduceMean's as an attribute
    y = c.emit1(op_type, {x.name, c.ints_constant(axes)}, {{"keepdims", int64_t{keepdim}}});
  else
    y = c.emit1(op_type, {x.name}, {{"axes", axes}, {"keepdims", int64_t{keepdim}}});
  c.set_tensor_output(y, batch_axis);
}

void softmax(Conversion& c, const std::string& op_type) {
  const Operand& x = c.tensor_input(0);
  if (c.node().inputs().size() > 2 && !c.is_none(c.node().input(2))) c.fail("softmax with a dtype is not supported");
  const int64_t axis = normalized_axis(c, c.int_input(1), static_cast<int64_t>(x.shape.size()));
  c.set_tensor_output(c.emit1(op_type, {x.name}, {{"axis", axis}}), x.batch_axis);
}

void transpose_to(Conversion& c, const std::vector<int64_t>& perm) {
  const Operand& x = c.tensor_input(0);
  int64_t batch_axis = -1;
  for (size_t i = 0; i < perm.size(); ++i)
    if (perm[i] == x.batch_axis) batch_axis = static_cast<int64_t>(i);
  c.set_tensor_output(c.emit1("Transpose", {x.name}, {{"perm", perm}}), batch_axis);
}

void permute(Conversion& c) {
  const int64_t rank = static_cast<int64_t>(c.tensor_input(0).shape.size());
  std::vector<int64_t> perm;
  for (int64_t d : c.ints_input(1)) perm.push_back(normalized_axis(c, d, rank));
  transpose_to(c, perm);
}

void transpose(Conversion& c) {
  const int64_t rank = static_cast<int64_t>(c.tensor_input(0).shape.size());
  std::vector<int64_t> perm(static_cast<size_t>(rank));
  std::iota(perm.begin(), perm.end(), 0);
  if (c.node().inputs().size() >= 3)
    std::swap(perm[static_cast<size_t>(normalized_axis(c, c.int_input(1), rank))],
              perm[static_cast<size_t>(normalized_axis(c, c.int_input(2), rank))]);
  else if (rank == 2)  // aten::t
    std::swap(perm[0], perm[1]);
  transpose_to(c, perm);
}

void unsqueeze(Conversion& c) {
  const Operand& x = c.tensor_input(0);
  const int64_t axis = normalized_axis(c, c.int_input(1), static_cast<int64_t>(x.shape.size()) + 1);
  const int64_t batch_axis = x.batch_axis >= axis ? x.batch_axis + 1 : x.batch_axis;
  c.set_tensor_output(c.emit1("Unsqueeze", {x.name, c.ints_constant({axis})}), batch_axis);
}

void squeeze(Conversion& c) {
  const Operand& x = c.tensor_input(0);
  const int64_t rank = static_cast<int64_t>(x.shape.size());
  std::vector<int64_t> axes;
  if (c.node().inputs().size() >= 2) {
    for (int64_t axis : c.ints_input(1)) {
      const int64_t a = normalized_axis(c, axis, rank);
      if (x.shape[static_cast<size_t>(a)] == 1) axes.push_back(a);
    }
  } else {
    for (int64_t a = 0; a < rank; ++a)
      if (x.shape[static_cast<size_t>(a)] == 1 && a != x.batch_axis) axes.push_back(a);
  }
  if (std::find(axes.begin(), axes.end(), x.batch_axis) != axes.end() && c.dynamic_batch())
    c.fail("squeezing the batch dimension; export with --fixed-batch");
  if (axes.empty()) return alias(c);
  const int64_t batch_axis =
      x.batch_axis - std::count_if(axes.begin(), axes.end(), [&](int64_t a) { return a < x.batch_axis; });
  c.set_tensor_output(c.emit1("Squeeze", {x.name, c.ints_constant(axes)}), x.batch_axis < 0 ? -1 : batch_axis);
}

void dropout(Conversion& c) {
  if (c.bool_input(2)) c.fail("dropout in training mode; the model is exported in eval mode, check its code");
  alias(c);
}

// contiguous/clone/detach/to: the same float32 (or quantized) values (layout is not ONNX's concern).
void same_values(Conversion& c) {
  const at::Tensor out = c.observed(c.node().output()).toTensor();
  if (out.scalar_type() != at::kFloat && !out.is_quantized())
    c.fail(fmt::format("converts to {}; the ONNX export handles float32 only", c10::toString(out.scalar_type())));
  alias(c);
}

void list_of_tensors(Conversion& c) {
  std::vector<Operand> elements;
  for (const torch::jit::Value* input : c.node().inputs()) elements.push_back(c.operand(input));
  c.set_tensor_list_output(std::move(elements));
}

void unpack_list(Conversion& c) {
  const Operand& list = c.operand(c.node().input(0));
  if (list.kind != Operand::Kind::TensorList) c.fail("unpacks something that is not a list of tensors");
  for (size_t i = 0; i < c.node().outputs().size(); ++i) {
    const Operand& element = list.elements.at(i);
    if (element.kind == Operand::Kind::Tensor)
      c.set_tensor_output(element.name, element.batch_axis, i);
    else
      c.set_known(c.node().output(i), element);
  }
}

using Conversions = std::unordered_map<std::string, std::function<void(Conversion&)>>;

const Conversions& conversions() {
  static const Conversions table = [] {
    Conversions t;
    auto unary = [&t](std::initializer_list<const char*> kinds, const char* op_type) {
      for (const char* kind : kinds) t[kind] = [op_type](Conversion& c) { elementwise(c, op_type); };
    };
    for (const char* kind : {"aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::_convolution"}) t[kind] = convolution;
    t["aten::linear"] = linear;
    t["aten::addmm"] = addmm;
    t["aten::matmul"] = t["aten::mm"] = matmul;
    unary({"aten::relu", "aten::relu_"}, "Relu");
    unary({"aten::sigmoid", "aten::sigmoid_"}, "Sigmoid");
    unary({"aten::tanh", "aten::tanh_"}, "Tanh");
    unary({"aten::exp", "aten::exp_"}, "Exp");
    unary({"aten::log", "aten::log_"}, "Log");
    unary({"aten::sqrt", "aten::sqrt_"}, "Sqrt");
    unary({"aten::abs", "aten::abs_"}, "Abs");
    unary({"aten::neg", "aten::neg_"}, "Neg");
    unary({"aten::erf", "aten::erf_"}, "Erf");
    unary({"aten::reciprocal", "aten::reciprocal_"}, "Reciprocal");
    for (const char* kind : {"aten::hardtanh", "aten::hardtanh_"})
      t[kind] = [](Conversion& c) { clip(c, c.number_input(1), c.number_input(2)); };
    for (const char* kind : {"aten::relu6", "aten::relu6_"}) t[kind] = [](Conversion& c) { clip(c, 0.0, 6.0); };
    for (const char* kind : {"aten::clamp", "aten::clamp_"})
      t[kind] = [](Conversion& c) { clip(c, optional_number(c, 1), optional_number(c, 2)); };
    for (const char* kind : {"aten::hardsigmoid", "aten::hardsigmoid_"})
      t[kind] = [](Conversion& c) { elementwise(c, "HardSigmoid", hard_sigmoid_attributes()); };
    for (const char* kind : {"aten::hardswish", "aten::hardswish_"})  // HardSwish is opset 14
      t[kind] = [](Conversion& c) { gated_by_itself(c, "HardSigmoid", hard_sigmoid_attributes()); };
    for (const char* kind : {"aten::silu", "aten::silu_"}) t[kind] = [](Conversion& c) { gated_by_itself(c, "Sigmoid"); };
    t["aten::gelu"] = t["aten::gelu_"] = gelu;
    for (const char* kind : {"aten::leaky_relu", "aten::leaky_relu_"})
      t[kind] = [](Conversion& c) {
        const float slope = c.node().inputs().size() > 1 ? static_cast<float>(c.number_input(1)) : 0.01f;
        elementwise(c, "LeakyRelu", {{"alpha", slope}});
      };
    for (const char* kind : {"aten::add", "aten::add_"}) t[kind] = [](Conversion& c) { arithmetic(c, "Add"); };
    for (const char* kind : {"aten::sub", "aten::sub_"}) t[kind] = [](Conversion& c) { arithmetic(c, "Sub"); };
    t["aten::rsub"] = [](Conversion& c) { arithmetic(c, "Sub", /*reversed=*/true); };
    for (const char* kind : {"aten::mul", "aten::mul_"}) t[kind] = [](Conversion& c) { arithmetic(c, "Mul"); };
    for (const char* kind : {"aten::div", "aten::div_"}) t[kind] = [](Conversion& c) { arithmetic(c, "Div"); };
    t["aten::batch_norm"] = batch_norm;
    for (const char* kind : {"aten::max_pool1d", "aten::max_pool2d", "aten::max_pool3d"})
      t[kind] = [](Conversion& c) { pooling(c, /*is_max=*/true); };
    for (const char* kind : {"aten::avg_pool1d", "aten::avg_pool2d", "aten::avg_pool3d"})
      t[kind] = [](Conversion& c) { pooling(c, /*is_max=*/false); };
    for (const char* kind : {"aten::adaptive_avg_pool1d", "aten::adaptive_avg_pool2d", "aten::adaptive_avg_pool3d"})
      t[kind] = [](Conversion& c) { adaptive_pooling(c, /*is_max=*/false); };
    for (const char* kind : {"aten::adaptive_max_pool1d", "aten::adaptive_max_pool2d", "aten::adaptive_max_pool3d"})
      t[kind] = [](Conversion& c) { adaptive_pooling(c, /*is_max=*/true); };
    t["aten::flatten"] = flatten;
    t["aten::view"] = t["aten::reshape"] = view;
    t["aten::cat"] = t["aten::concat"] = concatenate;
    t["aten::mean"] = [](Conversion& c) { reduction(c, "ReduceMean"); };
    t["aten::sum"] = [](Conversion& c) { reduction(c, "ReduceSum"); };
    t["aten::softmax"] = [](Conversion& c) { softmax(c, "Softmax"); };
    t["aten::log_softmax"] = [](Conversion& c) { softmax(c, "LogSoftmax"); };
    t["aten::permute"] = permute;
    t["aten::transpose"] = t["aten::t"] = transpose;
    t["aten::unsqueeze"] = unsqueeze;
    t["aten::squeeze"] = squeeze;
    for (const char* kind : {"aten::dropout", "aten::dropout_", "aten::feature_dropout", "aten::feature_dropout_",
                             "aten::alpha_dropout", "aten::alpha_dropout_", "aten::feature_alpha_dropout"})
      t[kind] = dropout;
    for (const char* kind : {"aten::contiguous", "aten::clone", "aten::detach", "aten::to"}) t[kind] = same_values;
    t["prim::ListConstruct"] = t["prim::TupleConstruct"] = list_of_tensors;
    t["prim::ListUnpack"] = t["prim::TupleUnpack"] = unpack_list;
    return t;
  }();
  return table;
}

}  // namespace

bool convert_aten_node(Conversion& conversion) {
  const auto& table = conversions();
  const auto found = table.find(conversion.node().kind().toQualString());
  if (found == table.end()) return false;
  found->second(conversion);
  return true;
}

}  // namespace mcompress::onnx_conversion
