// Checkpoints converted to mlx-lm's layout (mlx_lm_checkpoint.h, `mcompress
// quantize`), checked byte for byte by an independent reimplementation of
// mlx-lm's converter in tests/python/mlx_lm_reference.py, on the seeded
// checkpoints of every family tests/python/hf_reference.py makes.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "mcompress/formats/mlx_lm_checkpoint.h"
#include "mcompress/models/kv_decoding.h"
#include "mcompress/sdk/error.h"
#include "test_support.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;
using testing::read_text;
using testing::run_command;
using testing::TempDir;

const fs::path kPython = fs::path(MCOMPRESS_SOURCE_DIR) / "tests" / "python";

class MlxLmCheckpoint : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new TempDir("mlx_lm_checkpoint");
    const auto result = run_command(fmt::format("{} '{}' make '{}'", MCOMPRESS_PYTHON,
                                                (kPython / "hf_reference.py").string(), source("").string()));
    ASSERT_EQ(result.exit_code, 0) << result.output;
  }
  static void TearDownTestSuite() {
    delete tmp_;
    tmp_ = nullptr;
  }
  static fs::path source(const std::string& family) { return tmp_->path() / "checkpoints" / family; }
  static fs::path out(const std::string& name) { return tmp_->path() / "out" / name; }

  // The independent check's verdict: "OK", or every difference it found.
  static std::string reference_check(const fs::path& from, const fs::path& mlx, int bits, int group_size,
                                     const std::string& extra = "") {
    const auto result =
        run_command(fmt::format("{} '{}' check '{}' '{}' {} {} {}", MCOMPRESS_PYTHON,
                                (kPython / "mlx_lm_reference.py").string(), from.string(), mlx.string(), bits,
                                group_size, extra));
    return result.output;
  }

  static TempDir* tmp_;
};
TempDir* MlxLmCheckpoint::tmp_ = nullptr;

MlxLmOptions options(int bits, int group_size) {
  MlxLmOptions o;
  o.bits = bits;
  o.group_size = group_size;
  return o;
}

// Every family at 4 bits: llama (llama3 rope), llama tied in bfloat16 (no
// lm_head, bfloat16 scales), mistral from three shards, qwen2 (biases stay
// floating), qwen3 (q/k norms), mixtral (experts stacked into switch_mlp;
// down_proj's input of 40 is not a multiple of 32 and stays floating).
TEST_F(MlxLmCheckpoint, EveryFamilyMatchesMlxLmByteForByte) {
  for (const std::string family : {"llama3", "llama_tied_bf16", "mistral", "qwen2", "qwen3", "mixtral"}) {
    const auto summary = convert_to_mlx_lm(source(family), out(family), options(4, 32));
    EXPECT_EQ(reference_check(source(family), out(family), 4, 32), "OK\n") << family;
    EXPECT_GT(summary.parameters, 0) << family;
    EXPECT_GT(summary.bits_per_weight, 4.0) << family;
    int quantized = 0;
    for (const auto& layer : summary.layers) quantized += layer.quantized;
    EXPECT_GT(quantized, 0) << family;
  }
}

TEST_F(MlxLmCheckpoint, EveryBitWidthAndGroupSize) {
  for (int bits : {2, 3, 5, 6, 8}) {
    const auto dir = out(fmt::format("llama3-{}", bits));
    convert_to_mlx_lm(source("llama3"), dir, options(bits, 64));
    EXPECT_EQ(reference_check(source("llama3"), dir, bits, 64), "OK\n") << bits << " bits";
  }
  // Group 128 fits none of llama3's inputs (64, 48): nothing is quantized, as in mlx-lm.
  const auto none = convert_to_mlx_lm(source("llama3"), out("llama3-g128"), options(4, 128));
  for (const auto& layer : none.layers) EXPECT_FALSE(layer.quantized) << layer.path;
  EXPECT_EQ(reference_check(source("llama3"), out("llama3-g128"), 4, 128), "OK\n");
}

// Per-layer settings become per-layer entries of config.json; layers kept in
// floating point have no scales.
TEST_F(MlxLmCheckpoint, PerLayerSettingsAndFloatingLayers) {
  auto o = options(4, 32);
  o.layer_settings = {{"model.layers.1.*", {8, 32}}, {"model.layers.*.self_attn.o_proj", {3, 64}}};
  o.keep_float = {"lm_head"};
  const auto summary = convert_to_mlx_lm(source("llama3"), out("mixed"), o);
  EXPECT_EQ(reference_check(source("llama3"), out("mixed"), 4, 32,
                            "'model.layers.1.*=8,32' 'model.layers.*.self_attn.o_proj=3,64' keep:lm_head"),
            "OK\n");
  EXPECT_EQ(summary.quantization["model.layers.1.mlp.up_proj"], (nlohmann::json{{"group_size", 32}, {"bits", 8}}));
  EXPECT_EQ(summary.quantization["model.layers.0.self_attn.o_proj"],
            (nlohmann::json{{"group_size", 64}, {"bits", 3}}));
  EXPECT_FALSE(summary.quantization.contains("model.layers.0.mlp.up_proj"));
}

TEST_F(MlxLmCheckpoint, ShardsOfAtMostTheLimit) {
  auto o = options(4, 32);
  o.max_shard_bytes = 12000;
  convert_to_mlx_lm(source("mistral"), out("sharded"), o);
  const auto index = nlohmann::json::parse(read_text(out("sharded") / "model.safetensors.index.json"));
  std::set<std::string> files;
  for (const auto& [name, file] : index["weight_map"].items()) files.insert(file.get<std::string>());
  EXPECT_GT(files.size(), 2u);
  for (const auto& file : files) EXPECT_LE(fs::file_size(out("sharded") / file), 12000u + 4096u) << file;
  EXPECT_FALSE(fs::exists(out("sharded") / "model.safetensors"));
  EXPECT_EQ(reference_check(source("mistral"), out("sharded"), 4, 32), "OK\n");
}

// An mlx-lm directory converted again (the source documents' `quantize
// --model-path ...-4bit --bits 8`): its layers are dequantized, then
// quantized to the new settings.
TEST_F(MlxLmCheckpoint, AnMlxLmSourceIsDequantizedFirst) {
  convert_to_mlx_lm(source("llama_tied_bf16"), out("bf16-4bit"), options(4, 32));
  convert_to_mlx_lm(out("bf16-4bit"), out("bf16-8bit"), options(8, 64));
  EXPECT_EQ(reference_check(out("bf16-4bit"), out("bf16-8bit"), 8, 64), "OK\n");
  convert_to_mlx_lm(source("mixtral"), out("mixtral-4bit"), options(4, 32));
  convert_to_mlx_lm(out("mixtral-4bit"), out("mixtral-3bit"), options(3, 32));
  EXPECT_EQ(reference_check(out("mixtral-4bit"), out("mixtral-3bit"), 3, 32), "OK\n");
}

// Read back for decoding, the layers stay quantized (Mixtral's stacked
// experts split again) and decode as the values they stand for.
TEST_F(MlxLmCheckpoint, ReadBackForDecodingKeepsTheCodes) {
  for (const std::string family : {"llama_tied_bf16", "qwen2", "mixtral"}) {
    const auto dir = out(family + "-read");
    convert_to_mlx_lm(source(family), dir, options(4, 32));
    const MlxLmWeights read = read_mlx_lm_checkpoint(dir);
    ASSERT_TRUE(read.quantized.count("model.embed_tokens")) << family;
    EXPECT_FALSE(read.floating.count("model.embed_tokens.weight")) << family;
    const std::string up = family == "mixtral" ? "model.layers.0.block_sparse_moe.experts.1.w3"
                                               : "model.layers.0.mlp.up_proj";
    ASSERT_TRUE(read.quantized.count(up)) << family;
    EXPECT_EQ(read.quantized.at(up).bits, 4);
    EXPECT_EQ(read.quantized.at(up).packed.dim(), 2);
    if (family == "mixtral") {
      EXPECT_TRUE(read.floating.count("model.layers.0.block_sparse_moe.experts.1.w2.weight"));
    }

    // The same model with every quantized layer dequantized, run by the floating path.
    auto dequantized = read.floating;
    for (const auto& [path, q] : read.quantized)
      dequantized[path + ".weight"] =
          runtime::dequantize_weight(q.packed, q.scales, q.biases, q.bits, q.group_size).to(q.scales.scalar_type());
    KvDecoder quantized(read.config, read.floating, read.quantized), floating(read.config, dequantized);
    quantized.set_int8_activations(false);  // the exact kernels, to compare with the floating path
    const auto ids = torch::randint(read.config.vocab_size, {1, 6}, torch::kLong);
    const double tolerance = family == "llama_tied_bf16" ? 0.03 : 1e-3;
    auto difference = [](const torch::Tensor& a, const torch::Tensor& b) {
      return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
    };
    EXPECT_LT(difference(quantized.append(ids.narrow(1, 0, 4)), floating.append(ids.narrow(1, 0, 4))), tolerance)
        << family;
    for (int64_t t = 4; t < 6; ++t)
      EXPECT_LT(difference(quantized.append(ids.narrow(1, t, 1)), floating.append(ids.narrow(1, t, 1))), tolerance)
          << family << " step " << t;
  }
  // config.json's bits disagreeing with the codes' shapes is refused with the layer's name.
  const auto damaged = out("llama3-damaged");
  convert_to_mlx_lm(source("llama3"), damaged, options(4, 32));
  auto config = nlohmann::json::parse(read_text(damaged / "config.json"));
  config["quantization"]["bits"] = 8;
  std::ofstream(damaged / "config.json") << config.dump();
  try {
    read_mlx_lm_checkpoint(damaged);
    ADD_FAILURE() << "a config.json saying 8 bits over 4-bit codes was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("8-bit groups of 32"), std::string::npos) << e.what();
  }
}

TEST_F(MlxLmCheckpoint, BadSettingsAndSourcesLeaveNothingBehind) {
  auto leftovers = [&] {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(tmp_->path() / "out"))
      if (entry.path().filename().string().find("refused") != std::string::npos)
        names.push_back(entry.path().filename().string());
    return names;
  };
  fs::create_directories(tmp_->path() / "out");
  auto expect_error = [&](const std::function<void()>& convert, const std::string& expected) {
    try {
      convert();
      ADD_FAILURE() << "no error; expected one saying " << expected;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
    EXPECT_TRUE(leftovers().empty()) << fmt::format("{}", fmt::join(leftovers(), ", "));
  };
  expect_error([&] { convert_to_mlx_lm(source("llama3"), out("refused"), options(7, 64)); }, "bits");
  expect_error([&] { convert_to_mlx_lm(source("llama3"), out("refused"), options(4, 48)); }, "group");
  auto layer = options(4, 32);
  layer.layer_settings = {{"lm_head", {4, 100}}};
  expect_error([&] { convert_to_mlx_lm(source("llama3"), out("refused"), layer); }, "lm_head");
  auto dtype = options(4, 32);
  dtype.dtype = "int8";
  expect_error([&] { convert_to_mlx_lm(source("llama3"), out("refused"), dtype); }, "float16, bfloat16 or float32");
  expect_error([&] { convert_to_mlx_lm(tmp_->path() / "missing", out("refused"), options(4, 32)); }, "missing");
  // A truncated shard is refused by name before anything is written.
  const auto broken = tmp_->path() / "broken";
  fs::copy(source("llama3"), broken);
  fs::resize_file(broken / "model.safetensors", fs::file_size(broken / "model.safetensors") / 2);
  expect_error([&] { convert_to_mlx_lm(broken, out("refused"), options(4, 32)); }, "model.safetensors");
}

// The command line: exit 2 for bad input, JSON with --json.
TEST_F(MlxLmCheckpoint, QuantizeCommand) {
  const auto cli = [](const std::string& args) { return run_command(std::string(MCOMPRESS_CLI) + " quantize " + args); };
  const auto dir = out("cli");
  const auto done = cli(fmt::format("'{}' --bits 4 --group-size 32 --out '{}' --json", source("qwen2").string(),
                                    dir.string()));
  ASSERT_EQ(done.exit_code, 0) << done.output;
  const auto json = nlohmann::json::parse(done.output);
  EXPECT_EQ(json["format"], "mlx-lm");
  EXPECT_GT(json["quantized_layers"].get<int>(), 0);
  EXPECT_GT(json["peak_rss_mb"].get<double>(), 0.0);
  EXPECT_EQ(reference_check(source("qwen2"), dir, 4, 32), "OK\n");

  const auto exists = cli(fmt::format("'{}' --bits 4 --out '{}'", source("qwen2").string(), dir.string()));
  EXPECT_EQ(exists.exit_code, 2);
  EXPECT_NE(exists.output.find("--force"), std::string::npos) << exists.output;
  const auto bits = cli(fmt::format("'{}' --bits 7 --out '{}'", source("qwen2").string(), out("cli7").string()));
  EXPECT_EQ(bits.exit_code, 2);
  EXPECT_NE(bits.output.find("--bits 7"), std::string::npos) << bits.output;
  const auto missing = cli("/nonexistent/model --bits 4");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("not found"), std::string::npos) << missing.output;
  const auto layer = cli(fmt::format("'{}' --bits 4 --layer 'lm_head: bits=9x' --out '{}'", source("qwen2").string(),
                                     out("cli-layer").string()));
  EXPECT_EQ(layer.exit_code, 2);
  EXPECT_NE(layer.output.find("lm_head: bits=9x"), std::string::npos) << layer.output;
  const auto forced =
      cli(fmt::format("'{}' --bits 8 --group-size 32 --out '{}' --force --quiet", source("qwen2").string(), dir.string()));
  EXPECT_EQ(forced.exit_code, 0) << forced.output;
  EXPECT_EQ(reference_check(source("qwen2"), dir, 8, 32), "OK\n");
}

}  // namespace
}  // namespace mcompress
