// Hugging Face checkpoint language models through the whole host: a recipe
// trains the zoo's Llama with a tokenizer it trains, every stage writes a
// checkpoint directory, a later recipe starts from that checkpoint (`hf:`),
// `mcompress benchmark` measures it, and broken checkpoints are refused with
// exit code 2 and nothing written.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace fs = std::filesystem;
using mcompress::testing::read_text;
using mcompress::testing::run_command;
using mcompress::testing::TempDir;
using mcompress::testing::write_text;

namespace {

std::string cli(const std::string& args) {
  return std::string(MCOMPRESS_CLI) + " " + args + " --plugin-dir " + MCOMPRESS_PLUGIN_DIR + " 2>&1";
}

// The first 40 000 characters of Tiny Shakespeare: enough for a tokenizer and
// a few training steps, small enough to stay quick.
std::string shakespeare_excerpt() {
  return read_text(fs::path(MCOMPRESS_SOURCE_DIR) / "tests/data/tinyshakespeare.txt").substr(0, 40000);
}

const char* kTrainRecipe = R"(mcompress: 1
name: tiny_llama
seed: 3
threads: 2
model:
  zoo: llama
  options: {width: 32, layers: 2, heads: 4, kv_heads: 2, intermediate: 64, context: 64}
data:
  dataset: text
  path: shakespeare.txt
  tokenizer_vocab: 300
  context: 32
  eval_stride: 16
  validation_size: 8
  eval_limit: 16
probes:
  enabled: [perplexity, text_sample, generation, params, size]
  eval_batch_size: 8
  sample_length: 12
  prompt_length: 16
  new_tokens: 4
stages:
  - name: train
    pass: finetune
    params: {epochs: 0, max_steps: 60, batch_size: 16, optimizer: adamw, lr: 0.01}
)";

nlohmann::json read_json(const fs::path& path) { return nlohmann::json::parse(read_text(path)); }

class HfPipeline : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    workspace_ = new TempDir("hf-pipeline");
    write_text(dir() / "shakespeare.txt", shakespeare_excerpt());
    write_text(dir() / "train.yaml", kTrainRecipe);
    const auto result = run_command(cli("run " + (dir() / "train.yaml").string() + " --out " +
                                        (dir() / "trained").string() + " --no-tracking --quiet"));
    train_exit_ = result.exit_code;
    train_output_ = result.output;
  }
  static void TearDownTestSuite() { delete workspace_; }
  static fs::path dir() { return workspace_->path(); }
  static fs::path trained_model() { return dir() / "trained" / "model"; }

  static TempDir* workspace_;
  static int train_exit_;
  static std::string train_output_;
};
TempDir* HfPipeline::workspace_ = nullptr;
int HfPipeline::train_exit_ = -1;
std::string HfPipeline::train_output_;

TEST_F(HfPipeline, TrainingWritesCheckpointDirectoriesWithTheTrainedTokenizer) {
  ASSERT_EQ(train_exit_, 0) << train_output_;
  for (const fs::path model : {trained_model(), dir() / "trained/stages/01_train/model",
                               dir() / "trained/stages/00_baseline/model"}) {
    for (const char* file : {"config.json", "model.safetensors", "model.safetensors.index.json",
                             "tokenizer.json", "tokenizer_config.json"})
      EXPECT_TRUE(fs::is_regular_file(model / file)) << model / file;
    EXPECT_FALSE(fs::exists(model.parent_path() / "model.pt"));
  }
  const auto config = read_json(trained_model() / "config.json");
  EXPECT_EQ(config.at("model_type"), "llama");
  EXPECT_EQ(config.at("vocab_size"), 300);
  EXPECT_EQ(config.at("hidden_size"), 32);
  EXPECT_EQ(config.at("num_key_value_heads"), 2);
  const auto index = read_json(trained_model() / "model.safetensors.index.json");
  EXPECT_EQ(index.at("weight_map").at("model.layers.1.mlp.down_proj.weight"), "model.safetensors");
  EXPECT_FALSE(index.at("weight_map").contains("lm_head.weight"));  // tied
}

TEST_F(HfPipeline, ProbesMeasurePerplexityGenerationAndASample) {
  ASSERT_EQ(train_exit_, 0) << train_output_;
  const auto baseline = read_json(dir() / "trained/stages/00_baseline/record.json");
  const auto trained = read_json(dir() / "trained/stages/01_train/record.json");
  const auto& before = baseline.at("outcome").at("metrics");
  const auto& after = trained.at("outcome").at("metrics");
  // Random weights predict about uniformly over 300 tokens; training must do better.
  EXPECT_NEAR(before.at("perplexity").get<double>(), 300.0, 60.0);
  EXPECT_LT(after.at("perplexity").get<double>(), 0.5 * before.at("perplexity").get<double>());
  EXPECT_GT(after.at("next_token_accuracy").get<double>(), before.at("next_token_accuracy").get<double>());
  for (const char* key : {"prefill_tokens_per_s", "decode_tokens_per_s", "time_to_first_token_ms"})
    EXPECT_GT(after.at(key).get<double>(), 0.0) << key;
  EXPECT_EQ(after.at("prompt_tokens").get<double>(), 16.0);
  EXPECT_GT(after.at("params").get<double>(), 0.0);
  EXPECT_NEAR(after.at("size_bytes").get<double>(), 4.0 * after.at("params").get<double>(), 1.0);
  const auto& sample = trained.at("text_sample");
  EXPECT_FALSE(sample.at("prompt").get<std::string>().empty());
  EXPECT_FALSE(sample.at("continuation").get<std::string>().empty());
}

TEST_F(HfPipeline, ARecipeStartsFromTheCheckpointWithItsTokenizerInIsolatedStages) {
  ASSERT_EQ(train_exit_, 0) << train_output_;
  write_text(dir() / "again.yaml", "mcompress: 1\nname: again\nseed: 4\nthreads: 2\nmodel:\n  hf: " +
                                       trained_model().string() +
                                       "\n  dtype: checkpoint\ndata:\n  dataset: text\n  path: shakespeare.txt\n"
                                       "  context: 32\n  validation_size: 8\n  eval_limit: 8\nprobes:\n"
                                       "  enabled: [perplexity, params]\n  eval_batch_size: 8\nstages:\n"
                                       "  - name: more\n    pass: finetune\n    params: {epochs: 0, max_steps: 5, "
                                       "batch_size: 8, lr: 0.001}\n");
  const auto result = run_command(cli("run " + (dir() / "again.yaml").string() + " --out " +
                                      (dir() / "again").string() + " --no-tracking --quiet --isolate"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto baseline = read_json(dir() / "again/stages/00_baseline/record.json");
  const auto trained = read_json(dir() / "trained/stages/01_train/record.json");
  // The checkpoint read back is the trained model, not a fresh one (the
  // windows differ a little: another stride and limit).
  const double again = baseline.at("outcome").at("metrics").at("perplexity").get<double>();
  EXPECT_GT(again, 1.0);
  EXPECT_LT(again, 1.5 * trained.at("outcome").at("metrics").at("perplexity").get<double>());
  EXPECT_TRUE(fs::is_regular_file(dir() / "again/model/tokenizer.json"));
  EXPECT_EQ(read_text(dir() / "again/model/tokenizer.json"), read_text(trained_model() / "tokenizer.json"));
}

// mlx_quant on a checkpoint model writes what mlx-lm's converter writes
// (checked byte for byte by tests/python/mlx_lm_reference.py against the
// stage's input checkpoint), tokenizer included; with a bits budget it gives
// the most sensitive layers more bits and says so in config.json.
TEST_F(HfPipeline, MlxQuantWritesTheMlxLmLayoutAndMixedPrecisionToABudget) {
  ASSERT_EQ(train_exit_, 0) << train_output_;
  auto quantize = [&](const std::string& name, const std::string& params) {
    write_text(dir() / (name + ".yaml"),
               "mcompress: 1\nname: " + name + "\nseed: 5\nthreads: 2\nmodel:\n  hf: " + trained_model().string() +
                   "\n  dtype: checkpoint\ndata:\n  dataset: text\n  path: shakespeare.txt\n  context: 32\n"
                   "  validation_size: 8\n  eval_limit: 8\n  calibration_size: 16\nprobes:\n  enabled: [perplexity, "
                   "params, generation]\n  prompt_length: 8\n  new_tokens: 4\n  eval_batch_size: 8\nstages:\n"
                   "  - name: quantize\n    pass: mlx_quant\n    params: " +
                   params + "\n");
    return run_command(cli("run " + (dir() / (name + ".yaml")).string() + " --out " + (dir() / name).string() +
                           " --no-tracking --quiet"));
  };
  const auto rtn = quantize("rtn", "{bits: 4, group_size: 32, dtype: float32}");
  ASSERT_EQ(rtn.exit_code, 0) << rtn.output;
  const auto check = run_command(std::string(MCOMPRESS_PYTHON) + " " + MCOMPRESS_SOURCE_DIR +
                                 "/tests/python/mlx_lm_reference.py check " +
                                 (dir() / "rtn/stages/00_baseline/model").string() + " " +
                                 (dir() / "rtn/stages/01_quantize/artifacts/mlx").string() + " 4 32");
  EXPECT_EQ(check.output, "OK\n");
  EXPECT_TRUE(fs::is_regular_file(dir() / "rtn/stages/01_quantize/artifacts/mlx/tokenizer.json"));
  // The quantized model decodes from its codes: the generation probe measures it too.
  const auto quantized = read_json(dir() / "rtn/stages/01_quantize/record.json").at("outcome").at("metrics");
  EXPECT_GT(quantized.at("decode_tokens_per_s").get<double>(), 0.0);

  const auto mixed = quantize("mixed", "{bits: 3, group_size: 32, dtype: float32, method: gptq, "
                                       "target_bits_per_weight: 3.5}");
  ASSERT_EQ(mixed.exit_code, 0) << mixed.output;
  const auto stats = read_json(dir() / "mixed/stages/01_quantize/record.json").at("stats");
  const auto& allocation = stats.at("mixed_precision");
  EXPECT_LE(allocation.at("allocated_bits_per_weight").get<double>(), 3.5 + 1e-9);
  EXPECT_GT(allocation.at("allocated_bits_per_weight").get<double>(), 3.0);
  const auto config = read_json(dir() / "mixed/stages/01_quantize/artifacts/mlx/config.json");
  const auto& quantization = config.at("quantization");
  EXPECT_EQ(quantization.at("bits"), 3);
  EXPECT_EQ(config.at("quantization_config"), quantization);
  int four_bit = 0;
  for (const auto& layer : allocation.at("layers")) {
    const auto path = layer.at("layer").get<std::string>();
    if (layer.at("bits") == 4) {
      ++four_bit;
      EXPECT_EQ(quantization.at(path), (nlohmann::json{{"group_size", 32}, {"bits", 4}})) << path;
    } else {
      EXPECT_FALSE(quantization.contains(path)) << path;
    }
  }
  EXPECT_GT(four_bit, 0);
  EXPECT_EQ(stats.at("method"), "gptq");
  const auto metrics = read_json(dir() / "mixed/stages/01_quantize/record.json").at("outcome").at("metrics");
  EXPECT_GT(metrics.at("perplexity").get<double>(), 1.0);
}

TEST_F(HfPipeline, BenchmarkMeasuresACheckpointWithoutARecipe) {
  ASSERT_EQ(train_exit_, 0) << train_output_;
  const auto result = run_command(std::string(MCOMPRESS_CLI) + " benchmark " + trained_model().string() +
                                  " --data " + (dir() / "shakespeare.txt").string() +
                                  " --context 32 --eval-stride 16 --prompt-length 16 --new-tokens 4 "
                                  "--threads 1 --json 2>/dev/null");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto metrics = nlohmann::json::parse(result.output).at("metrics");
  for (const char* key : {"perplexity", "next_token_accuracy", "decode_tokens_per_s", "prefill_tokens_per_s",
                          "time_to_first_token_ms", "params", "size_bytes", "peak_rss_mb", "load_seconds"})
    EXPECT_TRUE(metrics.contains(key)) << key;
  const auto trained = read_json(dir() / "trained/stages/01_train/record.json");
  EXPECT_EQ(metrics.at("params"), trained.at("outcome").at("metrics").at("params"));
}

TEST_F(HfPipeline, AComparisonSweepRanksCheckpointCandidatesByPerplexity) {
  ASSERT_EQ(train_exit_, 0) << train_output_;
  write_text(dir() / "sweep_base.yaml",
             "mcompress: 1\nname: sweep_base\nseed: 5\nthreads: 1\nmodel:\n  hf: " + trained_model().string() +
                 "\ndata:\n  dataset: text\n  path: shakespeare.txt\n  context: 32\n  validation_size: 4\n"
                 "  eval_limit: 8\nprobes:\n  enabled: [perplexity, params, size]\n  eval_batch_size: 8\n"
                 "stages:\n  - name: tune\n    pass: finetune\n    params: {epochs: 0, max_steps: 3, "
                 "batch_size: 4, lr: 0.0001}\n");
  write_text(dir() / "sweep.yaml",
             "mcompress_sweep: 1\nname: lm_sweep\nbase: sweep_base.yaml\ngrid:\n  stages.tune.params.lr: "
             "[0.0001, 0.001]\nobjective:\n  reference: baseline\n  minimize: perplexity\n");
  const auto result = run_command(cli("compare " + (dir() / "sweep.yaml").string() + " --out " +
                                      (dir() / "sweep").string() + " --no-tracking --quiet --jobs 1"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto comparison = read_json(dir() / "sweep" / "comparison.json");
  const std::string dump = comparison.dump();
  EXPECT_NE(dump.find("\"perplexity\""), std::string::npos) << dump;
  EXPECT_NE(dump.find("tune.lr=0.001"), std::string::npos) << dump;
  EXPECT_EQ(dump.find("\"failed\""), std::string::npos) << dump;
}

TEST_F(HfPipeline, JsonLinesAreReadByTheirTextFieldAndABadLineIsNamed) {
  ASSERT_EQ(train_exit_, 0) << train_output_;
  const std::string text = shakespeare_excerpt();
  std::string lines;
  for (size_t at = 0; at < text.size(); at += 2000)
    lines += nlohmann::json{{"text", text.substr(at, 2000)}, {"id", at}}.dump() + "\n";
  write_text(dir() / "docs.jsonl", lines);
  const std::string benchmark = std::string(MCOMPRESS_CLI) + " benchmark " + trained_model().string() +
                                " --context 32 --eval-stride 16 --prompt-length 8 --new-tokens 2 --threads 1 --json";
  auto result = run_command(benchmark + " --data " + (dir() / "docs.jsonl").string() + " 2>/dev/null");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_GT(nlohmann::json::parse(result.output).at("metrics").at("perplexity").get<double>(), 1.0);

  write_text(dir() / "bad.jsonl", lines + "{\"title\": \"no text here\"}\n");
  result = run_command(benchmark + " --data " + (dir() / "bad.jsonl").string() + " 2>&1");
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("bad.jsonl:21: the line has no string field `text`"), std::string::npos)
      << result.output;
}

// A copy of the trained checkpoint to break.
fs::path broken_copy(const fs::path& from, const fs::path& to) {
  fs::remove_all(to);
  fs::copy(from, to, fs::copy_options::recursive);
  return to;
}

std::string run_on(const fs::path& checkpoint, const fs::path& out) {
  const fs::path recipe = out.parent_path() / (out.filename().string() + ".yaml");
  write_text(recipe, "mcompress: 1\nname: broken\nmodel:\n  hf: " + checkpoint.string() +
                         "\ndata:\n  dataset: text\n  path: shakespeare.txt\n  context: 32\nprobes:\n"
                         "  enabled: [params]\nstages:\n  - pass: finetune\n    params: {epochs: 0, "
                         "max_steps: 1}\n");
  return cli("run " + recipe.string() + " --out " + out.string() + " --no-tracking --quiet");
}

TEST_F(HfPipeline, BrokenCheckpointsAreRefusedWithExitCode2AndNothingWritten) {
  ASSERT_EQ(train_exit_, 0) << train_output_;
  struct Case {
    std::string name;
    std::function<void(const fs::path&)> damage;
    std::string expected;  // in the message
  };
  const std::vector<Case> cases{
      {"truncated",
       [](const fs::path& m) { fs::resize_file(m / "model.safetensors", fs::file_size(m / "model.safetensors") / 2); },
       "model.safetensors"},
      {"missing_shard",
       [](const fs::path& m) { fs::rename(m / "model.safetensors", m / "elsewhere.safetensors"); },
       "model.safetensors"},
      {"config_disagrees",
       [](const fs::path& m) {
         auto config = read_json(m / "config.json");
         config["intermediate_size"] = 96;
         write_text(m / "config.json", config.dump());
       },
       "config.json says 'model.layers.0.mlp.gate_proj.weight' has shape [96, 32] but the weights say [64, 32]"},
      {"unknown_family",
       [](const fs::path& m) {
         auto config = read_json(m / "config.json");
         config["model_type"] = "gpt_neox";
         write_text(m / "config.json", config.dump());
       },
       "gpt_neox"},
      {"malformed_tokenizer", [](const fs::path& m) { write_text(m / "tokenizer.json", "{\"model\": "); },
       "tokenizer.json"},
      {"mlx_quantized",
       [](const fs::path& m) {
         auto config = read_json(m / "config.json");
         config["quantization"] = {{"group_size", 64}, {"bits", 4}};
         write_text(m / "config.json", config.dump());
       },
       "mlx-lm (or `mcompress quantize`) quantized"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path copy = broken_copy(trained_model(), dir() / ("broken_" + c.name));
    c.damage(copy);
    const fs::path out = dir() / ("out_" + c.name);
    const auto result = run_command(run_on(copy, out));
    EXPECT_EQ(result.exit_code, 2) << result.output;
    EXPECT_NE(result.output.find(c.expected), std::string::npos) << result.output;
    EXPECT_NE(result.output.find("nothing was run"), std::string::npos) << result.output;
    EXPECT_FALSE(fs::exists(out)) << result.output;
  }
}

TEST(HfRecipe, TextDataNeedsATokenizerAndAModelHasOneSource) {
  TempDir scratch("hf-recipe");
  write_text(scratch.path() / "t.txt", "hello");
  write_text(scratch.path() / "r.yaml",
             "mcompress: 1\nmodel:\n  zoo: llama\ndata:\n  dataset: text\n  path: t.txt\nstages: []\n");
  auto result = run_command(cli("run " + (scratch.path() / "r.yaml").string() + " --dry-run"));
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("needs a tokenizer"), std::string::npos) << result.output;

  write_text(scratch.path() / "r.yaml", "mcompress: 1\nmodel:\n  zoo: llama\n  hf: nowhere\nstages: []\n");
  result = run_command(cli("run " + (scratch.path() / "r.yaml").string() + " --dry-run"));
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("exactly one of"), std::string::npos) << result.output;
}

}  // namespace
