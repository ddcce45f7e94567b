#pragma once
// An ONNX model held as plain data and encoded as onnx.proto's ModelProto,
// with no dependency on protobuf or the onnx package. It covers what a
// float32 inference graph needs: nodes with int/float/string/ints/floats
// attributes, float32 and int64 initializers (and the uint8, int8 and int32
// ones of QuantizeLinear/DequantizeLinear), and inputs/outputs whose
// dimensions are numbers or names (a name such as "batch" is a dimension
// chosen when the model runs).
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "mcompress/sdk/export.h"

namespace mcompress {

// onnx.proto's TensorProto.DataType values used here.
enum class OnnxDataType : int32_t { Float = 1, Uint8 = 2, Int8 = 3, Int32 = 6, Int64 = 7 };

struct OnnxAttribute {
  std::string name;
  std::variant<int64_t, float, std::string, std::vector<int64_t>, std::vector<float>> value;
};

struct OnnxNode {
  std::string op_type;  // in the default domain (ai.onnx)
  std::string name;
  std::vector<std::string> inputs;  // "" stands for an omitted optional input
  std::vector<std::string> outputs;
  std::vector<OnnxAttribute> attributes;
  std::string doc_string;  // where the node came from (e.g. a source line)
};

struct OnnxTensor {
  std::string name;
  OnnxDataType type = OnnxDataType::Float;
  std::vector<int64_t> dims;
  std::string raw_data;  // little-endian values, row-major
};

// One dimension: a size, or a name for a size chosen at run time.
using OnnxDimension = std::variant<int64_t, std::string>;

struct OnnxValueInfo {
  std::string name;
  OnnxDataType type = OnnxDataType::Float;
  std::vector<OnnxDimension> shape;
};

struct OnnxGraph {
  std::string name;
  std::vector<OnnxNode> nodes;  // in topological order
  std::vector<OnnxTensor> initializers;
  std::vector<OnnxValueInfo> inputs;
  std::vector<OnnxValueInfo> outputs;
};

struct OnnxModel {
  int64_t ir_version = 8;  // ONNX 1.10+: what onnx 1.12's checker and onnxruntime 1.x accept
  int64_t opset = 13;      // the default domain's operator set
  std::string producer_name = "mcompress";
  std::string producer_version;
  std::string doc_string;
  std::vector<std::pair<std::string, std::string>> metadata;  // metadata_props
  OnnxGraph graph;
};

// The ModelProto bytes of `model` (what a .onnx file holds).
MCOMPRESS_SDK_API std::string encode_onnx_model(const OnnxModel& model);

}  // namespace mcompress
