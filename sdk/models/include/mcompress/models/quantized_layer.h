#pragma once
// How a quantized linear layer looks inside a TorchScript model (the layout
// quantize_linear_layers in mcompress/quantization/quantized_model.h
// writes): what anything that reads models (sizes, exporters) needs to know,
// without the quantizer itself.
#include <torch/script.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mcompress/sdk/export.h"

namespace mcompress {

// Attribute names of a quantized layer and of the root's requirement note.
inline constexpr const char* kPackedWeightName = "packed_weight";
inline constexpr const char* kScalesName = "scales";
inline constexpr const char* kBiasesName = "biases";
inline constexpr const char* kBitsName = "bits";
inline constexpr const char* kGroupSizeName = "group_size";
inline constexpr const char* kRuntimeRequirementName = "mcompress_requires";

// A quantized layer of a model (made by quantize_linear_layers, possibly
// saved and reloaded). Tensors are the model's own.
struct QuantizedLayerView {
  std::string path;
  torch::Tensor packed, scales, biases;
  torch::Tensor bias;  // undefined when the layer has none
  int bits = 0;
  int group_size = 0;
  int64_t in_features() const { return scales.size(1) * group_size; }
  int64_t out_features() const { return packed.size(0); }
};
MCOMPRESS_SDK_API std::vector<QuantizedLayerView> quantized_layers(const torch::jit::Module& model);

// The weights the packed codes of all quantized layers stand for (sum of
// out * in): parameters a quantized model still has, though not as
// parameters.
MCOMPRESS_SDK_API int64_t quantized_weight_elements(const torch::jit::Module& model);

}  // namespace mcompress
