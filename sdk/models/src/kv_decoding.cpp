#include "mcompress/models/kv_decoding.h"

#include <ATen/Parallel.h>
#include <torch/script.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>

#include "gemv_kernels.h"
#include "mcompress/models/blas_threads.h"
#include "mcompress/models/causal_lm.h"
#include "mcompress/models/quantized_layer.h"
#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

using Weights = std::map<std::string, torch::Tensor>;
using QuantizedWeights = std::map<std::string, runtime::QuantizedWeight>;

kernels::WeightType kernel_type(c10::ScalarType type) {
  switch (type) {
    case torch::kFloat:
      return kernels::WeightType::Float32;
    case torch::kBFloat16:
      return kernels::WeightType::BFloat16;
    case torch::kHalf:
      return kernels::WeightType::Float16;
    default:
      throw Error(fmt::format("KV decoding runs float32, bfloat16 or float16 weights, not {}", c10::toString(type)));
  }
}

torch::Tensor required(const Weights& weights, const std::string& name) {
  const auto found = weights.find(name);
  if (found == weights.end()) throw Error(fmt::format("the model has no tensor '{}'", name));
  return found->second;
}

torch::Tensor optional_weight(const Weights& weights, const std::string& name) {
  const auto found = weights.find(name);
  return found == weights.end() ? torch::Tensor() : found->second;
}

std::vector<float> as_floats(const torch::Tensor& tensor) {
  if (!tensor.defined()) return {};
  const torch::Tensor flat = tensor.detach().to(torch::kFloat).contiguous().view(-1);
  return std::vector<float>(flat.data_ptr<float>(), flat.data_ptr<float>() + flat.numel());
}

// A weight matrix [rows, cols] the kernels can stream: the model's own tensor
// when it is already contiguous in a kernel dtype (never copied), else a
// copy; or a weight in MLX's quantized format, run by the runtime's kernels.
struct Linear {
  torch::Tensor weight;
  std::optional<runtime::QuantizedWeight> quantized;
  torch::Tensor bias;
  std::vector<float> bias_floats;
  kernels::WeightType type = kernels::WeightType::Float32;

  Linear() = default;
  Linear(torch::Tensor w, torch::Tensor b, c10::ScalarType compute_dtype, const std::string& name) {
    if (w.dim() != 2) throw Error(fmt::format("'{}' must be a matrix, has {} dimensions", name, w.dim()));
    w = w.detach();
    if (w.scalar_type() != torch::kFloat && w.scalar_type() != torch::kBFloat16 && w.scalar_type() != torch::kHalf)
      w = w.to(compute_dtype);
    weight = w.is_contiguous() ? w : w.contiguous();
    type = kernel_type(weight.scalar_type());
    set_bias(b, name);
  }
  Linear(const runtime::QuantizedWeight& q, torch::Tensor b, const std::string& name) : quantized(q) {
    if (q.packed.dim() != 2 || q.scales.dim() != 2 || q.packed.size(0) != q.scales.size(0))
      throw Error(fmt::format("'{}': packed weight and scales must be matrices with one row per output", name));
    set_bias(b, name);
  }
  void set_bias(torch::Tensor b, const std::string& name) {
    if (!b.defined()) return;
    if (b.dim() != 1 || b.size(0) != rows())
      throw Error(fmt::format("the bias of '{}' must have {} values", name, rows()));
    bias = b.detach();
    bias_floats = as_floats(bias);
  }
  bool defined() const { return weight.defined() || quantized.has_value(); }
  int64_t rows() const { return quantized ? quantized->packed.size(0) : weight.size(0); }
  int64_t cols() const { return quantized ? quantized->scales.size(1) * quantized->group_size : weight.size(1); }

  // y = W x (+ b) for one float32 vector.
  void apply(const float* x, float* y, bool int8) const {
    if (quantized) {
      const torch::Tensor input = torch::from_blob(const_cast<float*>(x), {1, cols()}, torch::kFloat);
      const torch::Tensor output = torch::from_blob(y, {1, rows()}, torch::kFloat);
      const auto& q = *quantized;
      output.copy_(int8 ? runtime::quantized_linear_int8(input, q.packed, q.scales, q.biases, c10::nullopt, q.bits,
                                                         q.group_size)
                        : runtime::quantized_linear(input, q.packed, q.scales, q.biases, c10::nullopt, q.bits,
                                                    q.group_size));
    } else {
      kernels::gemv(type, weight.data_ptr(), rows(), cols(), cols(), x, y);
    }
    for (size_t i = 0; i < bias_floats.size(); ++i) y[i] += bias_floats[i];
  }
  // The same for a batch of rows in the compute dtype, through LibTorch (or
  // the runtime's batched kernels).
  torch::Tensor apply(const torch::Tensor& x, bool int8) const {
    const torch::Tensor b = bias.defined() ? bias.to(x.scalar_type()) : torch::Tensor();
    if (quantized) {
      const c10::optional<torch::Tensor> optional_bias = b.defined() ? c10::optional<torch::Tensor>(b) : c10::nullopt;
      const auto& q = *quantized;
      return int8 ? runtime::quantized_linear_int8(x, q.packed, q.scales, q.biases, optional_bias, q.bits, q.group_size)
                  : runtime::quantized_linear(x, q.packed, q.scales, q.biases, optional_bias, q.bits, q.group_size);
    }
    return torch::linear(x, weight.to(x.scalar_type()), b);
  }
};

struct FeedForward {
  Linear gate, up, down;  // down(silu(gate x) * up x)
};

struct Layer {
  torch::Tensor input_norm, post_norm, q_norm, k_norm;
  std::vector<float> input_norm_floats, post_norm_floats, q_norm_floats, k_norm_floats;
  Linear q, k, v, o;
  FeedForward mlp;                  // dense layers
  Linear router;                    // Mixtral: experts' scores
  std::vector<FeedForward> experts;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  // float32 [batch, kv_heads, capacity, head_dim]: positions [0, length) are valid.
  torch::Tensor key_cache, value_cache;
};

// float32 scratch of the single-token path, allocated once and grown only.
struct Scratch {
  std::vector<float> hidden, normed, q, k, v, attended, projected, gate, up, moe, router, scores, cos, sin;
};

void rms_norm(const float* x, const float* weight, int64_t size, double eps, float* out) {
  double squares = 0.0;
  for (int64_t i = 0; i < size; ++i) squares += double(x[i]) * x[i];
  const float scale = float(1.0 / std::sqrt(squares / double(size) + eps));
  for (int64_t i = 0; i < size; ++i) out[i] = x[i] * scale * weight[i];
}

// HF's RMSNorm: in float32, cast back, times the weight in the input's dtype.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  const torch::Tensor x32 = x.to(torch::kFloat);
  const torch::Tensor normed = x32 * torch::rsqrt(x32.pow(2).mean(-1, true) + eps);
  return weight.to(x.scalar_type()) * normed.to(x.scalar_type());
}

torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

float silu(float x) { return x / (1.0f + std::exp(-x)); }

// inv_freq = theta^(-2i/d), rescaled by wavelength for `llama3` rope scaling
// (HF's _compute_llama3_parameters).
std::vector<float> inverse_frequencies(const TransformerConfig& config, int64_t head_dim) {
  std::vector<float> result(size_t(head_dim / 2));
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    const float exponent = float(2 * i) / float(head_dim);
    result[size_t(i)] = 1.0f / std::pow(float(config.rope_theta), exponent);
  }
  if (!config.rope_scaling) return result;
  const Llama3RopeScaling& s = *config.rope_scaling;
  const double old_context = double(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_context / s.low_freq_factor;
  const double high_freq_wavelen = old_context / s.high_freq_factor;
  for (float& frequency : result) {
    const double wavelen = 2.0 * M_PI / frequency;
    double scaled = wavelen > low_freq_wavelen ? frequency / s.factor : frequency;
    const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    if (medium) {
      const double smooth = (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      scaled = (1.0 - smooth) * scaled / s.factor + smooth * scaled;
    }
    frequency = float(scaled);
  }
  return result;
}

int64_t count_layers(const Weights& weights) {
  int64_t layers = 0;
  while (weights.count(fmt::format("model.layers.{}.input_layernorm.weight", layers))) ++layers;
  return layers;
}

}  // namespace

struct KvDecoder::State {
  TransformerConfig config;
  Weights weights;  // keeps every tensor the decoder points into alive
  c10::ScalarType dtype = torch::kFloat;
  int64_t hidden = 0;
  int64_t head_dim = 0;
  torch::Tensor embed;  // floating [vocabulary, hidden], or undefined when quantized
  std::optional<runtime::QuantizedWeight> quantized_embed;
  kernels::WeightType embed_type = kernels::WeightType::Float32;
  Linear lm_head;
  torch::Tensor final_norm;
  std::vector<float> final_norm_floats;
  std::vector<Layer> layers;
  std::vector<float> inv_freq;
  torch::Tensor inv_freq_tensor;
  int64_t batch = 0;
  int64_t length = 0;
  int64_t capacity = 0;
  bool int8 = true;  // set_int8_activations
  Scratch scratch;

  void ensure_cache(int64_t batch_size, int64_t needed);
  int64_t vocabulary() const { return quantized_embed ? quantized_embed->packed.size(0) : embed.size(0); }
  torch::Tensor embedding(const torch::Tensor& ids) const;
  torch::Tensor append_one_token(int64_t token);
  torch::Tensor append_batch(const torch::Tensor& ids);
  void single_token_feed_forward(const Layer& layer, const FeedForward& ffn, const float* x, float* out);
  torch::Tensor batch_feed_forward(const Layer& layer, const torch::Tensor& x) const;
};

namespace {

// The model's quantized layers' weights by module path.
QuantizedWeights quantized_weights(const torch::jit::Module& model) {
  QuantizedWeights quantized;
  for (const QuantizedLayerView& layer : quantized_layers(model))
    quantized[layer.path] = {layer.packed, layer.scales, layer.biases, layer.bits, layer.group_size};
  return quantized;
}

}  // namespace

KvDecoder::KvDecoder(const torch::jit::Module& model)
    : KvDecoder(causal_lm_config(model), causal_lm_weights(model), quantized_weights(model)) {}

KvDecoder::KvDecoder(const TransformerConfig& config, std::map<std::string, torch::Tensor> weights,
                     std::map<std::string, runtime::QuantizedWeight> quantized)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.config = config;
  s.weights = std::move(weights);
  const Weights& w = s.weights;

  const auto quantized_embed = quantized.find("model.embed_tokens");
  if (quantized_embed != quantized.end()) {
    s.quantized_embed = quantized_embed->second;
    s.dtype = s.quantized_embed->scales.scalar_type();
    s.hidden = Linear(*s.quantized_embed, {}, "model.embed_tokens").cols();
  } else {
    s.embed = required(w, "model.embed_tokens.weight").detach();
    if (s.embed.dim() != 2) throw Error("'model.embed_tokens.weight' must be a matrix [vocabulary, hidden]");
    if (!s.embed.is_contiguous()) s.embed = s.embed.contiguous();
    s.embed_type = kernel_type(s.embed.scalar_type());
    s.dtype = s.embed.scalar_type();
    s.hidden = s.embed.size(1);
  }
  // LibTorch's CPU matrix products lack float16: several tokens at once run in float32 then.
  if (s.dtype == torch::kHalf) s.dtype = torch::kFloat;
  s.head_dim = config.head_dim > 0 ? config.head_dim
                                   : (config.num_attention_heads > 0 ? s.hidden / config.num_attention_heads : 0);
  if (s.head_dim <= 0 || s.head_dim % 2 != 0)
    throw Error(fmt::format("head_dim must be a positive even number, is {}", s.head_dim));

  // A floating `<path>.weight`, else the quantized weight of `path`.
  auto linear = [&](const std::string& path, bool with_bias) {
    const torch::Tensor bias = with_bias ? optional_weight(w, path + ".bias") : torch::Tensor();
    const auto q = quantized.find(path);
    if (q != quantized.end() && !w.count(path + ".weight")) return Linear(q->second, bias, path);
    return Linear(required(w, path + ".weight"), bias, s.dtype, path + ".weight");
  };
  const bool has_head = w.count("lm_head.weight") || quantized.count("lm_head");
  s.lm_head = has_head           ? linear("lm_head", false)
              : s.quantized_embed ? Linear(*s.quantized_embed, {}, "model.embed_tokens")
                                 : Linear(s.embed, {}, s.dtype, "lm_head.weight");
  s.final_norm = required(w, "model.norm.weight").detach();
  s.final_norm_floats = as_floats(s.final_norm);

  const int64_t layer_count = count_layers(w);
  if (layer_count == 0) throw Error("the model has no layers ('model.layers.0.input_layernorm.weight' is missing)");
  for (int64_t i = 0; i < layer_count; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    Layer layer;
    auto layer_linear = [&](const std::string& name, bool with_bias) { return linear(p + name, with_bias); };
    layer.input_norm = required(w, p + "input_layernorm.weight").detach();
    layer.post_norm = required(w, p + "post_attention_layernorm.weight").detach();
    layer.q = layer_linear("self_attn.q_proj", true);
    layer.k = layer_linear("self_attn.k_proj", true);
    layer.v = layer_linear("self_attn.v_proj", true);
    layer.o = layer_linear("self_attn.o_proj", true);
    if (layer.q.rows() % s.head_dim != 0 || layer.k.rows() % s.head_dim != 0 || layer.v.rows() != layer.k.rows())
      throw Error(fmt::format("layer {}: q/k/v rows ({}, {}, {}) are not whole heads of {}", i, layer.q.rows(),
                              layer.k.rows(), layer.v.rows(), s.head_dim));
    layer.heads = layer.q.rows() / s.head_dim;
    layer.kv_heads = layer.k.rows() / s.head_dim;
    if (layer.kv_heads == 0 || layer.heads % layer.kv_heads != 0)
      throw Error(fmt::format("layer {}: {} query heads do not share {} key/value heads evenly", i, layer.heads,
                              layer.kv_heads));
    if (layer.o.cols() != layer.q.rows() || layer.o.rows() != s.hidden || layer.q.cols() != s.hidden)
      throw Error(fmt::format("layer {}: attention projections disagree with hidden size {}", i, s.hidden));
    layer.q_norm = optional_weight(w, p + "self_attn.q_norm.weight");
    layer.k_norm = optional_weight(w, p + "self_attn.k_norm.weight");
    if (layer.q_norm.defined() != layer.k_norm.defined())
      throw Error(fmt::format("layer {}: q_norm and k_norm come together", i));
    if (layer.q_norm.defined() && (layer.q_norm.numel() != s.head_dim || layer.k_norm.numel() != s.head_dim))
      throw Error(fmt::format("layer {}: q_norm/k_norm must have head_dim ({}) values", i, s.head_dim));
    const std::string router = p + "block_sparse_moe.gate";
    if (w.count(router + ".weight") || quantized.count(router)) {
      layer.router = linear(router, false);
      for (int64_t e = 0; e < layer.router.rows(); ++e) {
        // w1 = gate, w3 = up, w2 = down.
        const std::string expert = fmt::format("block_sparse_moe.experts.{}.", e);
        layer.experts.push_back(
            {layer_linear(expert + "w1", false), layer_linear(expert + "w3", false), layer_linear(expert + "w2", false)});
      }
    } else {
      layer.mlp = {layer_linear("mlp.gate_proj", false), layer_linear("mlp.up_proj", false),
                   layer_linear("mlp.down_proj", false)};
    }
    layer.input_norm_floats = as_floats(layer.input_norm);
    layer.post_norm_floats = as_floats(layer.post_norm);
    layer.q_norm_floats = as_floats(layer.q_norm);
    layer.k_norm_floats = as_floats(layer.k_norm);
    s.layers.push_back(std::move(layer));
  }

  // The config as the tensors are now (pruned models differ from config.json).
  const Layer& first = s.layers.front();
  s.config.hidden_size = s.hidden;
  s.config.vocab_size = s.lm_head.rows();
  s.config.num_hidden_layers = layer_count;
  s.config.head_dim = s.head_dim;
  s.config.num_attention_heads = first.heads;
  s.config.num_key_value_heads = first.kv_heads;
  s.config.tie_word_embeddings = !has_head;
  s.config.attention_bias = first.q.bias.defined();
  s.config.qk_norm = first.q_norm.defined();
  if (first.router.defined()) {
    s.config.num_local_experts = first.router.rows();
    s.config.intermediate_size = first.experts.front().gate.rows();
    if (s.config.num_experts_per_tok <= 0) throw Error("a Mixtral model needs num_experts_per_tok");
    s.config.num_experts_per_tok = std::min(s.config.num_experts_per_tok, s.config.num_local_experts);
  } else {
    s.config.num_local_experts = 0;
    s.config.intermediate_size = first.mlp.gate.rows();
  }

  s.inv_freq = inverse_frequencies(s.config, s.head_dim);
  s.inv_freq_tensor = torch::from_blob(s.inv_freq.data(), {int64_t(s.inv_freq.size())}, torch::kFloat).clone();
}

bool decodable(const torch::jit::Module& model) {
  if (!is_causal_lm(model)) return false;
  try {
    KvDecoder decoder(model);  // shares the tensors: cheap
    return true;
  } catch (const std::exception&) {
    return false;  // tensors frozen into constants, or layers it cannot read
  }
}

KvDecoder::~KvDecoder() = default;
KvDecoder::KvDecoder(KvDecoder&&) noexcept = default;
KvDecoder& KvDecoder::operator=(KvDecoder&&) noexcept = default;

void KvDecoder::reset() { state_->length = 0; }
int64_t KvDecoder::cached_tokens() const { return state_->length; }
const TransformerConfig& KvDecoder::config() const { return state_->config; }
void KvDecoder::set_int8_activations(bool enabled) { state_->int8 = enabled; }
bool KvDecoder::int8_activations() const { return state_->int8; }

void KvDecoder::State::ensure_cache(int64_t batch_size, int64_t needed) {
  if (batch_size != batch) {
    // A new batch size only at the start of a sequence: drop the old buffers.
    batch = batch_size;
    capacity = 0;
  }
  if (needed <= capacity) return;
  // Doubling keeps the copies of a long generation to a constant per token.
  const int64_t grown = std::max<int64_t>({needed, 2 * capacity, 256});
  for (Layer& layer : layers) {
    const auto options = torch::TensorOptions().dtype(torch::kFloat);
    torch::Tensor keys = torch::empty({batch, layer.kv_heads, grown, head_dim}, options);
    torch::Tensor values = torch::empty({batch, layer.kv_heads, grown, head_dim}, options);
    if (length > 0 && capacity > 0) {
      keys.narrow(2, 0, length).copy_(layer.key_cache.narrow(2, 0, length));
      values.narrow(2, 0, length).copy_(layer.value_cache.narrow(2, 0, length));
    }
    layer.key_cache = keys;
    layer.value_cache = values;
  }
  capacity = grown;
}

torch::Tensor KvDecoder::append(const torch::Tensor& ids) {
  State& s = *state_;
  if (ids.dim() != 2 || ids.size(0) == 0 || ids.size(1) == 0)
    throw Error(fmt::format("token ids must be [N, T] with N, T > 0, got {} dimensions", ids.dim()));
  if (s.length > 0 && ids.size(0) != s.batch)
    throw Error(fmt::format("the cache holds a batch of {}, the new tokens a batch of {}", s.batch, ids.size(0)));
  const torch::Tensor tokens = ids.to(torch::kLong).contiguous();
  const int64_t vocabulary = s.vocabulary();
  const int64_t smallest = tokens.min().item<int64_t>(), largest = tokens.max().item<int64_t>();
  if (smallest < 0 || largest >= vocabulary)
    throw Error(fmt::format("token id {} is outside the vocabulary of {}", smallest < 0 ? smallest : largest, vocabulary));
  s.ensure_cache(tokens.size(0), s.length + tokens.size(1));
  torch::NoGradGuard no_grad;
  if (tokens.numel() == 1) return s.append_one_token(tokens.data_ptr<int64_t>()[0]);
  return s.append_batch(tokens);
}

// ---- One token, batch 1: float32 vectors through the streaming kernels --------

void KvDecoder::State::single_token_feed_forward(const Layer& layer, const FeedForward& ffn, const float* x,
                                                 float* out) {
  const int64_t intermediate = ffn.gate.rows();
  std::vector<float>& gate = scratch.gate;
  std::vector<float>& up = scratch.up;
  if (int64_t(gate.size()) < intermediate) {
    gate.resize(size_t(intermediate));
    up.resize(size_t(intermediate));
  }
  ffn.gate.apply(x, gate.data(), int8);
  ffn.up.apply(x, up.data(), int8);
  for (int64_t i = 0; i < intermediate; ++i) gate[size_t(i)] = silu(gate[size_t(i)]) * up[size_t(i)];
  ffn.down.apply(gate.data(), out, int8);
}

torch::Tensor KvDecoder::State::append_one_token(int64_t token) {
  Scratch& m = scratch;
  const int64_t position = length;
  const int64_t half = head_dim / 2;
  auto fit = [](std::vector<float>& buffer, int64_t size) {
    if (int64_t(buffer.size()) < size) buffer.resize(size_t(size));
  };
  fit(m.hidden, hidden);
  fit(m.normed, hidden);
  fit(m.projected, hidden);
  fit(m.moe, hidden);
  fit(m.cos, half);
  fit(m.sin, half);
  for (int64_t i = 0; i < half; ++i) {
    // As HF: the angle in float32, then its cosine and sine.
    const float angle = float(position) * inv_freq[size_t(i)];
    m.cos[size_t(i)] = std::cos(angle);
    m.sin[size_t(i)] = std::sin(angle);
  }
  auto rotate = [&](float* x) {
    for (int64_t i = 0; i < half; ++i) {
      const float first = x[i], second = x[i + half];
      x[i] = first * m.cos[size_t(i)] - second * m.sin[size_t(i)];
      x[i + half] = second * m.cos[size_t(i)] + first * m.sin[size_t(i)];
    }
  };

  float* h = m.hidden.data();
  if (quantized_embed) {
    const runtime::QuantizedWeight& e = *quantized_embed;
    const torch::Tensor row = runtime::dequantize_weight(e.packed.narrow(0, token, 1), e.scales.narrow(0, token, 1),
                                                         e.biases.narrow(0, token, 1), e.bits, e.group_size);
    std::copy(row.data_ptr<float>(), row.data_ptr<float>() + hidden, h);
  } else {
    kernels::widen(embed_type, static_cast<const char*>(embed.data_ptr()) + token * hidden * embed.element_size(),
                   hidden, h);
  }
  const double eps = config.rms_norm_eps;
  const float scale = float(1.0 / std::sqrt(double(head_dim)));
  for (Layer& layer : layers) {
    fit(m.q, layer.heads * head_dim);
    fit(m.k, layer.kv_heads * head_dim);
    fit(m.v, layer.kv_heads * head_dim);
    fit(m.attended, layer.heads * head_dim);
    fit(m.scores, layer.heads * capacity);

    rms_norm(h, layer.input_norm_floats.data(), hidden, eps, m.normed.data());
    layer.q.apply(m.normed.data(), m.q.data(), int8);
    layer.k.apply(m.normed.data(), m.k.data(), int8);
    layer.v.apply(m.normed.data(), m.v.data(), int8);
    for (int64_t head = 0; head < layer.heads; ++head) {
      float* q = m.q.data() + head * head_dim;
      if (!layer.q_norm_floats.empty()) rms_norm(q, layer.q_norm_floats.data(), head_dim, eps, q);
      rotate(q);
    }
    float* keys = layer.key_cache.data_ptr<float>();
    float* values = layer.value_cache.data_ptr<float>();
    for (int64_t head = 0; head < layer.kv_heads; ++head) {
      float* k = m.k.data() + head * head_dim;
      if (!layer.k_norm_floats.empty()) rms_norm(k, layer.k_norm_floats.data(), head_dim, eps, k);
      rotate(k);
      const int64_t slot = (head * capacity + position) * head_dim;
      std::copy(k, k + head_dim, keys + slot);
      std::copy(m.v.data() + head * head_dim, m.v.data() + (head + 1) * head_dim, values + slot);
    }
    const int64_t group = layer.heads / layer.kv_heads;
    const int64_t visible = position + 1;
    kernels::attend_heads(m.q.data(), keys, values, layer.heads, group, capacity * head_dim, visible, head_dim, scale,
                          m.scores.data(), m.attended.data());
    layer.o.apply(m.attended.data(), m.projected.data(), int8);
    for (int64_t i = 0; i < hidden; ++i) h[i] += m.projected[size_t(i)];

    rms_norm(h, layer.post_norm_floats.data(), hidden, eps, m.normed.data());
    if (layer.experts.empty()) {
      single_token_feed_forward(layer, layer.mlp, m.normed.data(), m.projected.data());
      for (int64_t i = 0; i < hidden; ++i) h[i] += m.projected[size_t(i)];
      continue;
    }
    // Mixtral: softmax over all experts, the top k, their weights renormalised.
    const int64_t experts = layer.router.rows();
    fit(m.router, experts);
    layer.router.apply(m.normed.data(), m.router.data(), int8);
    const float largest = *std::max_element(m.router.begin(), m.router.begin() + experts);
    for (int64_t e = 0; e < experts; ++e) m.router[size_t(e)] = std::exp(m.router[size_t(e)] - largest);
    std::vector<int64_t> order(static_cast<size_t>(experts));
    std::iota(order.begin(), order.end(), 0);
    const int64_t chosen = config.num_experts_per_tok;
    std::partial_sort(order.begin(), order.begin() + chosen, order.end(),
                      [&](int64_t a, int64_t b) { return m.router[size_t(a)] > m.router[size_t(b)]; });
    float chosen_total = 0.0f;
    for (int64_t c = 0; c < chosen; ++c) chosen_total += m.router[size_t(order[size_t(c)])];
    for (int64_t c = 0; c < chosen; ++c) {
      const int64_t e = order[size_t(c)];
      single_token_feed_forward(layer, layer.experts[size_t(e)], m.normed.data(), m.moe.data());
      const float weight = m.router[size_t(e)] / chosen_total;
      for (int64_t i = 0; i < hidden; ++i) h[i] += weight * m.moe[size_t(i)];
    }
  }
  rms_norm(h, final_norm_floats.data(), hidden, eps, m.normed.data());
  torch::Tensor logits = torch::empty({1, lm_head.rows()}, torch::kFloat);
  lm_head.apply(m.normed.data(), logits.data_ptr<float>(), int8);
  length = position + 1;
  return logits;
}

// ---- Several tokens or rows: LibTorch's matrix products in the model's dtype ----

torch::Tensor KvDecoder::State::batch_feed_forward(const Layer& layer, const torch::Tensor& x) const {
  auto dense = [this](const FeedForward& ffn, const torch::Tensor& input) {
    return ffn.down.apply(torch::silu(ffn.gate.apply(input, int8)) * ffn.up.apply(input, int8), int8);
  };
  if (layer.experts.empty()) return dense(layer.mlp, x);
  const auto shape = x.sizes().vec();
  const torch::Tensor flat = x.reshape({-1, hidden});
  const torch::Tensor routing = torch::softmax(layer.router.apply(flat, int8), -1, torch::kFloat);
  auto [top_weights, top_experts] = routing.topk(config.num_experts_per_tok, -1);
  top_weights = (top_weights / top_weights.sum(-1, true)).to(x.scalar_type());
  torch::Tensor out = torch::zeros_like(flat);
  for (int64_t e = 0; e < int64_t(layer.experts.size()); ++e) {
    const torch::Tensor hits = (top_experts == e).nonzero();  // [hits, 2]: token, slot
    if (hits.size(0) == 0) continue;
    const torch::Tensor rows = hits.select(1, 0), slots = hits.select(1, 1);
    const torch::Tensor weight = top_weights.index({rows, slots}).unsqueeze(1);
    out.index_add_(0, rows, dense(layer.experts[size_t(e)], flat.index_select(0, rows)) * weight);
  }
  return out.view(shape);
}

torch::Tensor KvDecoder::State::embedding(const torch::Tensor& ids) const {
  if (!quantized_embed) return torch::embedding(embed, ids).to(dtype);
  // Only the rows of the tokens are dequantized, in the order of the ids.
  const runtime::QuantizedWeight& e = *quantized_embed;
  const torch::Tensor flat = ids.reshape({-1});
  const torch::Tensor rows = runtime::dequantize_weight(e.packed.index_select(0, flat), e.scales.index_select(0, flat),
                                                        e.biases.index_select(0, flat), e.bits, e.group_size);
  auto shape = ids.sizes().vec();
  shape.push_back(hidden);
  return rows.view(shape).to(dtype);
}

torch::Tensor KvDecoder::State::append_batch(const torch::Tensor& ids) {
  // A prompt's products are large: all of LibTorch's threads for BLAS too.
  ScopedBlasThreads blas(at::get_num_threads());
  const int64_t n = ids.size(0), t = ids.size(1), past = length, total = past + t;
  torch::Tensor x = embedding(ids);  // [N, T, hidden]
  const torch::Tensor positions = torch::arange(past, total, torch::kFloat);
  const torch::Tensor angles = torch::outer(positions, inv_freq_tensor);
  const torch::Tensor both = torch::cat({angles, angles}, -1);
  const torch::Tensor cos = both.cos().to(dtype), sin = both.sin().to(dtype);  // [T, head_dim]
  const torch::Tensor future = torch::arange(total).unsqueeze(0) > torch::arange(past, total).unsqueeze(1);  // [T, L]
  const double eps = config.rms_norm_eps;
  const double scale = 1.0 / std::sqrt(double(head_dim));
  for (Layer& layer : layers) {
    const torch::Tensor normed = rms_norm(x, layer.input_norm, eps);
    torch::Tensor q = layer.q.apply(normed, int8).view({n, t, layer.heads, head_dim});
    torch::Tensor k = layer.k.apply(normed, int8).view({n, t, layer.kv_heads, head_dim});
    const torch::Tensor v = layer.v.apply(normed, int8).view({n, t, layer.kv_heads, head_dim}).transpose(1, 2);
    if (layer.q_norm.defined()) {
      q = rms_norm(q, layer.q_norm, eps);
      k = rms_norm(k, layer.k_norm, eps);
    }
    q = q.transpose(1, 2);
    k = k.transpose(1, 2);
    q = q * cos + rotate_half(q) * sin;
    k = k * cos + rotate_half(k) * sin;
    layer.key_cache.narrow(2, past, t).copy_(k);
    layer.value_cache.narrow(2, past, t).copy_(v);
    const int64_t group = layer.heads / layer.kv_heads;
    auto repeated = [&](const torch::Tensor& cache) {
      return cache.narrow(2, 0, total)
          .to(dtype)
          .unsqueeze(2)
          .expand({n, layer.kv_heads, group, total, head_dim})
          .reshape({n, layer.heads, total, head_dim});
    };
    const torch::Tensor keys = repeated(layer.key_cache), values = repeated(layer.value_cache);
    const torch::Tensor scores = torch::matmul(q, keys.transpose(-1, -2)) * scale;
    const torch::Tensor probabilities =
        torch::softmax(scores.masked_fill(future, -std::numeric_limits<double>::infinity()), -1, torch::kFloat)
            .to(dtype);
    const torch::Tensor attended = torch::matmul(probabilities, values).transpose(1, 2).reshape({n, t, -1});
    x = x + layer.o.apply(attended, int8);
    x = x + batch_feed_forward(layer, rms_norm(x, layer.post_norm, eps));
  }
  length = total;
  const torch::Tensor last = rms_norm(x.select(1, t - 1), final_norm, eps);
  return lm_head.apply(last, int8).to(torch::kFloat);
}

}  // namespace mcompress
