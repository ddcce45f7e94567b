#pragma once
// Writing a model as an MLX directory in mlx-lm's layout, so MLX
// (mx.load, nn.QuantizedLinear) and mlx-lm's loader read its weights:
//
//   model.safetensors             every parameter and buffer under its dotted
//                                 path; a quantized layer (quantized_model.h)
//                                 as <layer>.weight (U32 packed words),
//                                 <layer>.scales, <layer>.biases [, <layer>.bias];
//                                 metadata {"format": "mlx"}
//   model.safetensors.index.json  {"metadata": {"total_size": ...}, "weight_map": {...}}
//   config.json                   "quantization" (and its copy
//                                 "quantization_config"): {"group_size", "bits",
//                                 "mode": "affine"} plus an entry
//                                 {"group_size", "bits"} for each layer that
//                                 differs from them, as mlx-lm reads per-layer
//                                 settings; plus `extra_config`.
//
// Layers left in floating point have no .scales, which is how mlx-lm's loader
// tells them apart. mlx-lm also needs a "model_type" it implements to build
// the network; mcompress writes the weights and quantization settings, the
// architecture is the caller's (`extra_config`).
#include <torch/script.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "mcompress/sdk/export.h"

namespace mcompress {

struct MlxExportOptions {
  // Defaults written to config.json; 0: the most common among the quantized layers.
  int bits = 0;
  int group_size = 0;
  nlohmann::json extra_config = nlohmann::json::object();  // merged into config.json
};

struct MlxExportSummary {
  int64_t tensors = 0;
  int64_t quantized_layers = 0;
  int64_t bytes = 0;  // of model.safetensors
  nlohmann::json quantization;  // what config.json says
};

// Creates `directory` if needed and writes the three files (each through a
// temporary file). Throws mcompress::Error when the model has nothing to
// write or a file cannot be written.
MCOMPRESS_SDK_API MlxExportSummary write_mlx_directory(const torch::jit::Module& model,
                                                       const std::filesystem::path& directory,
                                                       const MlxExportOptions& options = {});

}  // namespace mcompress
