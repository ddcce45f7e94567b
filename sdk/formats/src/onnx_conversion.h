#pragma once
// The state of one TorchScript-to-ONNX conversion, shared by the graph walk
// (onnx_export.cpp) and the op conversions (onnx_aten_ops.cpp).
//
// Every TorchScript value becomes an Operand: either something known when
// exporting (a number, a list, None, a constant tensor: shapes and sizes
// the example run decided) or a float32 tensor computed from the model's
// input, named in the ONNX graph.
//
// A quantized tensor of an int8 model (int8_quant's output) is held as its
// dequantized float32 values: the output of the QuantizeLinear ->
// DequantizeLinear pair that follows every op whose result LibTorch
// quantizes (ONNX's QDQ form, which ONNX Runtime fuses into int8 kernels).
#include <torch/script.h>

#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "mcompress/formats/onnx_model.h"

namespace mcompress::onnx_conversion {

// The per-tensor affine quantization of a quantized TorchScript tensor.
struct TensorQuantization {
  double scale = 1;
  int64_t zero_point = 0;
  at::ScalarType dtype = at::kQUInt8;  // kQUInt8 (ONNX uint8) or kQInt8 (int8)
};

struct Operand {
  enum class Kind { Known, Tensor, TensorList };
  Kind kind = Kind::Known;
  c10::IValue value;  // Known: the value

  // Known ints (and lists of ints): which entries are the batch size, which
  // an ONNX Reshape keeps by copying the input's dimension. `derived_from_batch`:
  // computed from the batch size in another way, so valid at the example's batch only.
  std::vector<bool> batch_entries;
  bool derived_from_batch = false;

  std::string name;            // Tensor: the ONNX value
  std::vector<int64_t> shape;  // Tensor: its shape on the example input
  int64_t batch_axis = -1;     // Tensor: the dimension that is the batch (-1: none)
  std::vector<Operand> elements;  // TensorList: its tensors (Known or Tensor)
  // Tensor: a quantized TorchScript tensor, `name` holding its dequantized values.
  std::optional<TensorQuantization> quantization;
};

class Conversion {
 public:
  Conversion(const std::unordered_map<const torch::jit::Value*, c10::IValue>& observed, bool dynamic_batch,
             OnnxGraph& graph);

  // --- reading the current node's inputs
  const torch::jit::Node& node() const { return *node_; }
  void begin(const torch::jit::Node* node) { node_ = node; }
  const Operand& operand(const torch::jit::Value* value) const;
  const Operand* find_operand(const torch::jit::Value* value) const;  // nullptr: not converted (yet)
  bool is_tensor(const torch::jit::Value* value) const;
  bool is_none(const torch::jit::Value* value) const;
  int64_t int_input(size_t index) const;
  double number_input(size_t index) const;  // int or float
  bool bool_input(size_t index) const;
  std::vector<int64_t> ints_input(size_t index) const;  // an int list, or one int
  std::optional<std::string> string_input(size_t index) const;  // nullopt: None
  // A tensor from the input's data (throws naming the input otherwise).
  const Operand& tensor_input(size_t index) const;
  // The ONNX value of a tensor input, computed or constant (constants become
  // float32 initializers).
  std::string tensor_name(size_t index);
  std::vector<std::string> tensor_list_names(size_t index);
  // The ONNX value of any tensor operand (constants become initializers).
  std::string name_of(const Operand& operand, const std::string& hint);

  // --- writing
  std::string constant(const at::Tensor& value, const std::string& hint);  // float32 initializer
  std::string float_constant(double value);                               // 0-d float32
  std::string ints_constant(const std::vector<int64_t>& values);          // 1-D int64
  // An initializer of `value` converted to `type` (the integers of quantized weights and zero points).
  std::string typed_constant(const at::Tensor& value, OnnxDataType type, const std::string& hint);
  // Appends a node; returns its outputs' names (fresh, or `outputs` if given).
  std::vector<std::string> emit(const std::string& op_type, std::vector<std::string> inputs,
                                std::vector<OnnxAttribute> attributes = {}, size_t outputs = 1);
  std::string emit1(const std::string& op_type, std::vector<std::string> inputs,
                    std::vector<OnnxAttribute> attributes = {}) {
    return emit(op_type, std::move(inputs), std::move(attributes)).front();
  }
  // The current node's output `index` is the ONNX value `name`; its shape comes from the example run.
  // A quantized output (float32 values here) is quantized by quantize_outputs() after the conversion.
  void set_tensor_output(const std::string& name, int64_t batch_axis, size_t index = 0);
  void set_tensor_list_output(std::vector<Operand> elements);
  void set_known(const torch::jit::Value* value, Operand operand);
  void set_operand(const torch::jit::Value* value, Operand operand) { set_known(value, std::move(operand)); }
  const c10::IValue& observed(const torch::jit::Value* value) const;
  bool dynamic_batch() const { return dynamic_batch_; }

  // Throws mcompress::Error naming the current node, its source line and `why`.
  [[noreturn]] void fail(const std::string& why) const;

 private:
  const std::unordered_map<const torch::jit::Value*, c10::IValue>& observed_;
  bool dynamic_batch_;
  OnnxGraph& graph_;
  const torch::jit::Node* node_ = nullptr;
  std::unordered_map<const torch::jit::Value*, Operand> operands_;
  std::unordered_map<const torch::jit::Value*, std::string> constant_names_;
  int64_t next_name_ = 0;
};

// Converts the current node (an op on the input's data). Returns false when
// its kind has no conversion.
bool convert_aten_node(Conversion& conversion);

// The same for LibTorch's quantized ops (onnx_quantized_ops.cpp):
// quantize_per_tensor, dequantize, and quantized::conv2d, linear, add, cat,
// hardswish with their fused relu forms.
bool convert_quantized_node(Conversion& conversion);

// After the current node's conversion: every output that LibTorch computed
// as a quantized tensor gets a QuantizeLinear -> DequantizeLinear pair with
// the scale and zero point it had, so ONNX rounds where LibTorch rounds.
void quantize_outputs(Conversion& conversion);

}  // namespace mcompress::onnx_conversion
