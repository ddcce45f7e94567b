#pragma once
// Language models in the directory mlx-lm's converter writes
// (`mlx_lm.convert --quantize`, mlx-lm 0.32), so mlx_lm.load reads it as if
// mlx-lm had converted the checkpoint itself:
//
//   model.safetensors, or model-0000N-of-0000M.safetensors shards of at most
//     5 GiB, file metadata {"format": "mlx"}; a quantized layer as
//     <path>.weight (U32 words), <path>.scales, <path>.biases [, <path>.bias]
//     in MLX's affine format (mcompress/runtime/affine_quantization.h);
//   model.safetensors.index.json  {"metadata": {"total_size",
//     "total_parameters"}, "weight_map"} with sorted keys, 4-space indent;
//   config.json  the checkpoint's, keys sorted, with "quantization" and
//     "quantization_config" = {"group_size", "bits", "mode": "affine"} plus
//     {"group_size", "bits"} under the module path of every layer whose
//     settings differ;
//   the tokenizer and generation config copied.
//
// As mlx-lm: floating tensors are cast to config.json's torch_dtype (or
// "dtype"); every Linear and Embedding weight whose input size is a multiple
// of the default group size is quantized (embed_tokens and lm_head included;
// lm_head is dropped when the embeddings are tied); scales and biases take
// the weight's dtype; Mixtral's experts are stacked into
// block_sparse_moe.switch_mlp.{gate,down,up}_proj [experts, out, in].
#include <torch/script.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mcompress/formats/hf_checkpoint.h"
#include "mcompress/models/transformer_config.h"
#include "mcompress/runtime/quantized_linear.h"
#include "mcompress/sdk/export.h"
#include "mcompress/sdk/progress.h"

namespace mcompress {

struct MlxLayerSettings {
  int bits = 4;
  int group_size = 64;
};

struct MlxLmOptions {
  int bits = 4;
  int group_size = 64;
  // Settings for the layers whose module path matches a glob pattern (e.g.
  // "model.layers.*.mlp.down_proj"; later entries win): written as
  // per-layer entries, as mlx-lm's mixed recipes write them.
  std::vector<std::pair<std::string, MlxLayerSettings>> layer_settings;
  // Glob patterns (fnmatch) of module paths left in floating point, e.g.
  // "lm_head" or "model.embed_tokens".
  std::vector<std::string> keep_float;
  // "float16", "bfloat16" or "float32"; empty: config.json's torch_dtype
  // (or "dtype"), else each tensor's own dtype.
  std::string dtype;
  // Weights quantized already (GPTQ, or a model's quantized layers) by module
  // path; written as they are instead of rounding to nearest.
  std::map<std::string, runtime::QuantizedWeight> quantized;
  int64_t max_shard_bytes = int64_t{5} << 30;
  Progress* progress = nullptr;  // optional: one step per tensor read
};

struct MlxLmLayerReport {
  std::string path;  // module path as mlx-lm names it
  int64_t out_features = 0;
  int64_t in_features = 0;
  int bits = 0;
  int group_size = 0;
  bool quantized = false;
  std::string reason;  // why it stays in floating point
};

struct MlxLmSummary {
  std::vector<MlxLmLayerReport> layers;  // every Linear/Embedding weight
  int64_t tensors = 0;                   // written
  int64_t bytes = 0;                     // of the tensors written
  int64_t parameters = 0;                // as mlx-lm counts them (total_parameters)
  double bits_per_weight = 0;            // bytes * 8 / parameters, as mlx-lm reports it
  nlohmann::json quantization;           // what config.json says
};

// Writes `tensors` (Hugging Face names, as read_hf_checkpoint or a causal LM
// gives them; floating point) with `config_json` to `directory` in mlx-lm's
// layout, tensor by tensor: a tensor is converted when its turn comes and
// the writer holds at most one shard. `companions_from`: the directory whose
// tokenizer and generation config are copied (may be empty). Throws
// mcompress::Error for an unsupported quantization setting, a family mlx-lm
// names differently that is not handled, or a file that cannot be written;
// nothing is left behind then.
MCOMPRESS_SDK_API MlxLmSummary write_mlx_lm_checkpoint(const std::vector<SafetensorsEntry>& tensors,
                                                       const std::string& config_json,
                                                       const std::filesystem::path& companions_from,
                                                       const std::filesystem::path& directory,
                                                       const MlxLmOptions& options);

// Converts the checkpoint in `source` (a Hugging Face checkpoint, or one
// mlx-lm quantized already: its layers are dequantized first, as converting
// an MLX model to other bits requires) to `directory`. The source's pages are
// released after each tensor, so peak memory stays near one shard of output
// plus the largest tensor, not the model.
MCOMPRESS_SDK_API MlxLmSummary convert_to_mlx_lm(const std::filesystem::path& source,
                                                 const std::filesystem::path& directory,
                                                 const MlxLmOptions& options);

// An mlx-lm directory read for running, its layers left quantized: what
// KvDecoder(config, floating, quantized) decodes from (batch-1 decoding
// reads every weight once per token, so the packed codes are what make it
// fast). Names are Hugging Face's: Mixtral's stacked switch_mlp tensors come
// back as experts.<e>.w1/w2/w3.
struct MlxLmWeights {
  TransformerConfig config;
  std::string config_json;                                    // config.json's text
  std::map<std::string, torch::Tensor> floating;              // views of the mapped files
  std::map<std::string, runtime::QuantizedWeight> quantized;  // by module path
};

// Reads `directory` (quantized or not). Throws mcompress::Error naming the
// file and tensor for scales without biases, a layer whose codes, scales and
// config.json's bits/group size disagree, or an unsupported setting.
MCOMPRESS_SDK_API MlxLmWeights read_mlx_lm_checkpoint(const std::filesystem::path& directory);

}  // namespace mcompress
