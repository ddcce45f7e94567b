// Hugging Face decoder-only transformers as TorchScript modules: the logits of
// every family agree with an independent plain-PyTorch forward
// (tests/python/hf_reference.py), written checkpoints read back the same,
// and bad checkpoints fail with messages naming the file and the tensor.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <set>

#include "mcompress/formats/hf_model.h"
#include "mcompress/formats/safetensors.h"
#include "mcompress/models/causal_lm.h"
#include "mcompress/sdk/error.h"
#include "test_support.h"

namespace fs = std::filesystem;
using mcompress::testing::error_of;
using mcompress::testing::read_text;
using mcompress::testing::run_command;
using mcompress::testing::TempDir;
using mcompress::testing::write_text;
using nlohmann::json;

namespace mcompress {
namespace {

// The checkpoints hf_reference.py makes: llama with llama3 rope scaling,
// llama tied and stored in bfloat16, mistral (GQA, sharded), qwen2 (q/k/v
// biases, tied), qwen3 (q/k norms, head_dim != hidden/heads), mixtral (4
// experts, top 2).
const std::vector<std::string> kCases = {"llama3", "llama_tied_bf16", "mistral", "qwen2", "qwen3", "mixtral"};
constexpr const char* kTokenRows = "1,5,9,3,96,0,42,7,11,13,50,2;4,4,4,8,90,1,2,3,60,61,62,63";

torch::Tensor token_ids() {
  return torch::tensor({1, 5, 9, 3, 96, 0, 42, 7, 11, 13, 50, 2, 4, 4, 4, 8, 90, 1, 2, 3, 60, 61, 62, 63},
                       torch::kLong)
      .view({2, 12});
}

fs::path reference_script() { return fs::path(MCOMPRESS_SOURCE_DIR) / "tests" / "python" / "hf_reference.py"; }

void run_reference(const std::string& arguments) {
  const auto result = run_command(fmt::format("{} '{}' {}", MCOMPRESS_PYTHON, reference_script().string(), arguments));
  if (result.exit_code != 0)
    throw std::runtime_error(fmt::format("hf_reference.py {} failed:\n{}", arguments, result.output));
}

// The reference's logits for each directory, in one python run.
std::vector<torch::Tensor> reference_logits(const std::vector<fs::path>& directories, const std::string& dtype,
                                            const fs::path& out_dir) {
  std::string arguments = fmt::format("logits '{}' {}", kTokenRows, dtype);
  std::vector<fs::path> outputs;
  for (const fs::path& directory : directories) {
    outputs.push_back(out_dir / (directory.filename().string() + "." + dtype + ".safetensors"));
    arguments += fmt::format(" '{}' '{}'", directory.string(), outputs.back().string());
  }
  run_reference(arguments);
  std::vector<torch::Tensor> logits;
  for (const fs::path& output : outputs) logits.push_back(read_safetensors(output).entries.at(0).tensor);
  return logits;
}

// The checkpoints and their reference logits. ctest runs every test in a
// process of its own: they are made once per version of the script, in a
// directory of the build tree named by its hash, and shared.
struct Workspace {
  fs::path root;
  std::map<std::string, torch::Tensor> float32_logits;
  torch::Tensor bf16_logits;  // llama_tied_bf16 computed in bfloat16

  Workspace() {
    uint64_t hash = 1469598103934665603ull;  // FNV-1a of the script
    for (unsigned char c : read_text(reference_script())) hash = (hash ^ c) * 1099511628211ull;
    root = fs::path(MCOMPRESS_BINARY_DIR) / "test-tmp" / fmt::format("causal_lm_reference-{:016x}", hash);
    if (!fs::exists(root)) make(root);
    for (const std::string& name : kCases)
      float32_logits[name] = read_safetensors(root / (name + ".float32.safetensors")).entries.at(0).tensor;
    bf16_logits = read_safetensors(root / "llama_tied_bf16.checkpoint.safetensors").entries.at(0).tensor;
  }

  // Built aside and renamed into place, so a concurrent test process sees
  // either nothing or everything.
  static void make(const fs::path& root) {
    TempDir staging("causal_lm_staging");
    const fs::path building = staging.path() / "reference";
    run_reference(fmt::format("make '{}'", (building / "checkpoints").string()));
    std::vector<fs::path> directories;
    for (const std::string& name : kCases) directories.push_back(building / "checkpoints" / name);
    reference_logits(directories, "float32", building);
    reference_logits({building / "checkpoints" / "llama_tied_bf16"}, "checkpoint", building);
    std::error_code lost_race;
    fs::rename(building, root, lost_race);
    if (lost_race && !fs::exists(root)) throw std::runtime_error("cannot create " + root.string());
  }

  fs::path checkpoint(const std::string& name) const { return root / "checkpoints" / name; }
};

const Workspace& workspace() {
  static const Workspace instance;
  return instance;
}

torch::Tensor logits_of(torch::jit::Module& model) {
  torch::NoGradGuard no_grad;
  return model.forward({token_ids()}).toTensor();
}

// |actual - expected| within `relative` of the largest expected logit.
void expect_close(const torch::Tensor& actual, const torch::Tensor& expected, double relative,
                  const std::string& what) {
  ASSERT_EQ(actual.scalar_type(), torch::kFloat) << what;
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const double scale = expected.abs().max().item<double>();
  const double error = (actual - expected).abs().max().item<double>();
  EXPECT_LE(error, relative * scale) << what << ": max error " << error << " for logits up to " << scale;
}

json read_json(const fs::path& path) { return json::parse(read_text(path)); }

// A copy of checkpoint `name` whose config.json `edit` changes.
fs::path edited_copy(const std::string& name, const fs::path& parent, const std::function<void(json&)>& edit) {
  const fs::path copy = parent / name;
  fs::copy(workspace().checkpoint(name), copy, fs::copy_options::recursive);
  json config = read_json(copy / "config.json");
  edit(config);
  write_text(copy / "config.json", config.dump(2));
  return copy;
}

// Replaces the parameter at HF path `name` as a pruning pass does.
void replace_parameter(torch::jit::Module model, const std::string& name, const torch::Tensor& value) {
  size_t begin = 0;
  for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', begin)) {
    model = model.attr(name.substr(begin, dot - begin)).toModule();
    begin = dot + 1;
  }
  model.register_parameter(name.substr(begin), value, /*is_buffer=*/false);
}

class CausalLmFamily : public ::testing::TestWithParam<std::string> {};

TEST_P(CausalLmFamily, LogitsAgreeWithTheReferenceForward) {
  torch::jit::Module model = load_hf_model(workspace().checkpoint(GetParam()), "float32");
  expect_close(logits_of(model), workspace().float32_logits.at(GetParam()), 1e-4, GetParam());
}

TEST_P(CausalLmFamily, ParametersCarryTheCheckpointNames) {
  const fs::path directory = workspace().checkpoint(GetParam());
  const HfCheckpoint checkpoint = read_hf_checkpoint(directory);
  torch::jit::Module model = load_hf_model(directory, "float32");
  std::set<std::string> parameters;
  for (const auto& parameter : model.named_parameters()) {
    parameters.insert(parameter.name);
    EXPECT_EQ(parameter.value.scalar_type(), torch::kFloat) << parameter.name;
    EXPECT_TRUE(parameter.value.equal(checkpoint.tensors.at(parameter.name).tensor.to(torch::kFloat)))
        << parameter.name;
  }
  std::set<std::string> stored;
  for (const auto& [name, entry] : checkpoint.tensors) stored.insert(name);
  EXPECT_EQ(parameters, stored);

  const std::map<std::string, torch::Tensor> weights = causal_lm_weights(model);
  EXPECT_EQ(weights.size(), stored.size());
  bool has_inv_freq = false;
  for (const auto& buffer : model.named_buffers()) has_inv_freq |= buffer.name == "model.rotary_emb.inv_freq";
  EXPECT_TRUE(has_inv_freq);

  const TransformerConfig parsed = parse_transformer_config(checkpoint.config_json, "config.json");
  const TransformerConfig recomputed = causal_lm_config(model);
  EXPECT_EQ(recomputed.vocab_size, parsed.vocab_size);
  EXPECT_EQ(recomputed.hidden_size, parsed.hidden_size);
  EXPECT_EQ(recomputed.intermediate_size, parsed.intermediate_size);
  EXPECT_EQ(recomputed.num_hidden_layers, parsed.num_hidden_layers);
  EXPECT_EQ(recomputed.num_attention_heads, parsed.num_attention_heads);
  EXPECT_EQ(recomputed.num_key_value_heads, parsed.num_key_value_heads);
  EXPECT_EQ(recomputed.head_dim, parsed.head_dim);
  EXPECT_EQ(recomputed.num_local_experts, parsed.num_local_experts);
  EXPECT_EQ(recomputed.tie_word_embeddings, parsed.tie_word_embeddings);
  EXPECT_EQ(recomputed.attention_bias, parsed.attention_bias);
  EXPECT_EQ(recomputed.qk_norm, parsed.qk_norm);
  EXPECT_TRUE(is_causal_lm(model));
  EXPECT_EQ(causal_lm_config_json(model), checkpoint.config_json);
}

INSTANTIATE_TEST_SUITE_P(Families, CausalLmFamily, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return info.param; });

TEST(CausalLm, Bfloat16ComputeAgreesWithTheReferenceInBfloat16) {
  torch::jit::Module model = load_hf_model(workspace().checkpoint("llama_tied_bf16"), "checkpoint");
  for (const auto& parameter : model.named_parameters())
    ASSERT_EQ(parameter.value.scalar_type(), torch::kBFloat16) << parameter.name;
  expect_close(logits_of(model), workspace().bf16_logits, 2e-2, "bfloat16 compute");
  // And not far from the float32 computation of the same weights.
  expect_close(logits_of(model), workspace().float32_logits.at("llama_tied_bf16"), 3e-2, "bfloat16 vs float32");
}

// LibTorch 1.13 has no float16 matmul on the CPU, so only the dtypes are checked here.
TEST(CausalLm, ComputeDtypeNamesChooseTheParameterDtype) {
  for (const auto& [name, dtype] : std::vector<std::pair<std::string, c10::ScalarType>>{
           {"float16", torch::kHalf}, {"bfloat16", torch::kBFloat16}, {"checkpoint", torch::kFloat}}) {
    torch::jit::Module model = load_hf_model(workspace().checkpoint("qwen2"), name);
    for (const auto& parameter : model.named_parameters())
      ASSERT_EQ(parameter.value.scalar_type(), dtype) << name << " " << parameter.name;
  }
  const std::string message = error_of([] { load_hf_model(workspace().checkpoint("qwen2"), "int8"); });
  EXPECT_NE(message.find("'int8'"), std::string::npos) << message;
}

TEST(CausalLm, SavedCheckpointsReadBackWithTheSameLogits) {
  TempDir out("causal_lm_saved");
  std::vector<fs::path> saved;
  std::vector<torch::Tensor> logits;
  for (const std::string& name : kCases) {
    torch::jit::Module model = load_hf_model(workspace().checkpoint(name), "float32");
    logits.push_back(logits_of(model));
    saved.push_back(out.path() / name);
    save_hf_model(model, saved.back(), workspace().checkpoint(name));

    const json original = read_json(workspace().checkpoint(name) / "config.json");
    const json written = read_json(saved.back() / "config.json");
    EXPECT_EQ(written.at("head_dim"), parse_transformer_config(original.dump(), name).head_dim) << name;
    EXPECT_EQ(written.at("torch_dtype"), original.at("torch_dtype")) << name;
    EXPECT_EQ(written.at("architectures"), original.at("architectures")) << name;
    EXPECT_EQ(written.at("eos_token_id"), original.at("eos_token_id")) << name;
    for (const char* file : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"})
      EXPECT_EQ(read_text(saved.back() / file), read_text(workspace().checkpoint(name) / file)) << name << file;
  }
  // The bfloat16 checkpoint is written in bfloat16 again, bit for bit.
  const HfCheckpoint original = read_hf_checkpoint(workspace().checkpoint("llama_tied_bf16"));
  const HfCheckpoint rewritten = read_hf_checkpoint(out.path() / "llama_tied_bf16");
  ASSERT_EQ(rewritten.tensors.size(), original.tensors.size());
  for (const auto& [name, entry] : original.tensors) {
    EXPECT_EQ(rewritten.tensors.at(name).tensor.scalar_type(), torch::kBFloat16) << name;
    EXPECT_TRUE(rewritten.tensors.at(name).tensor.equal(entry.tensor)) << name;
  }

  const auto reference = reference_logits(saved, "float32", out.path());
  for (size_t i = 0; i < kCases.size(); ++i) expect_close(logits[i], reference[i], 1e-4, kCases[i]);
}

// Removing a whole KV group (with its query heads) and MLP neurons only
// replaces tensors: the module runs at the new shapes and saves a checkpoint
// whose config.json describes them.
TEST(CausalLm, PrunedModelRunsAndSavesItsNewShapes) {
  torch::jit::Module model = load_hf_model(workspace().checkpoint("mistral"), "float32");
  const TransformerConfig before = causal_lm_config(model);
  ASSERT_EQ(before.num_attention_heads, 4);
  ASSERT_EQ(before.num_key_value_heads, 2);
  const int64_t d = before.head_dim;
  std::map<std::string, torch::Tensor> weights = causal_lm_weights(model);
  {
    torch::NoGradGuard no_grad;
    for (int64_t i = 0; i < before.num_hidden_layers; ++i) {
      const std::string layer = fmt::format("model.layers.{}.", i);
      auto rows = [&](const std::string& name, int64_t count) {
        replace_parameter(model, layer + name, weights.at(layer + name).narrow(0, 0, count).clone());
      };
      auto columns = [&](const std::string& name, int64_t count) {
        replace_parameter(model, layer + name, weights.at(layer + name).narrow(1, 0, count).contiguous());
      };
      rows("self_attn.q_proj.weight", 2 * d);  // query heads 0 and 1 read KV head 0
      rows("self_attn.k_proj.weight", d);
      rows("self_attn.v_proj.weight", d);
      columns("self_attn.o_proj.weight", 2 * d);
      rows("mlp.gate_proj.weight", 32);
      rows("mlp.up_proj.weight", 32);
      columns("mlp.down_proj.weight", 32);
    }
  }
  const TransformerConfig after = causal_lm_config(model);
  EXPECT_EQ(after.num_attention_heads, 2);
  EXPECT_EQ(after.num_key_value_heads, 1);
  EXPECT_EQ(after.intermediate_size, 32);
  EXPECT_EQ(after.head_dim, d);
  const torch::Tensor logits = logits_of(model);

  TempDir out("causal_lm_pruned");
  save_hf_model(model, out.path() / "mistral", workspace().checkpoint("mistral"));
  const json written = read_json(out.path() / "mistral" / "config.json");
  EXPECT_EQ(written.at("num_attention_heads"), 2);
  EXPECT_EQ(written.at("num_key_value_heads"), 1);
  EXPECT_EQ(written.at("intermediate_size"), 32);
  EXPECT_EQ(written.at("head_dim"), d);
  EXPECT_EQ(written.at("sliding_window"), 4096);  // keys it does not change are kept
  expect_close(logits, reference_logits({out.path() / "mistral"}, "float32", out.path()).at(0), 1e-4, "pruned");
  torch::jit::Module reloaded = load_hf_model(out.path() / "mistral");
  expect_close(logits_of(reloaded), logits, 1e-6, "reloaded");

  // Layers of different widths cannot be described by one config.json.
  EXPECT_TRUE(writable_as_checkpoint(model));
  replace_parameter(model, "model.layers.1.mlp.gate_proj.weight", torch::zeros({16, after.hidden_size}));
  EXPECT_FALSE(writable_as_checkpoint(model));
  const std::string message = error_of([&] { save_hf_model(model, out.path() / "uneven", {}); });
  EXPECT_NE(message.find("model.layers.1.mlp.gate_proj.weight"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(out.path() / "uneven"));
}

TEST(CausalLm, OnlyCausalLmsWithCheckpointTensorsAreWritable) {
  torch::jit::Module model = load_hf_model(workspace().checkpoint("qwen3"));
  EXPECT_TRUE(writable_as_checkpoint(model));
  torch::jit::Module plain(c10::QualifiedName("__torch__.Plain"));
  plain.register_parameter("weight", torch::ones({2}), false);
  EXPECT_FALSE(is_causal_lm(plain));
  EXPECT_FALSE(writable_as_checkpoint(plain));
  // A tensor that is no longer floating point (as a quantizer leaves it).
  replace_parameter(model, "model.layers.0.mlp.up_proj.weight",
                    torch::zeros({48, 32}, torch::kInt8));
  EXPECT_FALSE(writable_as_checkpoint(model));
  TempDir out("causal_lm_unwritable");
  const std::string message = error_of([&] { save_hf_model(model, out.path() / "q", {}); });
  EXPECT_NE(message.find("'model.layers.0.mlp.up_proj.weight' is Char, not floating point"), std::string::npos)
      << message;
}

TEST(CausalLm, ConfigDisagreeingWithTheWeightsNamesTheTensorAndBothShapes) {
  TempDir out("causal_lm_bad_shape");
  const fs::path copy = edited_copy("llama3", out.path(), [](json& config) { config["intermediate_size"] = 50; });
  const std::string message = error_of([&] { load_hf_model(copy); });
  EXPECT_NE(message.find(copy.string()), std::string::npos) << message;
  EXPECT_NE(message.find("config.json says 'model.layers.0.mlp.gate_proj.weight' has shape [50, 64] but the "
                         "weights say [48, 64]"),
            std::string::npos)
      << message;
}

TEST(CausalLm, UnknownModelTypeNamesTheFileAndTheSupportedFamilies) {
  TempDir out("causal_lm_bad_type");
  const fs::path copy = edited_copy("qwen2", out.path(), [](json& config) { config["model_type"] = "gpt2"; });
  const std::string message = error_of([&] { load_hf_model(copy); });
  EXPECT_NE(message.find((copy / "config.json").string()), std::string::npos) << message;
  EXPECT_NE(message.find("'gpt2'"), std::string::npos) << message;
  EXPECT_NE(message.find("llama, mistral, qwen2, qwen3, mixtral"), std::string::npos) << message;
}

TEST(CausalLm, UnsupportedRopeScalingIsRefused) {
  TempDir out("causal_lm_bad_rope");
  const fs::path copy = edited_copy("llama3", out.path(), [](json& config) {
    config["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  });
  const std::string message = error_of([&] { load_hf_model(copy); });
  EXPECT_NE(message.find("rope scaling 'yarn' is not supported"), std::string::npos) << message;
  EXPECT_NE(message.find((copy / "config.json").string()), std::string::npos) << message;
}

TEST(CausalLm, MissingUnexpectedAndNonFloatTensorsAreNamed) {
  const HfCheckpoint checkpoint = read_hf_checkpoint(workspace().checkpoint("qwen3"));
  const TransformerConfig config = parse_transformer_config(checkpoint.config_json, "config.json");
  std::map<std::string, torch::Tensor> weights;
  for (const auto& [name, entry] : checkpoint.tensors) weights.emplace(name, entry.tensor);

  auto missing = weights;
  missing.erase("model.layers.1.self_attn.k_norm.weight");
  std::string message = error_of([&] { build_causal_lm(config, checkpoint.config_json, missing, torch::kFloat); });
  EXPECT_NE(message.find("'model.layers.1.self_attn.k_norm.weight' of shape [16]"), std::string::npos) << message;

  auto extra = weights;
  extra["model.layers.2.mlp.up_proj.weight"] = torch::zeros({48, 32});
  message = error_of([&] { build_causal_lm(config, checkpoint.config_json, extra, torch::kFloat); });
  EXPECT_NE(message.find("'model.layers.2.mlp.up_proj.weight' of shape [48, 32]"), std::string::npos) << message;

  auto integer = weights;
  integer["model.norm.weight"] = torch::ones({32}, torch::kLong);
  message = error_of([&] { build_causal_lm(config, checkpoint.config_json, integer, torch::kFloat); });
  EXPECT_NE(message.find("'model.norm.weight'"), std::string::npos) << message;

  message = error_of([&] { build_causal_lm(config, checkpoint.config_json, weights, torch::kDouble); });
  EXPECT_NE(message.find("float32, bfloat16 or float16"), std::string::npos) << message;
}

const char* kMinimalLlama = R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 8,
  "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2})";

TEST(TransformerConfig, DefaultsFollowTransformers) {
  const TransformerConfig config = parse_transformer_config(kMinimalLlama, "config.json");
  EXPECT_EQ(config.family, TransformerFamily::Llama);
  EXPECT_EQ(config.num_key_value_heads, 2);
  EXPECT_EQ(config.head_dim, 4);
  EXPECT_FALSE(config.tie_word_embeddings);
  EXPECT_FALSE(config.attention_bias);
  EXPECT_FALSE(config.qk_norm);
  EXPECT_FALSE(config.rope_scaling);
  EXPECT_FALSE(config.is_moe());
  EXPECT_TRUE(config.eos_token_ids.empty());
}

TEST(TransformerConfig, FamilyFlagsAndTokenLists) {
  json qwen2 = json::parse(kMinimalLlama);
  qwen2["model_type"] = "qwen2";
  qwen2["eos_token_id"] = 7;
  qwen2["rope_scaling"] = nullptr;
  TransformerConfig config = parse_transformer_config(qwen2.dump(), "config.json");
  EXPECT_TRUE(config.attention_bias);
  EXPECT_EQ(config.eos_token_ids, std::vector<int64_t>{7});

  json llama = json::parse(kMinimalLlama);
  llama["attention_bias"] = true;
  llama["eos_token_id"] = {128001, 128008, 128009};
  llama["rope_scaling"] = {{"type", "default"}};
  config = parse_transformer_config(llama.dump(), "config.json");
  EXPECT_TRUE(config.attention_bias);
  EXPECT_EQ(config.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_FALSE(config.rope_scaling);

  llama["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 32.0}, {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  config = parse_transformer_config(llama.dump(), "config.json");
  ASSERT_TRUE(config.rope_scaling);
  EXPECT_EQ(config.rope_scaling->factor, 32.0);

  json qwen3 = json::parse(kMinimalLlama);
  qwen3["model_type"] = "qwen3";
  qwen3["head_dim"] = 16;
  config = parse_transformer_config(qwen3.dump(), "config.json");
  EXPECT_TRUE(config.qk_norm);
  EXPECT_FALSE(config.attention_bias);
  EXPECT_EQ(config.head_dim, 16);

  json mixtral = json::parse(kMinimalLlama);
  mixtral["model_type"] = "mixtral";
  EXPECT_NE(error_of([&] { parse_transformer_config(mixtral.dump(), "m/config.json"); }).find("num_local_experts"),
            std::string::npos);
}

TEST(TransformerConfig, BadFieldsNameTheFileAndTheKey) {
  json config = json::parse(kMinimalLlama);
  config.erase("hidden_size");
  std::string message = error_of([&] { parse_transformer_config(config.dump(), "x/config.json"); });
  EXPECT_NE(message.find("x/config.json"), std::string::npos) << message;
  EXPECT_NE(message.find("'hidden_size'"), std::string::npos) << message;

  config = json::parse(kMinimalLlama);
  config["num_key_value_heads"] = 3;
  message = error_of([&] { parse_transformer_config(config.dump(), "x/config.json"); });
  EXPECT_NE(message.find("num_key_value_heads"), std::string::npos) << message;

  message = error_of([&] { parse_transformer_config("{not json", "x/config.json"); });
  EXPECT_NE(message.find("x/config.json"), std::string::npos) << message;
}

TEST(TransformerConfig, UpdatedJsonKeepsUnknownKeysAndWritesShapes) {
  json original = json::parse(kMinimalLlama);
  original["custom_key"] = "kept";
  original["layer_types"] = {"full_attention", "full_attention", "full_attention"};
  TransformerConfig config = parse_transformer_config(original.dump(), "config.json");
  config.num_attention_heads = 1;
  config.num_key_value_heads = 1;
  config.intermediate_size = 12;
  const json updated = json::parse(updated_config_json(original.dump(), config));
  EXPECT_EQ(updated.at("custom_key"), "kept");
  EXPECT_EQ(updated.at("num_attention_heads"), 1);
  EXPECT_EQ(updated.at("num_key_value_heads"), 1);
  EXPECT_EQ(updated.at("intermediate_size"), 12);
  EXPECT_EQ(updated.at("head_dim"), 4);  // explicit, no longer hidden / heads
  EXPECT_EQ(updated.at("layer_types").size(), 1u);
  EXPECT_EQ(parse_transformer_config(updated.dump(), "updated").head_dim, 4);
}

TEST(TransformerConfig, ExpectedTensorsOfAMixtureOfExperts) {
  json mixtral = json::parse(kMinimalLlama);
  mixtral["model_type"] = "mixtral";
  mixtral["num_local_experts"] = 3;
  mixtral["num_experts_per_tok"] = 2;
  mixtral["tie_word_embeddings"] = true;
  const auto tensors = expected_tensors(parse_transformer_config(mixtral.dump(), "config.json"));
  // embed, 2 norms, q/k/v/o, router, 3 x (w1, w2, w3), final norm; no lm_head.
  ASSERT_EQ(tensors.size(), 1u + 2 + 4 + 1 + 9 + 1);
  EXPECT_EQ(tensors.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(tensors.back().name, "model.norm.weight");
  bool found = false;
  for (const auto& tensor : tensors)
    if (tensor.name == "model.layers.0.block_sparse_moe.experts.2.w2.weight") {
      found = true;
      EXPECT_EQ(tensor.shape, (std::vector<int64_t>{8, 16}));
    }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace mcompress
