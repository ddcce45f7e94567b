#include "onnx_conversion.h"

#include <fmt/format.h>

#include <cstring>

#include "mcompress/sdk/error.h"
#include "onnx_graph_preparation.h"

namespace mcompress::onnx_conversion {
namespace {

bool is_known_number(const c10::IValue& value) { return value.isInt() || value.isDouble() || value.isBool(); }

std::string raw_bytes(const at::Tensor& contiguous) {
  return std::string(static_cast<const char*>(contiguous.data_ptr()),
                     static_cast<size_t>(contiguous.numel()) * contiguous.element_size());
}

// ONNX names are free-form, but readable ones help in Netron and in errors.
std::string readable_name(const std::string& hint) {
  std::string name;
  for (char ch : hint) name.push_back(std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' ? ch : '_');
  return name.empty() ? "value" : name;
}

}  // namespace

Conversion::Conversion(const std::unordered_map<const torch::jit::Value*, c10::IValue>& observed, bool dynamic_batch,
                       OnnxGraph& graph)
    : observed_(observed), dynamic_batch_(dynamic_batch), graph_(graph) {}

void Conversion::fail(const std::string& why) const {
  std::string where;
  if (node_) {
    const std::string location = source_location(node_);
    where = fmt::format("{}{}: ", node_->kind().toQualString(), location.empty() ? "" : " at " + location);
  }
  throw Error(where + why);
}

const Operand& Conversion::operand(const torch::jit::Value* value) const {
  const auto found = operands_.find(value);
  if (found == operands_.end()) fail(fmt::format("the value %{} was never defined", value->debugName()));
  return found->second;
}

const Operand* Conversion::find_operand(const torch::jit::Value* value) const {
  const auto found = operands_.find(value);
  return found == operands_.end() ? nullptr : &found->second;
}

bool Conversion::is_tensor(const torch::jit::Value* value) const {
  return operand(value).kind == Operand::Kind::Tensor;
}

bool Conversion::is_none(const torch::jit::Value* value) const {
  const Operand& o = operand(value);
  return o.kind == Operand::Kind::Known && o.value.isNone();
}

namespace {
const c10::IValue& known_input(const Conversion& c, size_t index, const char* what) {
  const auto& node = c.node();
  if (index >= node.inputs().size()) c.fail(fmt::format("expected at least {} inputs", index + 1));
  const Operand& o = c.operand(node.input(index));
  if (o.kind != Operand::Kind::Known)
    c.fail(fmt::format("input {} ({}) must be known when exporting (a {}), but it is computed from the input's data",
                       index, node.input(index)->debugName(), what));
  return o.value;
}
}  // namespace

int64_t Conversion::int_input(size_t index) const {
  const c10::IValue& v = known_input(*this, index, "number");
  if (!v.isInt()) fail(fmt::format("input {} is not an int", index));
  return v.toInt();
}

double Conversion::number_input(size_t index) const {
  const c10::IValue& v = known_input(*this, index, "number");
  if (v.isInt()) return static_cast<double>(v.toInt());
  if (v.isDouble()) return v.toDouble();
  if (v.isBool()) return v.toBool() ? 1.0 : 0.0;
  fail(fmt::format("input {} is not a number", index));
}

bool Conversion::bool_input(size_t index) const {
  const c10::IValue& v = known_input(*this, index, "bool");
  if (v.isBool()) return v.toBool();
  if (v.isInt()) return v.toInt() != 0;
  fail(fmt::format("input {} is not a bool", index));
}

std::vector<int64_t> Conversion::ints_input(size_t index) const {
  const c10::IValue& v = known_input(*this, index, "list of ints");
  if (v.isInt()) return {v.toInt()};
  if (v.isIntList()) return v.toIntVector();
  fail(fmt::format("input {} is not a list of ints", index));
}

std::optional<std::string> Conversion::string_input(size_t index) const {
  const c10::IValue& v = known_input(*this, index, "string");
  if (v.isNone()) return std::nullopt;
  if (v.isString()) return v.toStringRef();
  fail(fmt::format("input {} is not a string", index));
}

const Operand& Conversion::tensor_input(size_t index) const {
  const auto& node = this->node();
  if (index >= node.inputs().size()) fail(fmt::format("expected at least {} inputs", index + 1));
  const Operand& o = operand(node.input(index));
  if (o.kind != Operand::Kind::Tensor)
    fail(fmt::format("input {} is expected to be computed from the model's input", index));
  return o;
}

std::string Conversion::name_of(const Operand& o, const std::string& hint) {
  if (o.kind == Operand::Kind::Tensor) return o.name;
  if (o.kind == Operand::Kind::Known && o.value.isTensor()) return constant(o.value.toTensor(), hint);
  if (o.kind == Operand::Kind::Known && is_known_number(o.value)) {
    const c10::IValue& v = o.value;
    return float_constant(v.isInt() ? static_cast<double>(v.toInt()) : v.isBool() ? double(v.toBool()) : v.toDouble());
  }
  fail(fmt::format("'{}' is neither a tensor nor a number", hint));
}

std::string Conversion::tensor_name(size_t index) {
  const torch::jit::Value* value = node().input(index);
  const Operand& o = operand(value);
  if (o.kind == Operand::Kind::Known && o.value.isTensor()) {
    // One initializer per TorchScript constant, however often it is used.
    auto found = constant_names_.find(value);
    if (found != constant_names_.end()) return found->second;
    return constant_names_[value] = constant(o.value.toTensor(), value->debugName());
  }
  return name_of(o, value->debugName());
}

std::vector<std::string> Conversion::tensor_list_names(size_t index) {
  const Operand& list = operand(node().input(index));
  if (list.kind != Operand::Kind::TensorList) fail(fmt::format("input {} is not a list of tensors", index));
  std::vector<std::string> names;
  for (const Operand& element : list.elements) names.push_back(name_of(element, "list_element"));
  return names;
}

std::string Conversion::constant(const at::Tensor& value, const std::string& hint) {
  if (!value.is_floating_point() && !value.is_complex() && value.scalar_type() != at::kLong &&
      value.scalar_type() != at::kInt && value.scalar_type() != at::kBool)
    fail(fmt::format("the constant {} is {}, which the float32 export cannot hold", hint,
                     c10::toString(value.scalar_type())));
  if (value.is_complex()) fail(fmt::format("the constant {} is complex", hint));
  OnnxTensor tensor;
  tensor.name = fmt::format("{}_{}", readable_name(hint), next_name_++);
  tensor.type = OnnxDataType::Float;
  tensor.dims = value.sizes().vec();
  tensor.raw_data = raw_bytes(value.detach().to(at::kFloat).contiguous());
  graph_.initializers.push_back(std::move(tensor));
  return graph_.initializers.back().name;
}

std::string Conversion::float_constant(double value) { return constant(at::scalar_tensor(value, at::kFloat), "scalar"); }

std::string Conversion::ints_constant(const std::vector<int64_t>& values) {
  OnnxTensor tensor;
  tensor.name = fmt::format("ints_{}", next_name_++);
  tensor.type = OnnxDataType::Int64;
  tensor.dims = {static_cast<int64_t>(values.size())};
  tensor.raw_data.resize(values.size() * sizeof(int64_t));
  if (!values.empty()) std::memcpy(tensor.raw_data.data(), values.data(), tensor.raw_data.size());
  graph_.initializers.push_back(std::move(tensor));
  return graph_.initializers.back().name;
}

std::string Conversion::typed_constant(const at::Tensor& value, OnnxDataType type, const std::string& hint) {
  static const std::unordered_map<OnnxDataType, at::ScalarType> scalar_types{
      {OnnxDataType::Float, at::kFloat}, {OnnxDataType::Uint8, at::kByte}, {OnnxDataType::Int8, at::kChar},
      {OnnxDataType::Int32, at::kInt},   {OnnxDataType::Int64, at::kLong}};
  OnnxTensor tensor;
  tensor.name = fmt::format("{}_{}", readable_name(hint), next_name_++);
  tensor.type = type;
  tensor.dims = value.sizes().vec();
  tensor.raw_data = raw_bytes(value.detach().to(scalar_types.at(type)).contiguous());
  graph_.initializers.push_back(std::move(tensor));
  return graph_.initializers.back().name;
}

std::vector<std::string> Conversion::emit(const std::string& op_type, std::vector<std::string> inputs,
                                          std::vector<OnnxAttribute> attributes, size_t outputs) {
  OnnxNode node;
  const int64_t id = next_name_++;
  node.op_type = op_type;
  node.name = fmt::format("{}_{}", op_type, id);
  node.inputs = std::move(inputs);
  // Trailing omitted optional inputs are dropped; inner ones stay "".
  while (!node.inputs.empty() && node.inputs.back().empty()) node.inputs.pop_back();
  for (size_t i = 0; i < outputs; ++i) node.outputs.push_back(fmt::format("{}_{}{}", op_type, id, i ? fmt::format("_{}", i) : ""));
  node.attributes = std::move(attributes);
  if (node_) {
    const std::string location = source_location(node_);
    node.doc_string = location.empty() ? node_->kind().toQualString() : fmt::format("{} at {}", node_->kind().toQualString(), location);
  }
  graph_.nodes.push_back(std::move(node));
  return graph_.nodes.back().outputs;
}

const c10::IValue& Conversion::observed(const torch::jit::Value* value) const {
  const auto found = observed_.find(value);
  if (found == observed_.end()) fail(fmt::format("the example run recorded no value for %{}", value->debugName()));
  return found->second;
}

void Conversion::set_tensor_output(const std::string& name, int64_t batch_axis, size_t index) {
  const torch::jit::Value* value = node().output(index);
  const c10::IValue& seen = observed(value);
  if (!seen.isTensor()) fail(fmt::format("output {} is not a tensor", index));
  const at::Tensor& tensor = seen.toTensor();
  const bool per_tensor_quantized = tensor.is_quantized() && tensor.qscheme() == at::kPerTensorAffine &&
                                    (tensor.scalar_type() == at::kQUInt8 || tensor.scalar_type() == at::kQInt8);
  if (tensor.scalar_type() != at::kFloat && !per_tensor_quantized)
    fail(fmt::format("computes a {} tensor; the ONNX export handles float32 computations and int8 tensors "
                     "quantized per tensor (quint8, qint8) only",
                     c10::toString(tensor.scalar_type())));
  Operand o;
  o.kind = Operand::Kind::Tensor;
  o.name = name;
  o.shape = tensor.sizes().vec();
  o.batch_axis = batch_axis;
  operands_[value] = std::move(o);
}

void Conversion::set_tensor_list_output(std::vector<Operand> elements) {
  Operand o;
  o.kind = Operand::Kind::TensorList;
  o.elements = std::move(elements);
  operands_[node().output()] = std::move(o);
}

void Conversion::set_known(const torch::jit::Value* value, Operand operand) { operands_[value] = std::move(operand); }

}  // namespace mcompress::onnx_conversion
