#pragma once
// Size and cost of a model: parameters, MACs per sample, per-layer costs.
#include <torch/script.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mcompress/sdk/export.h"

namespace mcompress {

// Elements of all parameters (not buffers), recursively, plus the weights of
// quantized layers (quantized_layer.h), which are packed into buffers.
MCOMPRESS_SDK_API int64_t count_parameters(const torch::jit::Module& model);

// Cost of one compute layer (aten::linear, aten::conv2d, aten::matmul,
// mcompress::quantized_linear...) for one sample.
struct LayerCost {
  std::string module_path;  // owner of the weight, e.g. "features.3"; "" if none
  std::string op;           // "linear", "conv2d", ...
  int64_t macs = 0;         // multiply-accumulates for a batch-1 input
  int64_t params = 0;       // elements of the weight and bias
  int64_t out_channels = 0;
};

// Runs the model once, in eval mode without gradients, on the first sample
// of `example_input` and returns the cost of every linear/conv/matmul call in
// execution order. Branches on bool/int/float module attributes (e.g.
// `self.training`) are resolved with the attributes' current values; layers
// inside data-dependent branches or loops are not counted.
MCOMPRESS_SDK_API std::vector<LayerCost> layer_costs(const torch::jit::Module& model,
                                                     const torch::Tensor& example_input);

// Sum of layer_costs(...).macs.
MCOMPRESS_SDK_API int64_t count_macs(const torch::jit::Module& model,
                                     const torch::Tensor& example_input);

}  // namespace mcompress
