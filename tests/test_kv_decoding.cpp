// KV-cache decoding against a plain full-sequence forward written here with
// LibTorch operations (no cache, no kernels), and generation's sampling rules.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <string>

#include "mcompress/models/causal_lm.h"
#include "mcompress/models/kv_decoding.h"
#include "mcompress/quantization/quantized_model.h"
#include "mcompress/runtime/quantized_linear.h"

namespace mcompress {
namespace {

using Weights = std::map<std::string, torch::Tensor>;

TransformerConfig small_config(TransformerFamily family) {
  TransformerConfig c;
  c.family = family;
  c.vocab_size = 101;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  switch (family) {
    case TransformerFamily::Llama:
    case TransformerFamily::Mistral:
      c.model_type = "llama";
      c.tie_word_embeddings = true;
      // A short original context puts frequencies in all three llama3 bands.
      c.rope_scaling = Llama3RopeScaling{8.0, 1.0, 4.0, 32};
      c.rope_theta = 500000.0;
      break;
    case TransformerFamily::Qwen2:
      c.model_type = "qwen2";
      c.attention_bias = true;
      break;
    case TransformerFamily::Qwen3:
      c.model_type = "qwen3";
      c.qk_norm = true;
      c.head_dim = 32;  // heads * head_dim != hidden, as in real Qwen3 models
      c.tie_word_embeddings = true;
      break;
    case TransformerFamily::Mixtral:
      c.model_type = "mixtral";
      c.num_local_experts = 4;
      c.num_experts_per_tok = 2;
      break;
  }
  return c;
}

Weights random_weights(const TransformerConfig& c, uint64_t seed) {
  torch::manual_seed(seed);
  Weights w;
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    w[name] = torch::randn({rows, cols}) / std::sqrt(double(cols));
  };
  auto norm = [&](const std::string& name, int64_t size) { w[name] = 1.0 + 0.1 * torch::randn({size}); };
  const int64_t q_rows = c.num_attention_heads * c.head_dim, kv_rows = c.num_key_value_heads * c.head_dim;
  w["model.embed_tokens.weight"] = torch::randn({c.vocab_size, c.hidden_size});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    norm(p + "input_layernorm.weight", c.hidden_size);
    norm(p + "post_attention_layernorm.weight", c.hidden_size);
    matrix(p + "self_attn.q_proj.weight", q_rows, c.hidden_size);
    matrix(p + "self_attn.k_proj.weight", kv_rows, c.hidden_size);
    matrix(p + "self_attn.v_proj.weight", kv_rows, c.hidden_size);
    matrix(p + "self_attn.o_proj.weight", c.hidden_size, q_rows);
    if (c.attention_bias) {
      w[p + "self_attn.q_proj.bias"] = 0.1 * torch::randn({q_rows});
      w[p + "self_attn.k_proj.bias"] = 0.1 * torch::randn({kv_rows});
      w[p + "self_attn.v_proj.bias"] = 0.1 * torch::randn({kv_rows});
    }
    if (c.qk_norm) {
      norm(p + "self_attn.q_norm.weight", c.head_dim);
      norm(p + "self_attn.k_norm.weight", c.head_dim);
    }
    if (c.is_moe()) {
      matrix(p + "block_sparse_moe.gate.weight", c.num_local_experts, c.hidden_size);
      for (int64_t e = 0; e < c.num_local_experts; ++e) {
        const std::string ep = p + "block_sparse_moe.experts." + std::to_string(e) + ".";
        matrix(ep + "w1.weight", c.intermediate_size, c.hidden_size);
        matrix(ep + "w3.weight", c.intermediate_size, c.hidden_size);
        matrix(ep + "w2.weight", c.hidden_size, c.intermediate_size);
      }
    } else {
      matrix(p + "mlp.gate_proj.weight", c.intermediate_size, c.hidden_size);
      matrix(p + "mlp.up_proj.weight", c.intermediate_size, c.hidden_size);
      matrix(p + "mlp.down_proj.weight", c.hidden_size, c.intermediate_size);
    }
  }
  norm("model.norm.weight", c.hidden_size);
  if (!c.tie_word_embeddings) matrix("lm_head.weight", c.vocab_size, c.hidden_size);
  return w;
}

Weights converted(const Weights& weights, c10::ScalarType dtype) {
  Weights result;
  for (const auto& [name, tensor] : weights) result[name] = tensor.to(dtype);
  return result;
}

// ---- The reference: the whole sequence at once, as HF's eager modules compute it ----

torch::Tensor reference_rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  const torch::Tensor x32 = x.to(torch::kFloat);
  const torch::Tensor variance = (x32 * x32).mean({-1}, /*keepdim=*/true);
  return weight * (x32 / torch::sqrt(variance + eps)).to(x.scalar_type());
}

torch::Tensor reference_inverse_frequencies(const TransformerConfig& c) {
  const torch::Tensor exponents = torch::arange(0, c.head_dim, 2, torch::kFloat) / double(c.head_dim);
  torch::Tensor inv_freq = 1.0 / torch::pow(torch::full({}, c.rope_theta, torch::kFloat), exponents);
  if (!c.rope_scaling) return inv_freq;
  const auto& s = *c.rope_scaling;
  const double old_context = double(s.original_max_position_embeddings);
  const double low_wavelen = old_context / s.low_freq_factor, high_wavelen = old_context / s.high_freq_factor;
  const torch::Tensor wavelen = 2 * M_PI / inv_freq;
  torch::Tensor scaled = torch::where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq);
  const torch::Tensor smooth = (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  const torch::Tensor smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
  const torch::Tensor medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
  return torch::where(medium, smoothed, scaled);
}

torch::Tensor reference_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  const torch::Tensor x1 = x.slice(-1, 0, half), x2 = x.slice(-1, half);
  return x * cos + torch::cat({-x2, x1}, -1) * sin;
}

torch::Tensor reference_mlp(const Weights& w, const std::string& gate, const std::string& up, const std::string& down,
                            const torch::Tensor& x) {
  return torch::matmul(torch::silu(torch::matmul(x, w.at(gate).t())) * torch::matmul(x, w.at(up).t()),
                       w.at(down).t());
}

// logits [N, T, vocab] in float32 for ids [N, T].
torch::Tensor reference_forward(const TransformerConfig& c, const Weights& w, const torch::Tensor& ids) {
  torch::NoGradGuard no_grad;
  const int64_t n = ids.size(0), t = ids.size(1);
  const c10::ScalarType dtype = w.at("model.embed_tokens.weight").scalar_type();
  torch::Tensor x = w.at("model.embed_tokens.weight").index_select(0, ids.reshape(-1)).view({n, t, -1});
  const torch::Tensor angles = torch::arange(t, torch::kFloat).unsqueeze(1) * reference_inverse_frequencies(c);
  const torch::Tensor cos = torch::cat({angles, angles}, -1).cos().to(dtype);
  const torch::Tensor sin = torch::cat({angles, angles}, -1).sin().to(dtype);
  const torch::Tensor mask = torch::full({t, t}, -std::numeric_limits<float>::infinity()).triu(1);
  auto bias = [&](const std::string& name) { return w.count(name) ? w.at(name) : torch::zeros({1}, dtype); };
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    const int64_t heads = w.at(p + "self_attn.q_proj.weight").size(0) / c.head_dim;
    const int64_t kv_heads = w.at(p + "self_attn.k_proj.weight").size(0) / c.head_dim;
    const torch::Tensor h = reference_rms_norm(x, w.at(p + "input_layernorm.weight"), c.rms_norm_eps);
    torch::Tensor q = (torch::matmul(h, w.at(p + "self_attn.q_proj.weight").t()) + bias(p + "self_attn.q_proj.bias"))
                          .view({n, t, heads, c.head_dim});
    torch::Tensor k = (torch::matmul(h, w.at(p + "self_attn.k_proj.weight").t()) + bias(p + "self_attn.k_proj.bias"))
                          .view({n, t, kv_heads, c.head_dim});
    torch::Tensor v = (torch::matmul(h, w.at(p + "self_attn.v_proj.weight").t()) + bias(p + "self_attn.v_proj.bias"))
                          .view({n, t, kv_heads, c.head_dim});
    if (c.qk_norm) {
      q = reference_rms_norm(q, w.at(p + "self_attn.q_norm.weight"), c.rms_norm_eps);
      k = reference_rms_norm(k, w.at(p + "self_attn.k_norm.weight"), c.rms_norm_eps);
    }
    q = reference_rope(q.permute({0, 2, 1, 3}), cos, sin);
    k = reference_rope(k.permute({0, 2, 1, 3}), cos, sin).repeat_interleave(heads / kv_heads, 1);
    v = v.permute({0, 2, 1, 3}).repeat_interleave(heads / kv_heads, 1);
    const torch::Tensor scores = torch::matmul(q, k.transpose(2, 3)) / std::sqrt(double(c.head_dim));
    const torch::Tensor probabilities = torch::softmax(scores.to(torch::kFloat) + mask, -1).to(dtype);
    const torch::Tensor attended = torch::matmul(probabilities, v).permute({0, 2, 1, 3}).reshape({n, t, -1});
    x = x + torch::matmul(attended, w.at(p + "self_attn.o_proj.weight").t());
    const torch::Tensor g = reference_rms_norm(x, w.at(p + "post_attention_layernorm.weight"), c.rms_norm_eps);
    if (!c.is_moe()) {
      x = x + reference_mlp(w, p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight", p + "mlp.down_proj.weight", g);
      continue;
    }
    // Every expert on every token, weighted by the renormalised top-k router probabilities (0 elsewhere).
    const torch::Tensor routing = torch::softmax(torch::matmul(g, w.at(p + "block_sparse_moe.gate.weight").t()).to(torch::kFloat), -1);
    const auto [top, chosen] = routing.topk(c.num_experts_per_tok, -1);
    const torch::Tensor gates =
        torch::zeros_like(routing).scatter(-1, chosen, top / top.sum(-1, true)).to(dtype);
    torch::Tensor mixed = torch::zeros_like(x);
    for (int64_t e = 0; e < c.num_local_experts; ++e) {
      const std::string ep = p + "block_sparse_moe.experts." + std::to_string(e) + ".";
      mixed = mixed + gates.select(-1, e).unsqueeze(-1) * reference_mlp(w, ep + "w1.weight", ep + "w3.weight", ep + "w2.weight", g);
    }
    x = x + mixed;
  }
  x = reference_rms_norm(x, w.at("model.norm.weight"), c.rms_norm_eps);
  const torch::Tensor head = w.count("lm_head.weight") ? w.at("lm_head.weight") : w.at("model.embed_tokens.weight");
  return torch::matmul(x, head.t()).to(torch::kFloat);
}

double relative_difference(const torch::Tensor& actual, const torch::Tensor& expected) {
  return (actual - expected).abs().max().item<double>() / expected.abs().max().item<double>();
}

// Prefill of `prefill` tokens, then single-token steps, every step's logits
// against the reference's at the same position.
void expect_cached_decoding_matches(const TransformerConfig& config, const Weights& weights, int64_t prefill,
                                    int64_t steps, int64_t batch, double tolerance) {
  torch::manual_seed(7);
  const torch::Tensor ids = torch::randint(config.vocab_size, {batch, prefill + steps}, torch::kLong);
  const torch::Tensor expected = reference_forward(config, weights, ids);
  KvDecoder decoder(config, weights);
  torch::Tensor logits = decoder.append(ids.narrow(1, 0, prefill));
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{batch, config.vocab_size}));
  EXPECT_EQ(logits.scalar_type(), torch::kFloat);
  EXPECT_LT(relative_difference(logits, expected.select(1, prefill - 1)), tolerance) << "prefill";
  for (int64_t s = 0; s < steps; ++s) {
    logits = decoder.append(ids.narrow(1, prefill + s, 1));
    EXPECT_LT(relative_difference(logits, expected.select(1, prefill + s)), tolerance) << "step " << s;
  }
  EXPECT_EQ(decoder.cached_tokens(), prefill + steps);

  // After reset() the same tokens give the same logits.
  decoder.reset();
  EXPECT_EQ(decoder.cached_tokens(), 0);
  decoder.append(ids.narrow(1, 0, prefill));
  EXPECT_LT(relative_difference(decoder.append(ids.narrow(1, prefill, 1)), expected.select(1, prefill)), tolerance);
}

struct FamilyCase {
  const char* name;
  TransformerFamily family;
};

class EveryFamily : public ::testing::TestWithParam<FamilyCase> {};

TEST_P(EveryFamily, Float32StepsMatchFullForward) {
  const TransformerConfig config = small_config(GetParam().family);
  expect_cached_decoding_matches(config, random_weights(config, 1), 5, 4, 1, 1e-4);
}

TEST_P(EveryFamily, BFloat16StepsMatchFullForwardLoosely) {
  const TransformerConfig config = small_config(GetParam().family);
  // The single-token path keeps activations in float32 where HF rounds each to bfloat16.
  expect_cached_decoding_matches(config, converted(random_weights(config, 2), torch::kBFloat16), 5, 4, 1, 0.03);
}

TEST_P(EveryFamily, Float16StepsMatchFullForwardInFloat32) {
  const TransformerConfig config = small_config(GetParam().family);
  // LibTorch's CPU has no float16 matrix products: the reference runs the float16 weights in float32.
  const Weights half = converted(random_weights(config, 3), torch::kHalf);
  KvDecoder decoder(config, half);
  torch::manual_seed(7);
  const torch::Tensor ids = torch::randint(config.vocab_size, {1, 6}, torch::kLong);
  const torch::Tensor expected = reference_forward(config, converted(half, torch::kFloat), ids);
  EXPECT_LT(relative_difference(decoder.append(ids.narrow(1, 0, 4)), expected.select(1, 3)), 1e-4);
  EXPECT_LT(relative_difference(decoder.append(ids.narrow(1, 4, 1)), expected.select(1, 4)), 1e-4);
  EXPECT_LT(relative_difference(decoder.append(ids.narrow(1, 5, 1)), expected.select(1, 5)), 1e-4);
}

TEST_P(EveryFamily, BatchOfTwoMatchesFullForward) {
  const TransformerConfig config = small_config(GetParam().family);
  expect_cached_decoding_matches(config, random_weights(config, 4), 4, 3, 2, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(KvDecoding, EveryFamily,
                         ::testing::Values(FamilyCase{"llama_llama3_rope", TransformerFamily::Llama},
                                           FamilyCase{"qwen2_biases", TransformerFamily::Qwen2},
                                           FamilyCase{"qwen3_qk_norm", TransformerFamily::Qwen3},
                                           FamilyCase{"mixtral_moe", TransformerFamily::Mixtral}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(KvDecoding, CacheGrowsPastItsFirstCapacity) {
  const TransformerConfig config = small_config(TransformerFamily::Llama);
  expect_cached_decoding_matches(config, random_weights(config, 5), 250, 20, 1, 1e-4);
}

TEST(KvDecoding, PrefillInChunksMatchesOnePrefill) {
  const TransformerConfig config = small_config(TransformerFamily::Qwen2);
  const Weights weights = random_weights(config, 6);
  const torch::Tensor ids = torch::randint(config.vocab_size, {1, 7}, torch::kLong);
  KvDecoder decoder(config, weights);
  decoder.append(ids.narrow(1, 0, 3));
  const torch::Tensor chunked = decoder.append(ids.narrow(1, 3, 4));
  EXPECT_LT(relative_difference(chunked, reference_forward(config, weights, ids).select(1, 6)), 1e-4);
}

TEST(KvDecoding, ShapesComeFromTheWeights) {
  // A pruned model: the second layer has half the MLP and one KV group less.
  TransformerConfig config = small_config(TransformerFamily::Llama);
  Weights weights = random_weights(config, 8);
  const std::string p = "model.layers.1.";
  weights[p + "mlp.gate_proj.weight"] = weights[p + "mlp.gate_proj.weight"].narrow(0, 0, 48).clone();
  weights[p + "mlp.up_proj.weight"] = weights[p + "mlp.up_proj.weight"].narrow(0, 0, 48).clone();
  weights[p + "mlp.down_proj.weight"] = weights[p + "mlp.down_proj.weight"].narrow(1, 0, 48).clone();
  weights[p + "self_attn.q_proj.weight"] = weights[p + "self_attn.q_proj.weight"].narrow(0, 0, 32).clone();
  weights[p + "self_attn.k_proj.weight"] = weights[p + "self_attn.k_proj.weight"].narrow(0, 0, 16).clone();
  weights[p + "self_attn.v_proj.weight"] = weights[p + "self_attn.v_proj.weight"].narrow(0, 0, 16).clone();
  weights[p + "self_attn.o_proj.weight"] = weights[p + "self_attn.o_proj.weight"].narrow(1, 0, 32).clone();
  expect_cached_decoding_matches(config, weights, 3, 3, 1, 1e-4);
  // The reported config is the first layer's shapes, the rest from the tensors.
  KvDecoder decoder(config, weights);
  EXPECT_EQ(decoder.config().num_hidden_layers, 2);
  EXPECT_EQ(decoder.config().vocab_size, 101);
}

TEST(KvDecoding, RejectsMissingWeightsAndBadIds) {
  const TransformerConfig config = small_config(TransformerFamily::Llama);
  Weights weights = random_weights(config, 9);
  Weights missing = weights;
  missing.erase("model.layers.1.self_attn.k_proj.weight");
  EXPECT_THROW(KvDecoder(config, missing), std::exception);
  KvDecoder decoder(config, weights);
  EXPECT_THROW(decoder.append(torch::full({1, 2}, config.vocab_size, torch::kLong)), std::exception);
  EXPECT_THROW(decoder.append(torch::zeros({3}, torch::kLong)), std::exception);
}

TEST(KvDecoding, ModuleConstructorMatchesTheModulesForward) {
  // Qwen3 (q/k norm, head_dim apart from hidden / heads) as build_causal_lm makes it from config.json.
  const std::string config_json = R"({"model_type": "qwen3", "vocab_size": 101, "hidden_size": 64,
    "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "head_dim": 32, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true,
    "max_position_embeddings": 128, "torch_dtype": "float32"})";
  const TransformerConfig config = small_config(TransformerFamily::Qwen3);
  const Weights weights = random_weights(config, 12);
  torch::jit::Module model = build_causal_lm(config, config_json, weights, torch::kFloat);
  const torch::Tensor ids = torch::randint(config.vocab_size, {1, 6}, torch::kLong);
  const torch::Tensor expected = model.forward({ids}).toTensor();
  EXPECT_LT(relative_difference(expected, reference_forward(config, weights, ids)), 1e-4);
  KvDecoder decoder(model);
  EXPECT_EQ(decoder.config().head_dim, 32);
  EXPECT_LT(relative_difference(decoder.append(ids.narrow(1, 0, 4)), expected.select(1, 3)), 1e-4);
  EXPECT_LT(relative_difference(decoder.append(ids.narrow(1, 4, 1)), expected.select(1, 4)), 1e-4);
  EXPECT_LT(relative_difference(decoder.append(ids.narrow(1, 5, 1)), expected.select(1, 5)), 1e-4);
}

// ---- quantized weights ----

// Every matrix of `weights` (embeddings and output head included) quantized
// to MLX's format: `quantized` gets them by module path, `dequantized` the
// float weights they stand for (the reference computes with those).
struct QuantizedCase {
  Weights floating;                                          // norms and biases
  std::map<std::string, runtime::QuantizedWeight> quantized;  // by module path
  Weights dequantized;                                       // the whole model in float
};

QuantizedCase quantized_case(const Weights& weights, int bits, int group_size) {
  QuantizedCase c;
  for (const auto& [name, tensor] : weights) {
    const bool matrix = tensor.dim() == 2 && name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
    if (!matrix) {
      c.floating[name] = tensor;
      c.dequantized[name] = tensor;
      continue;
    }
    const runtime::QuantizedWeight q = runtime::quantize_weight(tensor, bits, group_size);
    c.quantized[name.substr(0, name.size() - 7)] = q;
    c.dequantized[name] = runtime::dequantize_weight(q.packed, q.scales, q.biases, bits, group_size);
  }
  return c;
}

TEST_P(EveryFamily, QuantizedWeightsRunAsTheValuesTheyStandFor) {
  const TransformerConfig config = small_config(GetParam().family);
  for (const int bits : {3, 4, 8}) {
    const QuantizedCase q = quantized_case(random_weights(config, 20 + uint64_t(bits)), bits, 32);
    torch::manual_seed(7);
    const torch::Tensor ids = torch::randint(config.vocab_size, {1, 8}, torch::kLong);
    const torch::Tensor expected = reference_forward(config, q.dequantized, ids);
    KvDecoder decoder(config, q.floating, q.quantized);
    decoder.set_int8_activations(false);  // the exact kernels
    EXPECT_EQ(decoder.config().vocab_size, config.vocab_size);
    EXPECT_EQ(decoder.config().tie_word_embeddings, config.tie_word_embeddings);
    // Prefill through the runtime's batch kernels, then single-token steps.
    EXPECT_LT(relative_difference(decoder.append(ids.narrow(1, 0, 5)), expected.select(1, 4)), 1e-4) << bits;
    for (int64_t position = 5; position < 8; ++position)
      EXPECT_LT(relative_difference(decoder.append(ids.narrow(1, position, 1)), expected.select(1, position)), 1e-4)
          << bits << " bits, position " << position;
  }
}

TEST(KvDecoding, LongQuantizedPrefillTakesTheInt8PathWithinItsError) {
  // From 64 rows on the runtime quantizes activations to int8 (about 1% RMS error per product).
  const TransformerConfig config = small_config(TransformerFamily::Llama);
  const QuantizedCase q = quantized_case(random_weights(config, 30), 4, 32);
  const torch::Tensor ids = torch::randint(config.vocab_size, {1, 80}, torch::kLong);
  const torch::Tensor expected = reference_forward(config, q.dequantized, ids).select(1, 79);
  KvDecoder decoder(config, q.floating, q.quantized);
  decoder.set_int8_activations(false);
  const torch::Tensor logits = decoder.append(ids);
  const double rms_error = (logits - expected).pow(2).mean().sqrt().item<double>();
  EXPECT_LT(rms_error / expected.pow(2).mean().sqrt().item<double>(), 0.05);
  EXPECT_EQ(logits.argmax(-1).item<int64_t>(), expected.argmax(-1).item<int64_t>());
}

TEST(KvDecoding, ModuleWithQuantizedLayersDecodesAsItsForward) {
  // An untied Qwen2 (biases, lm_head of its own) whose linear layers mlx_quant's quantizer replaced.
  const std::string config_json = R"({"model_type": "qwen2", "vocab_size": 101, "hidden_size": 64,
    "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false,
    "max_position_embeddings": 128, "torch_dtype": "float32"})";
  const TransformerConfig config = small_config(TransformerFamily::Qwen2);
  torch::jit::Module model = build_causal_lm(config, config_json, random_weights(config, 13), torch::kFloat);
  std::vector<LayerQuantization> plan;
  for (const LinearLayer& layer : find_linear_layers(model)) plan.push_back({layer.path, 4, 32});
  ASSERT_FALSE(plan.empty());
  QuantizedModel quantized = quantize_linear_layers(model, plan, {});
  const torch::Tensor ids = torch::randint(config.vocab_size, {1, 6}, torch::kLong);
  const torch::Tensor expected = quantized.model.forward({ids}).toTensor();
  EXPECT_TRUE(decodable(model));
  EXPECT_TRUE(decodable(quantized.model));
  KvDecoder decoder(quantized.model);
  decoder.set_int8_activations(false);
  EXPECT_LT(relative_difference(decoder.append(ids.narrow(1, 0, 4)), expected.select(1, 3)), 1e-4);
  EXPECT_LT(relative_difference(decoder.append(ids.narrow(1, 4, 1)), expected.select(1, 4)), 1e-4);
  EXPECT_LT(relative_difference(decoder.append(ids.narrow(1, 5, 1)), expected.select(1, 5)), 1e-4);
}

TEST_P(EveryFamily, Int8ActivationsStayCloseToTheExactProducts) {
  // The default: int8 activations in every quantized product, prefill and steps (about 1% per product).
  const TransformerConfig config = small_config(GetParam().family);
  for (const int bits : {4, 8}) {
    const QuantizedCase q = quantized_case(random_weights(config, 40 + uint64_t(bits)), bits, 32);
    torch::manual_seed(9);
    const torch::Tensor ids = torch::randint(config.vocab_size, {1, 8}, torch::kLong);
    const torch::Tensor expected = reference_forward(config, q.dequantized, ids);
    KvDecoder decoder(config, q.floating, q.quantized);
    ASSERT_TRUE(decoder.int8_activations());
    auto rms_error = [](const torch::Tensor& actual, const torch::Tensor& exact) {
      return (actual - exact).pow(2).mean().sqrt().item<double>() / exact.pow(2).mean().sqrt().item<double>();
    };
    EXPECT_LT(rms_error(decoder.append(ids.narrow(1, 0, 5)), expected.select(1, 4)), 0.05) << bits;
    for (int64_t position = 5; position < 8; ++position)
      EXPECT_LT(rms_error(decoder.append(ids.narrow(1, position, 1)), expected.select(1, position)), 0.05)
          << bits << " bits, position " << position;
  }
}

TEST(KvDecoding, RejectsAQuantizedLayerThatIsNotAMatrix) {
  const TransformerConfig config = small_config(TransformerFamily::Llama);
  QuantizedCase q = quantized_case(random_weights(config, 31), 4, 32);
  runtime::QuantizedWeight& broken = q.quantized.at("model.layers.0.mlp.up_proj");
  broken.packed = broken.packed.view(-1);
  EXPECT_THROW(KvDecoder(config, q.floating, q.quantized), std::exception);
}

// ---- generate ----

class Generation : public ::testing::Test {
 protected:
  TransformerConfig config = small_config(TransformerFamily::Llama);
  KvDecoder decoder{config, random_weights(config, 11)};
  std::vector<int64_t> prompt{3, 14, 15, 92, 65};

  GenerationResult run(GenerationOptions options) { return generate(decoder, prompt, options); }
};

TEST_F(Generation, GreedyIsDeterministicAndFollowsTheArgmax) {
  GenerationOptions options;
  options.max_new_tokens = 12;
  const GenerationResult first = run(options), second = run(options);
  ASSERT_EQ(first.tokens.size(), 12u);
  EXPECT_EQ(first.tokens, second.tokens);
  EXPECT_FALSE(first.stopped);
  EXPECT_GT(first.prefill_seconds, 0.0);
  EXPECT_GE(first.decode_seconds, 0.0);
  // Each token is the argmax of the full forward over the prompt and the tokens before it.
  std::vector<int64_t> sequence = prompt;
  sequence.insert(sequence.end(), first.tokens.begin(), first.tokens.end() - 1);
  const torch::Tensor logits =
      reference_forward(config, random_weights(config, 11), torch::tensor(sequence, torch::kLong).unsqueeze(0));
  for (size_t i = 0; i < first.tokens.size(); ++i)
    EXPECT_EQ(logits[0][int64_t(prompt.size() + i - 1)].argmax().item<int64_t>(), first.tokens[i]) << i;
}

TEST_F(Generation, SameSeedSameSample) {
  GenerationOptions options;
  options.max_new_tokens = 16;
  options.temperature = 1.5;
  options.top_k = 40;
  options.top_p = 0.95;
  options.seed = 1234;
  const GenerationResult first = run(options), second = run(options);
  EXPECT_EQ(first.tokens, second.tokens);
  EXPECT_EQ(first.tokens.size(), 16u);
  for (int64_t token : first.tokens) EXPECT_TRUE(token >= 0 && token < config.vocab_size);
}

TEST_F(Generation, StopTokenEndsGeneration) {
  GenerationOptions options;
  options.max_new_tokens = 12;
  const std::vector<int64_t> greedy = run(options).tokens;
  options.stop_tokens = {greedy[2]};
  const GenerationResult stopped = run(options);
  EXPECT_TRUE(stopped.stopped);
  const auto first = std::find(greedy.begin(), greedy.end(), greedy[2]);
  EXPECT_EQ(stopped.tokens, std::vector<int64_t>(greedy.begin(), first + 1));
}

TEST_F(Generation, TopKOfOneAndTinyTopPAreGreedy) {
  GenerationOptions greedy;
  greedy.max_new_tokens = 10;
  const std::vector<int64_t> expected = run(greedy).tokens;
  GenerationOptions top_k = greedy;
  top_k.temperature = 2.0;
  top_k.top_k = 1;
  top_k.seed = 5;
  EXPECT_EQ(run(top_k).tokens, expected);
  GenerationOptions top_p = greedy;
  top_p.temperature = 2.0;
  top_p.top_p = 1e-6;
  top_p.seed = 6;
  EXPECT_EQ(run(top_p).tokens, expected);
}

TEST_F(Generation, RejectsBadOptions) {
  GenerationOptions options;
  options.top_p = 0.0;
  EXPECT_THROW(run(options), std::exception);
  options = {};
  options.temperature = -1.0;
  EXPECT_THROW(run(options), std::exception);
  EXPECT_THROW(generate(decoder, {}, GenerationOptions{}), std::exception);
}

}  // namespace
}  // namespace mcompress
