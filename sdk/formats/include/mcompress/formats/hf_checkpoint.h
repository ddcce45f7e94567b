#pragma once
// A Hugging Face checkpoint directory on disk:
//   config.json
//   model.safetensors, or model-0000N-of-0000M.safetensors shards with
//   model.safetensors.index.json ({"metadata": {"total_size"}, "weight_map"})
//   tokenizer.json, tokenizer_config.json, generation_config.json, ... (copied through)
// Reading memory-maps the shards: a tensor is a view of the file's pages
// (private mapping: writing to a tensor never changes the file), so loading
// costs about the checkpoint's size in memory, not twice that.
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "mcompress/formats/safetensors.h"
#include "mcompress/sdk/export.h"

namespace mcompress {

struct HfCheckpoint {
  std::filesystem::path directory;
  std::string config_json;  // config.json's text
  // Every tensor of every shard under its name, as the file stores it
  // (bfloat16, float16, float32, ...); views of the mapped files.
  std::map<std::string, SafetensorsEntry> tensors;
  int64_t tensor_bytes = 0;  // the sum of the tensors' bytes
};

// Reads `directory`. Throws mcompress::Error naming the file and what is wrong:
// no config.json, no weights, an index naming a missing shard or a tensor the
// shard lacks, a truncated shard, a header whose offsets overlap or run past
// the file, an unknown dtype, a tensor in two shards.
MCOMPRESS_SDK_API HfCheckpoint read_hf_checkpoint(const std::filesystem::path& directory);

struct HfWriteOptions {
  int64_t max_shard_bytes = int64_t{5} << 30;  // as transformers and mlx-lm shard
  std::map<std::string, std::string> file_metadata{{"format", "pt"}};
  // Tokenizer, generation config and chat template files are copied from here
  // when it is a directory (the checkpoint the model came from).
  std::filesystem::path copy_files_from;
};

// The files read_hf_checkpoint's directory may hold besides config and weights
// that a written checkpoint carries over (tokenizer.json, tokenizer_config.json,
// special_tokens_map.json, generation_config.json, tokenizer.model, ...).
MCOMPRESS_SDK_API const std::vector<std::string>& hf_companion_files();

// Writes a checkpoint to `directory`: config.json, one model.safetensors or
// model-0000N-of-0000M.safetensors shards in `tensors` order (none larger than
// max_shard_bytes unless one tensor is), model.safetensors.index.json always,
// and the companion files. Everything is written to a sibling temporary
// directory first and renamed into place, so a failure leaves no partial
// checkpoint; an existing `directory` is replaced.
MCOMPRESS_SDK_API void write_hf_checkpoint(const std::filesystem::path& directory,
                                           const std::string& config_json,
                                           const std::vector<SafetensorsEntry>& tensors,
                                           const HfWriteOptions& options = {});

}  // namespace mcompress
