// The mlx_quant pass through the CLI: per-layer control from the recipe
// (targets, ignore, overrides), skipped layers reported, the MLX directory
// written with the stage, clear errors for what MLX does not support.
#include <gtest/gtest.h>

#include <torch/script.h>

#include <nlohmann/json.hpp>

#include "mcompress/runtime/quantized_linear.h"
#include "mcompress/quantization/quantized_model.h"
#include "test_support.h"

namespace fs = std::filesystem;
using mcompress::testing::read_text;
using mcompress::testing::run_command;
using mcompress::testing::TempDir;
using mcompress::testing::write_text;

namespace {

std::string run_cli(const std::string& args) { return std::string(MCOMPRESS_CLI) + " " + args; }

nlohmann::json stage(const nlohmann::json& report, const std::string& name) {
  for (const auto& s : report.at("stages")) {
    if (s.at("name") == name) return s;
  }
  ADD_FAILURE() << "no stage " << name;
  return nlohmann::json::object();
}

fs::path stage_dir(const fs::path& run, const std::string& name) {
  for (const auto& entry : fs::directory_iterator(run / "stages")) {
    const auto file = entry.path().filename().string();
    if (file.size() > 3 && file.substr(3) == name) return entry.path();
  }
  ADD_FAILURE() << "no stage directory " << name;
  return {};
}

const char* kCharLmRecipe = R"(mcompress: 1
name: quant
seed: 1
threads: 1
model:
  zoo: char_lm
  options: {width: 64, layers: 2, heads: 4, context: 32}
data:
  dataset: tiny_shakespeare
  path: TEXT
  context: 32
  train_limit: 200
  validation_size: 20
  eval_limit: 20
probes:
  enabled: [accuracy, perplexity, latency, params, size]
  latency_batch_sizes: [1]
  latency_runs: 2
  latency_warmup: 1
stages:
  - name: quantize
    pass: mlx_quant
    params:
      targets: ["block*", "head"]
      ignore: ["block0.attn.*"]
      overrides: ["head: bits=8 group_size=32", "block1.*: bits=3"]
)";

std::string char_lm_recipe() {
  std::string recipe = kCharLmRecipe;
  recipe.replace(recipe.find("TEXT"), 4, std::string(MCOMPRESS_SOURCE_DIR) + "/tests/data/tinyshakespeare.txt");
  return recipe;
}

}  // namespace

TEST(MlxQuantPass, ExplainsItsParameters) {
  const auto result = run_command(run_cli("explain mlx_quant"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (const char* word : {"bits", "group_size", "targets", "ignore", "overrides", "dtype", "export_mlx"}) {
    EXPECT_NE(result.output.find(word), std::string::npos) << word;
  }
}

TEST(MlxQuantPass, FollowsTargetsIgnoreAndOverridesAndExportsMlx) {
  TempDir tmp("mlx-quant-cli");
  write_text(tmp.path() / "recipe.yaml", char_lm_recipe());
  const fs::path out = tmp.path() / "run";
  const auto result = run_command(run_cli("run " + (tmp.path() / "recipe.yaml").string() + " --quiet --out " +
                                          out.string()));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto report = nlohmann::json::parse(read_text(out / "report.json"));
  const auto quantized = stage(report, "quantize");
  ASSERT_EQ(quantized.at("status"), "accepted") << quantized.dump(2);

  const auto record = nlohmann::json::parse(read_text(stage_dir(out, "quantize") / "record.json"));
  const auto stats = record.dump();
  auto model = torch::jit::load((out / "model.pt").string());
  std::map<std::string, std::pair<int, int>> settings;
  for (const auto& layer : mcompress::quantized_layers(model)) settings[layer.path] = {layer.bits, layer.group_size};
  const std::map<std::string, std::pair<int, int>> expected = {
      {"block0.fc", {4, 64}},        {"block0.proj", {4, 64}}, {"block1.attn.qkv", {3, 64}},
      {"block1.attn.proj", {3, 64}}, {"block1.fc", {3, 64}},   {"block1.proj", {3, 64}},
      {"head", {8, 32}}};
  EXPECT_EQ(settings, expected) << stats;
  // Ignored layers keep their floating weight.
  EXPECT_TRUE(model.attr("block0").toModule().attr("attn").toModule().attr("qkv").toModule().hasattr("weight"));
  // Same logical parameters as the baseline, fewer bytes.
  const auto baseline = stage(report, "baseline").at("metrics");
  EXPECT_EQ(quantized.at("metrics").at("params"), baseline.at("params"));
  EXPECT_LT(quantized.at("metrics").at("size_bytes").get<double>(), baseline.at("size_bytes").get<double>());
  EXPECT_GT(quantized.at("metrics").at("bits_per_char").get<double>(), 0.0);

  // The MLX directory is kept with the stage.
  const auto mlx = stage_dir(out, "quantize") / "artifacts" / "mlx";
  ASSERT_TRUE(fs::exists(mlx / "model.safetensors"));
  const auto config = nlohmann::json::parse(read_text(mlx / "config.json"));
  EXPECT_EQ(config.at("quantization").at("bits"), 4);
  EXPECT_EQ(config.at("quantization").at("head"), nlohmann::json({{"group_size", 32}, {"bits", 8}}));
  EXPECT_EQ(config.at("quantization").at("block1.fc"), nlohmann::json({{"group_size", 64}, {"bits", 3}}));
}

TEST(MlxQuantPass, ReportsLayersItSkipsAndStillQuantizesTheRest) {
  TempDir tmp("mlx-quant-skip");
  write_text(tmp.path() / "recipe.yaml", R"(mcompress: 1
model: {zoo: cnn, options: {width: 16}}
probes: {enabled: [params, size]}
stages:
  - {pass: mlx_quant, params: {group_size: 64, dtype: keep}}
)");
  const fs::path out = tmp.path() / "run";
  const auto result = run_command(run_cli("run " + (tmp.path() / "recipe.yaml").string() + " --out " + out.string() +
                                          " 2>&1"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("fc1 stays in floating point: its input size 1568 is not a multiple of the group size 64"),
            std::string::npos)
      << result.output;
  const auto record = nlohmann::json::parse(read_text(stage_dir(out, "mlx_quant") / "record.json"));
  const auto record_text = record.dump();
  EXPECT_NE(record_text.find("\"skipped_layers\":1"), std::string::npos) << record_text;
  EXPECT_NE(record_text.find("\"quantized_layers\":1"), std::string::npos) << record_text;
}

TEST(MlxQuantPass, RefusesWhatMlxDoesNotSupport) {
  TempDir tmp("mlx-quant-errors");
  for (const auto& [params, message] :
       std::vector<std::pair<std::string, std::string>>{
           {"{bits: 7}", "bits must be 2, 3, 4, 5, 6 or 8"},
           {"{group_size: 48}", "group size must be 32, 64 or 128"},
           {"{overrides: [\"fc2 bits=4\"]}", "is not of the form 'PATTERN: bits=B group_size=G'"},
           {"{targets: [nothing*]}", "no linear layer selected"}}) {
    write_text(tmp.path() / "recipe.yaml", "mcompress: 1\nmodel: {zoo: mlp}\nprobes: {enabled: [params]}\n"
                                           "stages:\n  - {pass: mlx_quant, params: " + params + "}\n");
    const auto result = run_command(run_cli("run " + (tmp.path() / "recipe.yaml").string() + " --out " +
                                            (tmp.path() / "run").string() + " 2>&1"));
    EXPECT_EQ(result.exit_code, 1) << params << "\n" << result.output;
    EXPECT_NE(result.output.find(message), std::string::npos) << params << "\n" << result.output;
    fs::remove_all(tmp.path() / "run");
  }
}
