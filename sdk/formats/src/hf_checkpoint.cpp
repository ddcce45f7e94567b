#include "mcompress/formats/hf_checkpoint.h"

#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>
#include <system_error>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

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

// The checkpoint's final name, without a trailing separator, so that sibling
// names ("<dir>.tmp-<pid>") land next to it.
fs::path target_of(const fs::path& directory) {
  if (directory.empty()) throw Error("write_hf_checkpoint: no directory given");
  auto target = fs::absolute(directory).lexically_normal();
  if (!target.has_filename()) target = target.parent_path();
  return target;
}

// Tensors grouped into shards in their order: a shard is closed when the next
// tensor would take it past the limit, so only a tensor larger than the limit
// makes a larger shard (alone).
std::vector<std::vector<SafetensorsEntry>> plan_shards(const std::vector<SafetensorsEntry>& tensors,
                                                       int64_t max_shard_bytes) {
  std::vector<std::vector<SafetensorsEntry>> shards;
  int64_t shard_bytes = 0;
  for (const auto& entry : tensors) {
    const int64_t bytes = tensor_bytes_of(entry.tensor);
    if (shards.empty() || (!shards.back().empty() && shard_bytes + bytes > max_shard_bytes)) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(entry);
    shard_bytes += bytes;
  }
  if (shards.empty()) shards.emplace_back();  // a model without tensors still has a weights file
  return shards;
}

std::string shard_file_name(size_t index, size_t count) {
  if (count == 1) return kSingleWeightsFile;
  return fmt::format("model-{:05d}-of-{:05d}.safetensors", index + 1, count);
}

void write_text_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) throw Error(fmt::format("writing {} failed (disk full or not writable?)", path.string()));
}

// Fails before anything is written for what no shard could hold.
void check_writable(const fs::path& target, const std::string& config_json,
                    const std::vector<SafetensorsEntry>& tensors, const HfWriteOptions& options) {
  parse_json_object(config_json, target / kConfigFile, "pass the model configuration as a JSON object");
  if (options.max_shard_bytes <= 0)
    throw Error(fmt::format("writing {}: max_shard_bytes must be positive, not {}", target.string(),
                            options.max_shard_bytes));
  std::set<std::string> names;
  for (const auto& entry : tensors) {
    if (!entry.tensor.defined())
      throw Error(fmt::format("writing {}: tensor `{}` is undefined; every entry needs a tensor", target.string(),
                              entry.name));
    if (!names.insert(entry.name).second)
      throw Error(fmt::format("writing {}: tensor name `{}` appears twice", target.string(), entry.name));
    if (entry.dtype.empty()) (void)safetensors_dtype(entry.tensor.scalar_type());
  }
  if (fs::exists(target) && !fs::is_directory(target))
    throw Error(fmt::format("{} exists and is not a directory; remove it or choose another checkpoint directory",
                            target.string()));
}

// Everything of the checkpoint into `staging`, an empty directory.
void write_checkpoint_files(const fs::path& staging, const std::string& config_json,
                            const std::vector<SafetensorsEntry>& tensors, const HfWriteOptions& options) {
  write_text_file(staging / kConfigFile, config_json);

  const auto shards = plan_shards(tensors, options.max_shard_bytes);
  nlohmann::json weight_map = nlohmann::json::object();
  int64_t total_size = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    const auto file = shard_file_name(i, shards.size());
    const auto path = staging / file;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(fmt::format("cannot write {}", path.string()));
    try {
      write_safetensors(out, shards[i], options.file_metadata);
    } catch (const Error& e) {
      throw Error(fmt::format("{}: {}", path.string(), e.what()));
    }
    out.close();
    if (!out) throw Error(fmt::format("writing {} failed (disk full or file too large?)", path.string()));
    for (const auto& entry : shards[i]) {
      weight_map[entry.name] = file;
      total_size += tensor_bytes_of(entry.tensor);
    }
  }
  // As transformers writes it: sorted keys, two-space indent.
  const nlohmann::json index = {{"metadata", {{"total_size", total_size}}}, {"weight_map", weight_map}};
  write_text_file(staging / kIndexFile, index.dump(2) + "\n");

  const auto& source = options.copy_files_from;
  if (source.empty() || !fs::is_directory(source)) return;
  for (const auto& name : hf_companion_files()) {
    if (fs::is_regular_file(source / name)) fs::copy_file(source / name, staging / name);
  }
}

// Puts `staging` in place of `target`. The old checkpoint is only moved aside
// until the new one has its name, and moved back if that fails.
void replace_directory(const fs::path& staging, const fs::path& target) {
  if (!fs::exists(target)) {
    fs::rename(staging, target);
    return;
  }
  const auto aside = target.parent_path() / fmt::format("{}.old-{}", target.filename().string(), ::getpid());
  fs::remove_all(aside);
  fs::rename(target, aside);
  try {
    fs::rename(staging, target);
  } catch (...) {
    std::error_code ignored;
    fs::rename(aside, target, ignored);
    throw;
  }
  std::error_code ignored;  // the new checkpoint is in place; a leftover old copy is only litter
  fs::remove_all(aside, ignored);
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
  const auto target = target_of(directory);
  check_writable(target, config_json, tensors, options);

  const auto staging = target.parent_path() / fmt::format("{}.tmp-{}", target.filename().string(), ::getpid());
  try {
    fs::create_directories(target.parent_path());
    fs::remove_all(staging);  // left by an earlier process with the same id that died mid-write
    fs::create_directory(staging);
  } catch (const fs::filesystem_error& e) {
    throw Error(fmt::format("cannot create {} to write the checkpoint in ({}); make {} writable or write the "
                            "checkpoint elsewhere",
                            staging.string(), e.code().message(), target.parent_path().string()));
  }
  const auto remove_staging = [&staging] {
    std::error_code ignored;
    fs::remove_all(staging, ignored);
  };
  try {
    write_checkpoint_files(staging, config_json, tensors, options);
    replace_directory(staging, target);
  } catch (const fs::filesystem_error& e) {
    remove_staging();
    throw Error(fmt::format("writing the checkpoint {} failed: {}", target.string(), e.what()));
  } catch (...) {
    remove_staging();
    throw;
  }
}

}  // namespace mcompress
