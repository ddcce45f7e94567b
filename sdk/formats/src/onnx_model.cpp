#include "mcompress/formats/onnx_model.h"

#include "protobuf_writer.h"

namespace mcompress {
namespace {

// Field numbers of onnx.proto (ONNX 1.12, proto2 syntax).
namespace model_field {
constexpr uint32_t kIrVersion = 1, kProducerName = 2, kProducerVersion = 3, kDocString = 6, kGraph = 7,
                   kOpsetImport = 8, kMetadataProps = 14;
}
namespace opset_field {
constexpr uint32_t kDomain = 1, kVersion = 2;
}
namespace entry_field {
constexpr uint32_t kKey = 1, kValue = 2;
}
namespace graph_field {
constexpr uint32_t kNode = 1, kName = 2, kInitializer = 5, kInput = 11, kOutput = 12;
}
namespace node_field {
constexpr uint32_t kInput = 1, kOutput = 2, kName = 3, kOpType = 4, kAttribute = 5, kDocString = 6;
}
namespace attribute_field {
constexpr uint32_t kName = 1, kF = 2, kI = 3, kS = 4, kFloats = 7, kInts = 8, kType = 20;
}
// AttributeProto.AttributeType
namespace attribute_type {
constexpr int64_t kFloat = 1, kInt = 2, kString = 3, kFloats = 6, kInts = 7;
}
namespace tensor_field {
constexpr uint32_t kDims = 1, kDataType = 2, kName = 8, kRawData = 9;
}
namespace value_info_field {
constexpr uint32_t kName = 1, kType = 2;
}
namespace type_field {
constexpr uint32_t kTensorType = 1;  // TypeProto.tensor_type
constexpr uint32_t kElemType = 1, kShape = 2;  // TypeProto.Tensor
}
namespace shape_field {
constexpr uint32_t kDim = 1;                     // TensorShapeProto.dim
constexpr uint32_t kDimValue = 1, kDimParam = 2;  // TensorShapeProto.Dimension
}

ProtobufWriter encode_attribute(const OnnxAttribute& attribute) {
  ProtobufWriter out;
  out.bytes_field(attribute_field::kName, attribute.name);
  struct Visitor {
    ProtobufWriter& out;
    void operator()(int64_t value) const {
      out.varint_field(attribute_field::kI, value);
      out.varint_field(attribute_field::kType, attribute_type::kInt);
    }
    void operator()(float value) const {
      out.float_field(attribute_field::kF, value);
      out.varint_field(attribute_field::kType, attribute_type::kFloat);
    }
    void operator()(const std::string& value) const {
      out.bytes_field(attribute_field::kS, value);
      out.varint_field(attribute_field::kType, attribute_type::kString);
    }
    void operator()(const std::vector<int64_t>& values) const {
      out.packed_varints_field(attribute_field::kInts, values);
      out.varint_field(attribute_field::kType, attribute_type::kInts);
    }
    void operator()(const std::vector<float>& values) const {
      out.packed_floats_field(attribute_field::kFloats, values);
      out.varint_field(attribute_field::kType, attribute_type::kFloats);
    }
  };
  std::visit(Visitor{out}, attribute.value);
  return out;
}

ProtobufWriter encode_node(const OnnxNode& node) {
  ProtobufWriter out;
  for (const auto& input : node.inputs) out.bytes_field(node_field::kInput, input);
  for (const auto& output : node.outputs) out.bytes_field(node_field::kOutput, output);
  if (!node.name.empty()) out.bytes_field(node_field::kName, node.name);
  out.bytes_field(node_field::kOpType, node.op_type);
  for (const auto& attribute : node.attributes) out.message_field(node_field::kAttribute, encode_attribute(attribute));
  if (!node.doc_string.empty()) out.bytes_field(node_field::kDocString, node.doc_string);
  return out;
}

ProtobufWriter encode_tensor(const OnnxTensor& tensor) {
  ProtobufWriter out;
  // Unpacked dims: a scalar has none, and an empty packed field would read the same.
  for (int64_t dim : tensor.dims) out.varint_field(tensor_field::kDims, dim);
  out.varint_field(tensor_field::kDataType, static_cast<int64_t>(tensor.type));
  out.bytes_field(tensor_field::kName, tensor.name);
  out.bytes_field(tensor_field::kRawData, tensor.raw_data);
  return out;
}

ProtobufWriter encode_value_info(const OnnxValueInfo& info) {
  ProtobufWriter shape;
  for (const auto& dimension : info.shape) {
    ProtobufWriter dim;
    if (const auto* size = std::get_if<int64_t>(&dimension))
      dim.varint_field(shape_field::kDimValue, *size);
    else
      dim.bytes_field(shape_field::kDimParam, std::get<std::string>(dimension));
    shape.message_field(shape_field::kDim, dim);
  }
  ProtobufWriter tensor_type;
  tensor_type.varint_field(type_field::kElemType, static_cast<int64_t>(info.type));
  tensor_type.message_field(type_field::kShape, shape);
  ProtobufWriter type;
  type.message_field(type_field::kTensorType, tensor_type);
  ProtobufWriter out;
  out.bytes_field(value_info_field::kName, info.name);
  out.message_field(value_info_field::kType, type);
  return out;
}

ProtobufWriter encode_graph(const OnnxGraph& graph) {
  ProtobufWriter out;
  for (const auto& node : graph.nodes) out.message_field(graph_field::kNode, encode_node(node));
  out.bytes_field(graph_field::kName, graph.name);
  for (const auto& tensor : graph.initializers) out.message_field(graph_field::kInitializer, encode_tensor(tensor));
  for (const auto& input : graph.inputs) out.message_field(graph_field::kInput, encode_value_info(input));
  for (const auto& output : graph.outputs) out.message_field(graph_field::kOutput, encode_value_info(output));
  return out;
}

}  // namespace

std::string encode_onnx_model(const OnnxModel& model) {
  ProtobufWriter out;
  out.varint_field(model_field::kIrVersion, model.ir_version);
  out.bytes_field(model_field::kProducerName, model.producer_name);
  if (!model.producer_version.empty()) out.bytes_field(model_field::kProducerVersion, model.producer_version);
  if (!model.doc_string.empty()) out.bytes_field(model_field::kDocString, model.doc_string);
  out.message_field(model_field::kGraph, encode_graph(model.graph));
  ProtobufWriter opset;
  opset.bytes_field(opset_field::kDomain, "");  // the default domain, ai.onnx
  opset.varint_field(opset_field::kVersion, model.opset);
  out.message_field(model_field::kOpsetImport, opset);
  for (const auto& [key, value] : model.metadata) {
    ProtobufWriter entry;
    entry.bytes_field(entry_field::kKey, key);
    entry.bytes_field(entry_field::kValue, value);
    out.message_field(model_field::kMetadataProps, entry);
  }
  return out.bytes();
}

}  // namespace mcompress
