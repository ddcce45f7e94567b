#pragma once
// Hugging Face checkpoint directories as models (causal_lm.h) and back.
#include <torch/script.h>

#include <filesystem>
#include <string>

#include "mcompress/formats/hf_checkpoint.h"
#include "mcompress/sdk/export.h"

namespace mcompress {

// "float32", "bfloat16", "float16", or "checkpoint" (the dtype the weights are stored in).
MCOMPRESS_SDK_API c10::ScalarType hf_compute_dtype(const std::string& name, const HfCheckpoint& checkpoint);

// Reads and builds the model of `directory` computing in `dtype` (see
// hf_compute_dtype). The module's parameters are the mapped tensors when the
// dtypes agree. Throws mcompress::Error naming the file and what is wrong,
// including a config that disagrees with the weight shapes.
MCOMPRESS_SDK_API torch::jit::Module load_hf_model(const std::filesystem::path& directory,
                                                   const std::string& dtype = "float32");

// Whether save_hf_model can write `model`: a causal LM whose parameters are
// still the checkpoint's tensors under their names (not replaced by quantized
// layers, not frozen into constants).
MCOMPRESS_SDK_API bool writable_as_checkpoint(const torch::jit::Module& model);

// Writes `model` (a causal LM) as a checkpoint: config.json updated to its
// current shapes, the weights in `storage_dtype` (kBFloat16, kHalf or kFloat;
// kUndefined: config.json's torch_dtype, else the parameters' dtype), the
// companion files copied from `source_directory` (may be empty).
MCOMPRESS_SDK_API void save_hf_model(const torch::jit::Module& model,
                                     const std::filesystem::path& directory,
                                     const std::filesystem::path& source_directory,
                                     c10::ScalarType storage_dtype = c10::ScalarType::Undefined);

}  // namespace mcompress
