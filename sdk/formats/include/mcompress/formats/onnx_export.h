#pragma once
// Exporting a TorchScript image model (mcompress's zoo CNNs, pruned or
// torchvision models, optimize_inference's frozen output) as a float32 ONNX
// file (ir_version 8, opset 13) that ONNX Runtime and onnx's checker accept.
//
// LibTorch has no ONNX exporter, so the model is converted here: a frozen
// eval-mode copy (BatchNorm folded into convolutions, dropout gone, as
// optimize_for_cpu_inference freezes it) is run once on an example input of
// `input_shape`; branches whose condition that run decides (input rank
// checks, channels-last conversion) keep the branch taken; shape queries
// become constants; and every remaining operation on the input's data is
// mapped to ONNX nodes (docs/onnx.md lists them). The input's first
// dimension is named "batch", so the file runs at any batch size.
//
// An int8 model from int8_quant (LibTorch's quantized ops) is written in
// ONNX's QDQ form: QuantizeLinear/DequantizeLinear pairs around float ops,
// int8 weights per output channel, int32 biases.
//
// Anything else (another op, a loop, a branch on the data) is refused with
// an error naming the op and its source line: a file is written only when
// every op converted.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "mcompress/formats/onnx_model.h"
#include "mcompress/sdk/export.h"

namespace torch::jit {
struct Module;
}

namespace mcompress {

struct OnnxExportOptions {
  std::vector<int64_t> input_shape;  // the example input, batch first, e.g. {1, 1, 28, 28}
  bool dynamic_batch = true;         // the input's and outputs' first dimension is "batch"
  std::string model_name;            // the graph's name; empty: "model"
  std::string producer_version;      // ModelProto.producer_version (mcompress's version)
};

struct OnnxExportSummary {
  int64_t nodes = 0;
  std::map<std::string, int64_t> nodes_by_op;  // ONNX op type -> count
  int64_t initializers = 0;
  int64_t initializer_values = 0;  // numbers stored in initializers (weights and constants)
  std::vector<int64_t> input_shape;
  std::vector<std::vector<int64_t>> output_shapes;  // at the example input's batch size
  int64_t opset = 0;
  int64_t ir_version = 0;
  int64_t bytes = 0;  // of the file (export_onnx only)
};

// The ONNX model of `model`'s forward for a float32 input of
// options.input_shape; `model` is unchanged. Throws mcompress::Error when
// the model cannot be frozen, does not run on that input, or uses something
// the converter does not map (the message names the op and source line).
MCOMPRESS_SDK_API OnnxModel torchscript_to_onnx(const torch::jit::Module& model, const OnnxExportOptions& options,
                                                OnnxExportSummary* summary = nullptr);

// torchscript_to_onnx written to `path` through a temporary file beside it,
// renamed when complete: a failure never leaves a partial file (and never
// replaces an existing one). Throws mcompress::Error as above, or when the
// file cannot be written.
MCOMPRESS_SDK_API OnnxExportSummary export_onnx(const torch::jit::Module& model, const std::filesystem::path& path,
                                                const OnnxExportOptions& options);

}  // namespace mcompress
