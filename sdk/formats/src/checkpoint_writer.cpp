#include "mcompress/formats/checkpoint_writer.h"

#include <unistd.h>

#include <fstream>
#include <set>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;

int64_t tensor_bytes_of(const torch::Tensor& tensor) { return tensor.numel() * int64_t(tensor.element_size()); }

// The checkpoint's final name, without a trailing separator, so that sibling
// names ("<dir>.tmp-<pid>") land next to it.
fs::path target_of(const fs::path& directory) {
  if (directory.empty()) throw Error("writing a checkpoint: no directory given");
  auto target = fs::absolute(directory).lexically_normal();
  if (!target.has_filename()) target = target.parent_path();
  return target;
}

std::string shard_file_name(size_t index, size_t count) {
  if (count == 1) return "model.safetensors";
  return fmt::format("model-{:05d}-of-{:05d}.safetensors", index + 1, count);
}

void write_text_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) throw Error(fmt::format("writing {} failed (disk full or not writable?)", path.string()));
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

struct HfCheckpointWriter::State {
  fs::path target;
  fs::path staging;
  HfWriteOptions options;
  std::set<std::string> names;
  std::vector<SafetensorsEntry> open_shard;  // added, not yet written
  int64_t open_shard_bytes = 0;
  std::vector<std::vector<std::string>> written_shards;  // tensor names of each shard file written
  int64_t total_bytes = 0;
  bool committed = false;

  fs::path shard_path(size_t index) const { return staging / fmt::format("shard-{}.tmp", index); }

  void write_open_shard() {
    const auto path = shard_path(written_shards.size());
    // Shards get their final names at commit; errors name the checkpoint and the shard's number.
    const auto shard = fmt::format("shard {} of {}", written_shards.size() + 1, target.string());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(fmt::format("cannot write {} ({})", shard, path.string()));
    try {
      write_safetensors(out, open_shard, options.file_metadata);
    } catch (const Error& e) {
      throw Error(fmt::format("{}: {}", shard, e.what()));
    }
    out.close();
    if (!out) throw Error(fmt::format("writing {} failed (disk full or file too large?)", shard));
    std::vector<std::string> shard_names;
    for (const auto& entry : open_shard) shard_names.push_back(entry.name);
    written_shards.push_back(std::move(shard_names));
    open_shard.clear();  // releases the tensors
    open_shard_bytes = 0;
  }
};

HfCheckpointWriter::HfCheckpointWriter(const fs::path& directory, HfWriteOptions options)
    : state_(std::make_unique<State>()) {
  auto& s = *state_;
  s.target = target_of(directory);
  s.options = std::move(options);
  if (s.options.max_shard_bytes <= 0)
    throw Error(fmt::format("writing {}: max_shard_bytes must be positive, not {}", s.target.string(),
                            s.options.max_shard_bytes));
  if (fs::exists(s.target) && !fs::is_directory(s.target))
    throw Error(fmt::format("{} exists and is not a directory; remove it or choose another checkpoint directory",
                            s.target.string()));
  s.staging = s.target.parent_path() / fmt::format("{}.tmp-{}", s.target.filename().string(), ::getpid());
  try {
    fs::create_directories(s.target.parent_path());
    fs::remove_all(s.staging);  // left by an earlier process with the same id that died mid-write
    fs::create_directory(s.staging);
  } catch (const fs::filesystem_error& e) {
    throw Error(fmt::format("cannot create {} to write the checkpoint in ({}); make {} writable or write the "
                            "checkpoint elsewhere",
                            s.staging.string(), e.code().message(), s.target.parent_path().string()));
  }
}

HfCheckpointWriter::~HfCheckpointWriter() {
  if (state_->committed) return;
  std::error_code ignored;
  fs::remove_all(state_->staging, ignored);
}

void HfCheckpointWriter::add(SafetensorsEntry entry) {
  auto& s = *state_;
  if (!entry.tensor.defined())
    throw Error(fmt::format("writing {}: tensor `{}` is undefined; every entry needs a tensor", s.target.string(),
                            entry.name));
  if (!s.names.insert(entry.name).second)
    throw Error(fmt::format("writing {}: tensor name `{}` appears twice", s.target.string(), entry.name));
  if (entry.dtype.empty()) (void)safetensors_dtype(entry.tensor.scalar_type());
  // A shard is closed when the next tensor would take it past the limit, so
  // only a tensor larger than the limit makes a larger shard (alone).
  const int64_t bytes = tensor_bytes_of(entry.tensor);
  if (!s.open_shard.empty() && s.open_shard_bytes + bytes > s.options.max_shard_bytes) s.write_open_shard();
  s.open_shard.push_back(std::move(entry));
  s.open_shard_bytes += bytes;
  s.total_bytes += bytes;
}

int64_t HfCheckpointWriter::tensor_bytes() const { return state_->total_bytes; }

void HfCheckpointWriter::commit(const std::string& config_json, const nlohmann::json& index_metadata,
                                int index_indent) {
  auto& s = *state_;
  if (s.committed) throw Error(fmt::format("writing {}: the checkpoint was committed already", s.target.string()));
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(config_json);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: the configuration is not valid JSON ({}); pass the model configuration as a JSON "
                            "object",
                            (s.target / "config.json").string(), e.what()));
  }
  if (!config.is_object())
    throw Error(fmt::format("{}: must be a JSON object; pass the model configuration as a JSON object",
                            (s.target / "config.json").string()));
  try {
    // A model without tensors still has a weights file.
    if (!s.open_shard.empty() || s.written_shards.empty()) s.write_open_shard();
    nlohmann::json weight_map = nlohmann::json::object();
    const size_t count = s.written_shards.size();
    for (size_t i = 0; i < count; ++i) {
      const auto file = shard_file_name(i, count);
      fs::rename(s.shard_path(i), s.staging / file);
      for (const auto& name : s.written_shards[i]) weight_map[name] = file;
    }
    nlohmann::json metadata = {{"total_size", s.total_bytes}};
    for (const auto& [key, value] : index_metadata.items()) metadata[key] = value;
    const nlohmann::json index = {{"metadata", metadata}, {"weight_map", weight_map}};  // keys sorted
    write_text_file(s.staging / "model.safetensors.index.json", index.dump(index_indent) + "\n");
    write_text_file(s.staging / "config.json", config_json);

    const auto& source = s.options.copy_files_from;
    if (!source.empty() && fs::is_directory(source)) {
      for (const auto& name : hf_companion_files()) {
        if (fs::is_regular_file(source / name)) fs::copy_file(source / name, s.staging / name);
      }
    }
    replace_directory(s.staging, s.target);
  } catch (const fs::filesystem_error& e) {
    throw Error(fmt::format("writing the checkpoint {} failed: {}", s.target.string(), e.what()));
  }
  s.committed = true;
}

}  // namespace mcompress
