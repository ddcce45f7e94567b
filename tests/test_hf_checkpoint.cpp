// formats/hf_checkpoint.h and map_safetensors: checkpoints written the way
// transformers writes them read back bit for bit, reading maps the files
// instead of copying them, damaged checkpoints are refused with errors naming
// the file, and a failed write never leaves a partial or lost checkpoint.
#include "mcompress/formats/hf_checkpoint.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "mcompress/formats/safetensors.h"
#include "mcompress/sdk/error.h"
#include "test_support.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;
using mcompress::testing::contains;

const std::string kConfig = R"({"model_type": "llama", "hidden_size": 8})";

bool same_bits(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const auto x = a.contiguous();
  const auto y = b.contiguous();
  return std::memcmp(x.data_ptr(), y.data_ptr(), size_t(x.numel()) * x.element_size()) == 0;
}

// Tensors of the dtypes language models ship, with values whose bits matter
// (NaN, infinities, negative zero).
std::vector<SafetensorsEntry> model_tensors() {
  torch::manual_seed(7);
  const auto special = torch::tensor({std::nanf(""), INFINITY, -INFINITY, -0.0f});
  return {
      {"model.embed_tokens.weight", torch::randn({16, 8}).to(torch::kBFloat16), ""},
      {"model.layers.0.input_layernorm.weight", torch::randn({8}).to(torch::kFloat16), ""},
      {"model.layers.0.self_attn.q_proj.weight", torch::randn({8, 8}), ""},
      {"model.layers.0.self_attn.q_proj.bias", special.to(torch::kBFloat16), ""},
      {"model.layers.0.mlp.down_proj.weight", torch::randn({8, 24}).to(torch::kBFloat16).t(), ""},  // not contiguous
      {"model.layers.0.mlp.packed", torch::tensor({-1, 7}, torch::kInt), "U32"},
      {"model.norm.weight", special, ""},
      {"lm_head.weight", torch::randn({16, 8}).to(torch::kFloat16), ""},
  };
}

void expect_same_tensors(const HfCheckpoint& checkpoint, const std::vector<SafetensorsEntry>& tensors) {
  ASSERT_EQ(checkpoint.tensors.size(), tensors.size());
  int64_t bytes = 0;
  for (const auto& entry : tensors) {
    const auto found = checkpoint.tensors.find(entry.name);
    ASSERT_NE(found, checkpoint.tensors.end()) << entry.name;
    EXPECT_TRUE(same_bits(found->second.tensor, entry.tensor)) << entry.name;
    EXPECT_EQ(found->second.dtype, entry.dtype.empty() ? safetensors_dtype(entry.tensor.scalar_type()) : entry.dtype);
    bytes += entry.tensor.numel() * int64_t(entry.tensor.element_size());
  }
  EXPECT_EQ(checkpoint.tensor_bytes, bytes);
}

nlohmann::json read_json(const fs::path& path) { return nlohmann::json::parse(testing::read_text(path)); }

// Names next to `directory` that a write in progress or an aborted one leaves.
std::vector<std::string> leftovers_beside(const fs::path& directory) {
  std::vector<std::string> names;
  const auto prefix = directory.filename().string() + ".";
  for (const auto& entry : fs::directory_iterator(directory.parent_path())) {
    const auto name = entry.path().filename().string();
    if (name.rfind(prefix, 0) == 0) names.push_back(name);
  }
  return names;
}

// A safetensors file of the given (unpadded) JSON header and data section.
void write_raw_safetensors(const fs::path& path, const std::string& json, const std::string& data) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((uint64_t(json.size()) >> (8 * i)) & 0xff);
  testing::write_text(path, bytes + json + data);
}

// What read_hf_checkpoint says about `directory`, or "(no error)".
std::string read_error(const fs::path& directory) {
  try {
    read_hf_checkpoint(directory);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// One line of /proc/self/status ("VmRSS", "RssAnon"), in bytes.
int64_t process_memory(const std::string& field) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1)) * 1024;
  }
  ADD_FAILURE() << field << " not in /proc/self/status";
  return 0;
}

// Whether `address` lies in a mapping of `file` (/proc/self/maps).
bool mapped_from(const void* address, const fs::path& file) {
  const auto wanted = fs::canonical(file).string();
  const auto where = reinterpret_cast<uintptr_t>(address);
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    std::istringstream fields(line);
    std::string range, perms, offset, device, inode, path;
    fields >> range >> perms >> offset >> device >> inode >> path;
    if (path != wanted) continue;
    const auto dash = range.find('-');
    const auto begin = std::stoull(range.substr(0, dash), nullptr, 16);
    const auto end = std::stoull(range.substr(dash + 1), nullptr, 16);
    if (where >= begin && where < end) return true;
  }
  return false;
}

bool any_mapping_of(const fs::path& file) {
  const auto wanted = fs::canonical(file).string();
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    if (line.size() >= wanted.size() && line.compare(line.size() - wanted.size(), wanted.size(), wanted) == 0)
      return true;
  }
  return false;
}

TEST(HfCheckpoint, OneFileCheckpointReadsBackBitForBit) {
  testing::TempDir tmp("hf-checkpoint");
  const auto dir = tmp.path() / "model";
  const auto tensors = model_tensors();
  write_hf_checkpoint(dir, kConfig, tensors);

  EXPECT_EQ(testing::read_text(dir / "config.json"), kConfig);
  ASSERT_TRUE(fs::is_regular_file(dir / "model.safetensors"));
  const auto index = read_json(dir / "model.safetensors.index.json");
  EXPECT_EQ(index["weight_map"].size(), tensors.size());
  for (const auto& [name, file] : index["weight_map"].items()) EXPECT_EQ(file, "model.safetensors") << name;
  EXPECT_EQ(read_safetensors(dir / "model.safetensors").metadata.at("format"), "pt");
  EXPECT_TRUE(leftovers_beside(dir).empty());

  const auto checkpoint = read_hf_checkpoint(dir);
  EXPECT_EQ(checkpoint.config_json, kConfig);
  EXPECT_EQ(checkpoint.directory, dir);
  expect_same_tensors(checkpoint, tensors);
  EXPECT_EQ(index["metadata"]["total_size"], checkpoint.tensor_bytes);
}

TEST(HfCheckpoint, ShardsAreNamedAndSizedAsTransformersWritesThem) {
  testing::TempDir tmp("hf-checkpoint");
  const auto dir = tmp.path() / "model";
  auto tensors = model_tensors();
  tensors.push_back({"model.huge", torch::randn({1000}), ""});  // 4000 bytes: over the limit, alone in its shard
  tensors.push_back({"model.after_huge", torch::randn({4}).to(torch::kFloat16), ""});
  HfWriteOptions options;
  options.max_shard_bytes = 512;
  options.file_metadata = {{"format", "pt"}, {"producer", "mcompress"}};
  write_hf_checkpoint(dir, kConfig, tensors, options);

  const auto index = read_json(dir / "model.safetensors.index.json");
  std::set<std::string> files;
  for (const auto& [name, file] : index["weight_map"].items()) files.insert(file.get<std::string>());
  ASSERT_GE(files.size(), 3u);
  const auto count = files.size();
  int64_t total = 0;
  size_t number = 1;
  std::string previous_last;
  for (const auto& file : files) {
    EXPECT_EQ(file, fmt::format("model-{:05d}-of-{:05d}.safetensors", number++, count));
    const auto shard = read_safetensors(dir / file);
    EXPECT_EQ(shard.metadata, options.file_metadata);
    int64_t bytes = 0;
    for (const auto& entry : shard.entries) {
      EXPECT_EQ(index.at("weight_map").at(entry.name), file);
      bytes += entry.tensor.numel() * int64_t(entry.tensor.element_size());
    }
    EXPECT_TRUE(bytes <= options.max_shard_bytes || shard.entries.size() == 1) << file << ": " << bytes;
    total += bytes;
  }
  EXPECT_EQ(index["metadata"]["total_size"], total);
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
  // Shards follow the tensors' order: the huge tensor is alone, its neighbours in the shards around it.
  const auto& weight_map = index.at("weight_map");
  EXPECT_EQ(read_safetensors(dir / weight_map.at("model.huge").get<std::string>()).entries.size(), 1u);
  EXPECT_EQ(weight_map.at("model.embed_tokens.weight"), *files.begin());
  EXPECT_EQ(weight_map.at("model.after_huge"), *files.rbegin());

  expect_same_tensors(read_hf_checkpoint(dir), tensors);
}

TEST(HfCheckpoint, MappedTensorsAreViewsOfTheFileThatWritesNeverReach) {
  testing::TempDir tmp("hf-checkpoint");
  const auto path = tmp.path() / "weights.safetensors";
  const auto weight = torch::arange(1024, torch::kFloat);
  write_safetensors(path, {{"w", weight, ""}, {"b", torch::ones({3}, torch::kBFloat16), ""}});
  const auto on_disk = testing::read_text(path);

  torch::Tensor kept;
  {
    auto contents = map_safetensors(path);
    ASSERT_EQ(contents.entries.size(), 2u);
    EXPECT_EQ(contents.entries[0].name, "w");
    kept = contents.entries[0].tensor;
    EXPECT_TRUE(kept.equal(weight));
    EXPECT_TRUE(mapped_from(kept.data_ptr(), path));
    EXPECT_TRUE(mapped_from(contents.entries[1].tensor.data_ptr(), path));

    kept.fill_(42.0f);  // copy-on-write: this process's page changes, the file does not
    EXPECT_EQ(kept[0].item<float>(), 42.0f);
    EXPECT_EQ(testing::read_text(path), on_disk);
    EXPECT_TRUE(map_safetensors(path).entries[0].tensor.equal(weight));
  }
  // The mapping outlives the contents while one of its tensors lives, and goes with the last.
  EXPECT_TRUE(any_mapping_of(path));
  EXPECT_EQ(kept[1023].item<float>(), 42.0f);
  kept = torch::Tensor();
  EXPECT_FALSE(any_mapping_of(path));
}

TEST(HfCheckpoint, DataNotAlignedToItsElementsIsCopiedAndStillRight) {
  testing::TempDir tmp("hf-checkpoint");
  const auto path = tmp.path() / "unaligned.safetensors";
  // A header padded so that the data starts at an odd offset.
  std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  while ((8 + header.size()) % 4 != 1) header += ' ';
  const float values[2] = {1.5f, -3.25f};
  write_raw_safetensors(path, header, std::string(reinterpret_cast<const char*>(values), sizeof(values)));

  const auto contents = map_safetensors(path);
  const auto& tensor = contents.entries.at(0).tensor;
  EXPECT_EQ(reinterpret_cast<uintptr_t>(tensor.data_ptr()) % sizeof(float), 0u);
  EXPECT_EQ(tensor[0].item<float>(), 1.5f);
  EXPECT_EQ(tensor[1].item<float>(), -3.25f);
  EXPECT_FALSE(mapped_from(tensor.data_ptr(), path));
}

TEST(HfCheckpoint, ReadingALargeCheckpointCostsItsSizeOnceAndCopiesNothing) {
  testing::TempDir tmp("hf-checkpoint");
  const auto dir = tmp.path() / "large";
  fs::create_directory(dir);
  testing::write_text(dir / "config.json", kConfig);
  // 200 MB of bytes written in chunks, so the test itself never holds them.
  constexpr int64_t kBytes = 200'000'000;
  {
    std::string header = fmt::format(R"({{"w":{{"dtype":"U8","shape":[{0}],"data_offsets":[0,{0}]}}}})", kBytes);
    header.append((8 - header.size() % 8) % 8, ' ');
    std::ofstream out(dir / "model.safetensors", std::ios::binary);
    std::string length(8, '\0');
    for (int i = 0; i < 8; ++i) length[size_t(i)] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
    out << length << header;
    std::string chunk(1 << 20, '\0');
    for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = char(i % 251);
    for (int64_t written = 0; written < kBytes; written += int64_t(chunk.size()))
      out.write(chunk.data(), std::streamsize(std::min<int64_t>(int64_t(chunk.size()), kBytes - written)));
    ASSERT_TRUE(out.good());
  }

  const int64_t rss_before = process_memory("VmRSS");
  const int64_t anonymous_before = process_memory("RssAnon");
  const auto checkpoint = read_hf_checkpoint(dir);
  const auto& tensor = checkpoint.tensors.at("w").tensor;
  EXPECT_LT(process_memory("VmRSS") - rss_before, kBytes / 10) << "pages were read before being touched";

  // Touch every page: the file's pages are mapped in, nothing is copied.
  const auto* bytes = static_cast<const unsigned char*>(tensor.data_ptr());
  uint64_t checksum = 0;
  for (int64_t i = 0; i < kBytes; i += 4096) checksum += bytes[i];
  EXPECT_GT(checksum, 0u);
  EXPECT_EQ(bytes[kBytes - 1], (kBytes - 1) % (1 << 20) % 251);
  EXPECT_LT(process_memory("RssAnon") - anonymous_before, kBytes / 10) << "tensor bytes were copied";
  EXPECT_LT(process_memory("VmRSS") - rss_before, kBytes * 11 / 10);
  EXPECT_TRUE(mapped_from(bytes, dir / "model.safetensors"));
}

// A checkpoint of three one-tensor shards (a, b, c) to damage.
fs::path sharded_checkpoint(const fs::path& parent) {
  const auto dir = parent / "sharded";
  HfWriteOptions options;
  options.max_shard_bytes = 32;
  write_hf_checkpoint(dir, kConfig,
                      {{"a", torch::ones({8}), ""}, {"b", torch::ones({8}), ""}, {"c", torch::ones({8}), ""}},
                      options);
  return dir;
}

TEST(HfCheckpoint, DamagedCheckpointsAreRefusedNamingTheFile) {
  testing::TempDir tmp("hf-checkpoint");
  const auto valid_shard = [](const fs::path& path) {
    write_safetensors(path, {{"w", torch::ones({4}), ""}});
  };

  {  // no config.json
    const auto dir = tmp.path() / "no-config";
    fs::create_directory(dir);
    valid_shard(dir / "model.safetensors");
    const auto error = read_error(dir);
    EXPECT_TRUE(contains(error, (dir / "config.json").string()) && contains(error, "not found")) << error;
  }
  {  // config.json not an object
    const auto dir = tmp.path() / "config-array";
    fs::create_directory(dir);
    testing::write_text(dir / "config.json", "[1, 2]");
    valid_shard(dir / "model.safetensors");
    const auto error = read_error(dir);
    EXPECT_TRUE(contains(error, (dir / "config.json").string()) && contains(error, "JSON object")) << error;
  }
  {  // no weights
    const auto dir = tmp.path() / "no-weights";
    fs::create_directory(dir);
    testing::write_text(dir / "config.json", kConfig);
    const auto error = read_error(dir);
    EXPECT_TRUE(contains(error, dir.string()) && contains(error, "model.safetensors")) << error;
  }
  {  // a truncated shard: shorter than its header says
    const auto dir = sharded_checkpoint(tmp.path() / "truncated");
    const auto shard = dir / "model-00002-of-00003.safetensors";
    fs::resize_file(shard, fs::file_size(shard) - 5);
    const auto error = read_error(dir);
    EXPECT_TRUE(contains(error, shard.string()) && contains(error, "truncated")) << error;
  }
  {  // header offsets that overlap, and offsets past the end of the file
    const auto dir = tmp.path() / "overlap";
    fs::create_directory(dir);
    testing::write_text(dir / "config.json", kConfig);
    write_raw_safetensors(dir / "model.safetensors",
                          R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                          R"("b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})",
                          "abc");
    auto error = read_error(dir);
    EXPECT_TRUE(contains(error, (dir / "model.safetensors").string()) && contains(error, "overlapping")) << error;
    write_raw_safetensors(dir / "model.safetensors", R"({"a":{"dtype":"U8","shape":[100],"data_offsets":[0,100]}})",
                          "abc");
    error = read_error(dir);
    EXPECT_TRUE(contains(error, (dir / "model.safetensors").string()) && contains(error, "claims bytes [0, 100)"))
        << error;
    write_raw_safetensors(dir / "model.safetensors", std::string(200, ' '), "");
    fs::resize_file(dir / "model.safetensors", 100);
    error = read_error(dir);
    EXPECT_TRUE(contains(error, (dir / "model.safetensors").string()) && contains(error, "header length")) << error;
  }
  {  // an index naming a missing shard
    const auto dir = sharded_checkpoint(tmp.path() / "missing");
    fs::remove(dir / "model-00003-of-00003.safetensors");
    const auto error = read_error(dir);
    EXPECT_TRUE(contains(error, (dir / "model-00003-of-00003.safetensors").string()) && contains(error, "not found") &&
                contains(error, "`c`"))
        << error;
  }
  {  // an index mapping a tensor its shard lacks
    const auto dir = sharded_checkpoint(tmp.path() / "lacking");
    auto index = read_json(dir / "model.safetensors.index.json");
    index["weight_map"]["d"] = "model-00001-of-00003.safetensors";
    testing::write_text(dir / "model.safetensors.index.json", index.dump());
    const auto error = read_error(dir);
    EXPECT_TRUE(contains(error, (dir / "model.safetensors.index.json").string()) && contains(error, "`d`") &&
                contains(error, "no such tensor"))
        << error;
  }
  {  // a tensor in two shards
    const auto dir = sharded_checkpoint(tmp.path() / "twice");
    fs::copy_file(dir / "model-00001-of-00003.safetensors", dir / "model-00002-of-00003.safetensors",
                  fs::copy_options::overwrite_existing);
    const auto error = read_error(dir);
    EXPECT_TRUE(contains(error, "`a`") && contains(error, (dir / "model-00001-of-00003.safetensors").string()) &&
                contains(error, (dir / "model-00002-of-00003.safetensors").string()))
        << error;
  }
  {  // an unknown dtype
    const auto dir = tmp.path() / "dtype";
    fs::create_directory(dir);
    testing::write_text(dir / "config.json", kConfig);
    write_raw_safetensors(dir / "model.safetensors", R"({"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})",
                          "x");
    const auto error = read_error(dir);
    EXPECT_TRUE(contains(error, (dir / "model.safetensors").string()) && contains(error, "F8_E4M3") &&
                contains(error, "unknown or unsupported dtype"))
        << error;
  }
  {  // malformed index JSON, an index without a weight_map, a shard outside the directory
    const auto dir = sharded_checkpoint(tmp.path() / "index");
    const auto index_path = dir / "model.safetensors.index.json";
    testing::write_text(index_path, R"({"weight_map": {"a": )");
    auto error = read_error(dir);
    EXPECT_TRUE(contains(error, index_path.string()) && contains(error, "not valid JSON")) << error;
    testing::write_text(index_path, R"({"metadata": {}})");
    error = read_error(dir);
    EXPECT_TRUE(contains(error, index_path.string()) && contains(error, "weight_map")) << error;
    testing::write_text(index_path, R"({"weight_map": {"a": "../model-00001-of-00003.safetensors"}})");
    error = read_error(dir);
    EXPECT_TRUE(contains(error, index_path.string()) && contains(error, "not a file name inside")) << error;
  }
  EXPECT_TRUE(contains(read_error(tmp.path() / "absent"), (tmp.path() / "absent").string()));
}

TEST(HfCheckpoint, CompanionFilesComeAlongAndNothingElse) {
  testing::TempDir tmp("hf-checkpoint");
  const auto source = tmp.path() / "source";
  fs::create_directory(source);
  testing::write_text(source / "tokenizer.json", R"({"model": {"type": "BPE"}})");
  testing::write_text(source / "tokenizer_config.json", R"({"bos_token": "<s>"})");
  testing::write_text(source / "chat_template.jinja", "{{ messages }}");
  testing::write_text(source / "tokenizer.model", std::string("\x00\x01binary", 8));
  testing::write_text(source / "notes.txt", "not part of a checkpoint");
  HfWriteOptions options;
  options.copy_files_from = source;
  const auto dir = tmp.path() / "model";
  write_hf_checkpoint(dir, kConfig, model_tensors(), options);

  for (const auto* name : {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "tokenizer.model"})
    EXPECT_EQ(testing::read_text(dir / name), testing::read_text(source / name)) << name;
  EXPECT_FALSE(fs::exists(dir / "notes.txt"));
  EXPECT_FALSE(fs::exists(dir / "generation_config.json"));
  const auto& companions = hf_companion_files();
  for (const auto* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                           "generation_config.json", "tokenizer.model", "chat_template.jinja", "chat_template.json",
                           "vocab.json", "merges.txt", "added_tokens.json"})
    EXPECT_NE(std::find(companions.begin(), companions.end(), name), companions.end()) << name;
}

TEST(HfCheckpoint, ACheckpointCanBeRewrittenInPlaceFromItsOwnMappedTensors) {
  testing::TempDir tmp("hf-checkpoint");
  const auto dir = tmp.path() / "model";
  testing::write_text(tmp.path() / "tokenizer.json", "{}");
  HfWriteOptions options;
  options.copy_files_from = tmp.path();
  write_hf_checkpoint(dir, kConfig, model_tensors(), options);

  const auto checkpoint = read_hf_checkpoint(dir);
  std::vector<SafetensorsEntry> halved;
  for (const auto& [name, entry] : checkpoint.tensors) {
    if (name != "model.norm.weight") halved.push_back(entry);
  }
  options.copy_files_from = dir;
  options.max_shard_bytes = 256;
  write_hf_checkpoint(dir, R"({"model_type": "llama", "hidden_size": 4})", halved, options);

  const auto rewritten = read_hf_checkpoint(dir);
  expect_same_tensors(rewritten, halved);  // the old files' mapped pages outlived their replacement
  EXPECT_EQ(rewritten.config_json, R"({"model_type": "llama", "hidden_size": 4})");
  EXPECT_TRUE(fs::exists(dir / "tokenizer.json"));
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
  EXPECT_TRUE(leftovers_beside(dir).empty());
}

// The directory's files and their contents.
std::map<std::string, std::string> snapshot(const fs::path& directory) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::directory_iterator(directory))
    files[entry.path().filename().string()] = testing::read_text(entry.path());
  return files;
}

TEST(HfCheckpoint, AFailedWriteLeavesTheOldCheckpointAndNoTemporaryDirectory) {
  testing::TempDir tmp("hf-checkpoint");
  const auto dir = tmp.path() / "model";
  write_hf_checkpoint(dir, kConfig, model_tensors());
  const auto before = snapshot(dir);

  auto tensors = model_tensors();
  tensors.push_back({"model.broken", torch::Tensor(), ""});
  try {
    write_hf_checkpoint(dir, kConfig, tensors);
    ADD_FAILURE() << "an undefined tensor was written";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "model.broken") && contains(e.what(), dir.string())) << e.what();
  }
  EXPECT_EQ(snapshot(dir), before);
  EXPECT_TRUE(leftovers_beside(dir).empty());

  EXPECT_THROW(write_hf_checkpoint(dir, "not json", model_tensors()), Error);
  EXPECT_THROW(write_hf_checkpoint(dir, kConfig, {{"a", torch::ones({1}), ""}, {"a", torch::ones({1}), ""}}), Error);
  HfWriteOptions no_room;
  no_room.max_shard_bytes = 0;
  EXPECT_THROW(write_hf_checkpoint(dir, kConfig, model_tensors(), no_room), Error);
  EXPECT_EQ(snapshot(dir), before);
  EXPECT_TRUE(leftovers_beside(dir).empty());

  // The parent cannot hold directories (it is a file).
  testing::write_text(tmp.path() / "file", "");
  try {
    write_hf_checkpoint(tmp.path() / "file" / "model", kConfig, model_tensors());
    ADD_FAILURE() << "a checkpoint was written under a file";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), (tmp.path() / "file").string())) << e.what();
  }
}

TEST(HfCheckpoint, AWriteThatFailsMidwayThroughTheShardsLeavesTheOldCheckpoint) {
  testing::TempDir tmp("hf-checkpoint");
  const auto dir = tmp.path() / "model";
  write_hf_checkpoint(dir, kConfig, model_tensors());
  const auto before = snapshot(dir);

  // A file-size limit the first shards fit in and the third does not: the
  // write fails after shards are on disk, as a full disk would.
  std::vector<SafetensorsEntry> tensors = {{"a", torch::ones({256}), ""},
                                           {"b", torch::ones({256}), ""},
                                           {"c", torch::ones({16384}), ""}};
  HfWriteOptions options;
  options.max_shard_bytes = 1500;  // one tensor a shard
  rlimit original{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &original), 0);
  const auto previous_handler = signal(SIGXFSZ, SIG_IGN);
  rlimit limited = original;
  limited.rlim_cur = 16384;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &limited), 0);
  std::string error;
  try {
    write_hf_checkpoint(dir, kConfig, tensors, options);
  } catch (const Error& e) {
    error = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &original);
  signal(SIGXFSZ, previous_handler);

  EXPECT_TRUE(contains(error, "writing shard 3 of " + fs::absolute(dir).lexically_normal().string() + " failed")) << error;
  EXPECT_EQ(snapshot(dir), before);
  EXPECT_TRUE(leftovers_beside(dir).empty());
  expect_same_tensors(read_hf_checkpoint(dir), model_tensors());
}

TEST(HfCheckpoint, AnUnwritableParentIsReportedAndTheOldCheckpointKept) {
  if (geteuid() == 0) GTEST_SKIP() << "root writes anywhere";
  testing::TempDir tmp("hf-checkpoint");
  const auto parent = tmp.path() / "locked";
  const auto dir = parent / "model";
  write_hf_checkpoint(dir, kConfig, model_tensors());
  const auto before = snapshot(dir);
  fs::permissions(parent, fs::perms::owner_read | fs::perms::owner_exec);
  std::string error;
  try {
    write_hf_checkpoint(dir, kConfig, model_tensors());
  } catch (const Error& e) {
    error = e.what();
  }
  fs::permissions(parent, fs::perms::owner_all);
  EXPECT_TRUE(contains(error, parent.string()) && contains(error, "writable")) << error;
  EXPECT_EQ(snapshot(dir), before);
  EXPECT_TRUE(leftovers_beside(dir).empty());
}

}  // namespace
}  // namespace mcompress
