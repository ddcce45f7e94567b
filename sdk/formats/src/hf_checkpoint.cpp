#include "mcompress/formats/hf_checkpoint.h"

#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "mcompress/formats/checkpoint_writer.h"
#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;

constexpr const char* kConfigFile = "config.json";
constexpr const char* kSingleWeightsFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot read {}", path.string()));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw Error(fmt::format("cannot read {}", path.string()));
  return text.str();
}

nlohmann::json parse_json_object(const std::string& text, const fs::path& path, const std::string& remedy) {
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: not valid JSON ({}); {}", path.string(), e.what(), remedy));
  }
  if (!value.is_object()) throw Error(fmt::format("{}: must be a JSON object; {}", path.string(), remedy));
  return value;
}

int64_t tensor_bytes_of(const torch::Tensor& tensor) { return tensor.numel() * int64_t(tensor.element_size()); }

// The shards an index names, each with the tensors it should hold; a shard
// name must stay inside the checkpoint directory.
std::map<std::string, std::vector<std::string>> read_weight_map(const fs::path& index_path) {
  const std::string remedy = "re-export the checkpoint or download its index again";
  const auto index = parse_json_object(read_text_file(index_path), index_path, remedy);
  const auto weight_map = index.find("weight_map");
  if (weight_map == index.end() || !weight_map->is_object() || weight_map->empty())
    throw Error(fmt::format("{}: needs a non-empty `weight_map` object mapping each tensor name to its shard file; {}",
                            index_path.string(), remedy));
  std::map<std::string, std::vector<std::string>> shards;
  for (const auto& [name, shard] : weight_map->items()) {
    if (!shard.is_string())
      throw Error(fmt::format("{}: weight_map entry `{}` must be the name of a shard file; {}", index_path.string(),
                              name, remedy));
    const auto file = shard.get<std::string>();
    if (file.empty() || file == "." || file == ".." || fs::path(file).filename() != fs::path(file))
      throw Error(fmt::format("{}: weight_map puts `{}` in `{}`, which is not a file name inside the checkpoint "
                              "directory; {}",
                              index_path.string(), name, file, remedy));
    shards[file].push_back(name);
  }
  return shards;
}

void add_shard(HfCheckpoint& checkpoint, std::map<std::string, fs::path>& origins, const fs::path& shard) {
  auto contents = map_safetensors(shard);
  for (auto& entry : contents.entries) {
    const auto [origin, inserted] = origins.emplace(entry.name, shard);
    if (!inserted)
      throw Error(fmt::format("tensor `{}` is in both {} and {}: a checkpoint holds each tensor once; remove the "
                              "stale shard or re-export the checkpoint",
                              entry.name, origin->second.string(), shard.string()));
    checkpoint.tensor_bytes += tensor_bytes_of(entry.tensor);
    auto name = entry.name;
    checkpoint.tensors.emplace(std::move(name), std::move(entry));
  }
}

void read_sharded_weights(HfCheckpoint& checkpoint, const fs::path& index_path) {
  const auto shards = read_weight_map(index_path);
  std::map<std::string, fs::path> origins;
  for (const auto& [file, names] : shards) {
    const auto shard = checkpoint.directory / file;
    if (!fs::is_regular_file(shard))
      throw Error(fmt::format("{}: not found, but {} maps {} tensor{} (`{}`{}) to it; the checkpoint is incomplete: "
                              "copy or download the missing shard",
                              shard.string(), index_path.string(), names.size(), names.size() > 1 ? "s" : "",
                              names.front(), names.size() > 1 ? ", ..." : ""));
    add_shard(checkpoint, origins, shard);
  }
  for (const auto& [file, names] : shards) {
    for (const auto& name : names) {
      const auto origin = origins.find(name);
      if (origin == origins.end())
        throw Error(fmt::format("{}: weight_map puts `{}` in {}, but that file has no such tensor; the index and the "
                                "shards disagree: re-export the checkpoint or download it again",
                                index_path.string(), name, file));
      if (origin->second.filename() != fs::path(file))
        throw Error(fmt::format("{}: weight_map puts `{}` in {}, but it is in {}; the index and the shards disagree: "
                                "re-export the checkpoint or download it again",
                                index_path.string(), name, file, origin->second.string()));
    }
  }
}

}  // namespace

HfCheckpoint read_hf_checkpoint(const fs::path& directory) {
  if (!fs::is_directory(directory))
    throw Error(fmt::format("{}: {}; a Hugging Face checkpoint is a directory holding config.json and "
                            "model.safetensors (or shards with model.safetensors.index.json)",
                            directory.string(), fs::exists(directory) ? "not a directory" : "not found"));
  HfCheckpoint checkpoint;
  checkpoint.directory = directory;

  const auto config_path = directory / kConfigFile;
  if (!fs::is_regular_file(config_path))
    throw Error(fmt::format("{}: not found; a Hugging Face checkpoint needs config.json (the model's "
                            "configuration): copy it from the model's repository",
                            config_path.string()));
  checkpoint.config_json = read_text_file(config_path);
  parse_json_object(checkpoint.config_json, config_path, "copy config.json from the model's repository again");

  // The index, when present, says which shards make the model; a stale
  // model.safetensors next to it is then not read.
  const auto index_path = directory / kIndexFile;
  const auto single_path = directory / kSingleWeightsFile;
  if (fs::exists(index_path)) {
    read_sharded_weights(checkpoint, index_path);
  } else if (fs::exists(single_path)) {
    std::map<std::string, fs::path> origins;
    add_shard(checkpoint, origins, single_path);
  } else {
    throw Error(fmt::format("{}: no {} or {}; mcompress reads safetensors weights (convert pytorch_model.bin "
                            "checkpoints with transformers' save_pretrained(safe_serialization=True))",
                            directory.string(), kSingleWeightsFile, kIndexFile));
  }
  return checkpoint;
}

const std::vector<std::string>& hf_companion_files() {
  static const std::vector<std::string> files = {
      "tokenizer.json",      "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
      "tokenizer.model",     "chat_template.jinja",   "chat_template.json",      "vocab.json",
      "merges.txt",          "added_tokens.json"};
  return files;
}

void write_hf_checkpoint(const fs::path& directory, const std::string& config_json,
                         const std::vector<SafetensorsEntry>& tensors, const HfWriteOptions& options) {
  // Checked before anything is written.
  parse_json_object(config_json, directory / kConfigFile, "pass the model configuration as a JSON object");
  HfCheckpointWriter writer(directory, options);
  for (const auto& entry : tensors) writer.add(entry);
  writer.commit(config_json);
}

}  // namespace mcompress
