#pragma once
// Writing a checkpoint directory tensor by tensor, so a converter holds one
// shard in memory rather than the model.
//
// Tensors are added in order. When the next tensor would take the open shard
// past the limit, the shard is written (under a temporary name) and released.
// commit() writes the last shard, names the shards as transformers and
// mlx-lm do (model.safetensors, or model-0000N-of-0000M.safetensors), writes
// model.safetensors.index.json, config.json and the companion files, then
// renames the staging directory into place (an existing directory is
// replaced only then). A writer destroyed before commit() leaves nothing.
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "mcompress/formats/hf_checkpoint.h"
#include "mcompress/sdk/export.h"

namespace mcompress {

class MCOMPRESS_SDK_API HfCheckpointWriter {
 public:
  // Creates the staging directory next to `directory`. Throws mcompress::Error
  // when `directory` exists and is not a directory, or its parent is not writable.
  HfCheckpointWriter(const std::filesystem::path& directory, HfWriteOptions options = {});
  ~HfCheckpointWriter();
  HfCheckpointWriter(const HfCheckpointWriter&) = delete;
  HfCheckpointWriter& operator=(const HfCheckpointWriter&) = delete;

  // Throws mcompress::Error for an undefined tensor, a name given twice, or
  // a dtype safetensors cannot hold.
  void add(SafetensorsEntry entry);

  // Bytes of the tensors added so far.
  int64_t tensor_bytes() const;

  // `index_metadata` is merged into the index's "metadata" (which always has
  // "total_size"); the index is written with `index_indent` spaces (transformers
  // uses 2, mlx-lm 4). Throws mcompress::Error when `config_json` is not a
  // JSON object or a file cannot be written.
  void commit(const std::string& config_json,
              const nlohmann::json& index_metadata = nlohmann::json::object(), int index_indent = 2);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace mcompress
