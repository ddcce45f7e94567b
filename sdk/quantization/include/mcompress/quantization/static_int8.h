#pragma once
// Static post-training int8 quantization of a TorchScript CNN: convolutions
// and linear layers run as LibTorch's quantized operators (the oneDNN
// engine: uint8 activations with one scale and zero point per tensor, int8
// weights symmetric per output channel, as PyTorch's default qconfig for
// x86/oneDNN), activation ranges come from calibration batches.
//
// The result is a new, plain TorchScript module: its forward is generated
// source calling torch.quantize_per_tensor, quantized::conv2d(_relu),
// quantized::linear(_relu), quantized::add(_relu), quantized::cat,
// quantized::hardswish and torch.dequantize, with the packed weights as
// attributes (`__torch__.torch.classes.quantized.*PackedParamsBase`). It
// loads and runs in plain PyTorch/LibTorch; nothing of mcompress is needed.
//
// How: the model is frozen (BatchNorm folds into the convolutions, the graph
// becomes one flat block), in-place ops become functional, then one walk over
// the graph decides for each value whether it is computed in int8 or float.
// Pooling, flatten/reshape, relu and hardtanh run on int8 values as they
// come; a relu or ReLU6 (hardtanh(0, 6)) right after a convolution, linear
// layer or addition is fused into it. Ops without a quantized kernel run in
// float, with dequantize/quantize around them, and are reported.
#include <torch/script.h>

#include <string>
#include <vector>

#include "mcompress/sdk/export.h"

namespace mcompress {

enum class RangeObserver {
  MinMax,      // the smallest and largest value seen in any calibration batch
  Percentile,  // per batch, the given low/high percentiles; averaged over batches
};

struct StaticInt8Options {
  // Glob patterns (fnmatch) of layer names to keep in float. A layer's name
  // is its module path, e.g. "layer1.0.conv2" or "fc".
  std::vector<std::string> ignore{};
  RangeObserver observer = RangeObserver::MinMax;
  double percentile = 99.99;  // Percentile: the high one; the low one is 100 - it
};

// One convolution or linear layer of the frozen graph.
struct Int8LayerReport {
  std::string name;  // module path from the weight's name ("op<N>" when it has none)
  std::string op;    // "conv2d" or "linear"
  bool quantized = false;
  std::string fused;   // "relu" when a following relu/ReLU6 was fused into it
  std::string reason;  // why it stays in float (empty when quantized)
  int64_t bytes_before = 0;  // float weight + bias
  int64_t bytes_after = 0;   // int8 weight + per-channel scales + float bias (= before when skipped)
};

struct StaticInt8Model {
  torch::jit::Module model;             // new module; shares nothing with the input
  std::vector<Int8LayerReport> layers;  // in graph order
  // Ops computed in float between int8 values ("aten::sigmoid"), each once,
  // with the count; values cross between domains through these.
  std::vector<std::string> float_ops;
  int64_t quantize_calls = 0;    // torch.quantize_per_tensor in the generated forward
  int64_t dequantize_calls = 0;  // torch.dequantize in the generated forward
  std::string code;              // the generated forward (TorchScript source)
};

// Calibrates on `calibration_batches` (inputs of the model's forward, as
// many as given; at least one) and writes the int8 model. `model` is not
// changed. Throws mcompress::Error when the model cannot be frozen, its
// forward takes anything but tensors, its graph has control flow or an op
// the writer cannot express, no calibration batch is given, or no int8
// engine is available.
MCOMPRESS_SDK_API StaticInt8Model quantize_static_int8(const torch::jit::Module& model,
                                                       const std::vector<torch::Tensor>& calibration_batches,
                                                       const StaticInt8Options& options = {});

}  // namespace mcompress
