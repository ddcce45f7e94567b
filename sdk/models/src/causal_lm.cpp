#include "mcompress/models/causal_lm.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <set>

#include "mcompress/models/quantized_layer.h"
#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

using torch::jit::Module;

constexpr const char* kConfigAttribute = "hf_config";

// A Python float literal TorchScript reads back as the same double.
std::string python_float(double value) {
  std::string text = fmt::format("{}", value);
  if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
  return text;
}

// Module::define for TorchScript source with `torch.float32`, which the C++
// resolver does not know (it resolves `torch.*` to operators only): the
// dtype is spelled as its ScalarType number.
void define(Module& module, std::string source) {
  const std::string name = "torch.float32";
  const std::string code = std::to_string(int(torch::kFloat));
  for (size_t at = source.find(name); at != std::string::npos; at = source.find(name, at + code.size()))
    source.replace(at, name.size(), code);
  module.define(source);
}

std::string shape_text(at::IntArrayRef shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

// Tensors some checkpoints carry that the model does not need: the rotary
// frequencies old Llama exports saved, and an lm_head duplicated although
// embeddings are tied (transformers ignores both as well).
bool ignorable_extra(const std::string& name, const TransformerConfig& config) {
  const std::string suffix = "rotary_emb.inv_freq";
  if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
    return true;
  return config.tie_word_embeddings && name == "lm_head.weight";
}

void check_weights(const TransformerConfig& config, const std::map<std::string, torch::Tensor>& weights) {
  const std::vector<ExpectedTensor> expected = expected_tensors(config);
  std::set<std::string> expected_names;
  for (const ExpectedTensor& tensor : expected) {
    expected_names.insert(tensor.name);
    auto found = weights.find(tensor.name);
    if (found == weights.end())
      throw Error(fmt::format("config.json says there is a tensor '{}' of shape {} but the weights have "
                              "none",
                              tensor.name, shape_text(tensor.shape)));
    if (!found->second.defined() || !found->second.is_floating_point())
      throw Error(fmt::format("'{}' is of type {}; a causal LM's weights must be floating point",
                              tensor.name,
                              found->second.defined() ? c10::toString(found->second.scalar_type()) : "undefined"));
    if (found->second.sizes() != at::IntArrayRef(tensor.shape))
      throw Error(fmt::format("config.json says '{}' has shape {} but the weights say {}", tensor.name,
                              shape_text(tensor.shape), shape_text(found->second.sizes())));
  }
  for (const auto& [name, tensor] : weights) {
    if (expected_names.count(name) || ignorable_extra(name, config)) continue;
    throw Error(fmt::format("the weights hold '{}' of shape {}, which config.json's {} model ({} layers, "
                            "{} experts, tie_word_embeddings {}) does not have",
                            name, shape_text(tensor.sizes()), config.model_type, config.num_hidden_layers,
                            config.num_local_experts, config.tie_word_embeddings));
  }
}

// RoPE inverse frequencies, float32 as transformers computes them, with
// Llama 3.1's rescaling: long wavelengths slowed by `factor`, short ones
// kept, the band between interpolated smoothly.
torch::Tensor rope_inverse_frequencies(const TransformerConfig& config) {
  const int64_t dim = config.head_dim;
  torch::Tensor exponents = torch::arange(0, dim, 2, torch::kLong).to(torch::kFloat) / double(dim);
  torch::Tensor inv_freq = 1.0 / torch::pow(config.rope_theta, exponents);
  if (!config.rope_scaling) return inv_freq;
  const Llama3RopeScaling& s = *config.rope_scaling;
  const double original = double(s.original_max_position_embeddings);
  const double low_freq_wavelen = original / s.low_freq_factor;
  const double high_freq_wavelen = original / s.high_freq_factor;
  torch::Tensor wavelen = 2 * M_PI / inv_freq;
  torch::Tensor scaled = torch::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
  torch::Tensor smooth = (original / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  torch::Tensor smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
  torch::Tensor medium = (wavelen >= high_freq_wavelen).logical_and(wavelen <= low_freq_wavelen);
  return torch::where(medium, smoothed, scaled);
}

// Builds the module tree. Every module has its own (mangled) class type, so
// a pass replacing a tensor on one layer never changes another; every size
// the code needs beyond head_dim is read from the weights at run time.
class CausalLmBuilder {
 public:
  CausalLmBuilder(const TransformerConfig& config, const std::map<std::string, torch::Tensor>& weights,
                  c10::ScalarType dtype)
      : config_(config), weights_(weights), dtype_(dtype), unit_(std::make_shared<torch::jit::CompilationUnit>()) {}

  Module build(const std::string& config_json) {
    Module root = new_module("CausalLM");
    root.register_attribute(kConfigAttribute, c10::StringType::get(), config_json);
    root.register_module("model", model());
    if (config_.tie_word_embeddings) {
      define(root, R"(
def forward(self, input_ids: Tensor) -> Tensor:
    hidden = self.model.forward(input_ids)
    return torch.linear(hidden, self.model.embed_tokens.weight).to(torch.float32)
)");
    } else {
      root.register_module("lm_head", linear("lm_head"));
      define(root, R"(
def forward(self, input_ids: Tensor) -> Tensor:
    hidden = self.model.forward(input_ids)
    return self.lm_head.forward(hidden).to(torch.float32)
)");
    }
    return root;
  }

 private:
  Module new_module(const std::string& kind) {
    Module module(c10::QualifiedName("__torch__.mcompress.causal_lm." + kind), unit_, /*shouldMangle=*/true);
    // Module::train()/eval() set it on every submodule.
    module.register_attribute("training", c10::BoolType::get(), false);
    return module;
  }

  void add_parameter(Module& module, const std::string& name, const std::string& hf_name) {
    torch::Tensor value = weights_.at(hf_name).to(dtype_);
    value.set_requires_grad(true);
    module.register_parameter(name, value, /*is_buffer=*/false);
  }

  bool has_weight(const std::string& hf_name) const { return weights_.count(hf_name) > 0; }

  Module linear(const std::string& prefix) {
    Module m = new_module("Linear");
    add_parameter(m, "weight", prefix + ".weight");
    const bool bias = has_weight(prefix + ".bias");
    if (bias) add_parameter(m, "bias", prefix + ".bias");
    define(m, fmt::format(R"(
def forward(self, x: Tensor) -> Tensor:
    return torch.linear(x, self.weight, {})
)",
                         bias ? "self.bias" : "None"));
    return m;
  }

  // As transformers: normalised in float32, cast back, then scaled.
  Module rms_norm(const std::string& prefix) {
    Module m = new_module("RMSNorm");
    add_parameter(m, "weight", prefix + ".weight");
    define(m, fmt::format(R"(
def forward(self, x: Tensor) -> Tensor:
    dtype = x.dtype
    v = x.to(torch.float32)
    v = v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + {})
    return self.weight * v.to(dtype)
)",
                         python_float(config_.rms_norm_eps)));
    return m;
  }

  Module embedding(const std::string& prefix) {
    Module m = new_module("Embedding");
    add_parameter(m, "weight", prefix + ".weight");
    define(m, R"(
def forward(self, input_ids: Tensor) -> Tensor:
    return torch.embedding(self.weight, input_ids)
)");
    return m;
  }

  // cos and sin of every position's rotation angles, float32 then cast to
  // the hidden states' dtype, as transformers does.
  Module rotary_embedding() {
    Module m = new_module("RotaryEmbedding");
    m.register_buffer("inv_freq", rope_inverse_frequencies(config_));
    define(m, R"(
def forward(self, x: Tensor, length: int) -> Tuple[Tensor, Tensor]:
    positions = torch.arange(length, dtype=torch.float32, device=x.device)
    freqs = positions.unsqueeze(1) * self.inv_freq.to(torch.float32).unsqueeze(0)
    angles = torch.cat([freqs, freqs], -1)
    return angles.cos().to(x.dtype), angles.sin().to(x.dtype)
)");
    return m;
  }

  Module attention(const std::string& prefix) {
    Module m = new_module("Attention");
    for (const char* projection : {"q_proj", "k_proj", "v_proj", "o_proj"})
      m.register_module(projection, linear(prefix + "." + projection));
    std::string qk_norm;
    if (config_.qk_norm) {
      m.register_module("q_norm", rms_norm(prefix + ".q_norm"));
      m.register_module("k_norm", rms_norm(prefix + ".k_norm"));
      qk_norm = "    q = self.q_norm.forward(q)\n    k = self.k_norm.forward(k)\n";
    }
    const int64_t d = config_.head_dim;
    define(m, fmt::format(R"(
def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor) -> Tensor:
    batch = x.size(0)
    length = x.size(1)
    q = self.q_proj.forward(x).view(batch, length, -1, {d})
    k = self.k_proj.forward(x).view(batch, length, -1, {d})
    v = self.v_proj.forward(x).view(batch, length, -1, {d}).transpose(1, 2)
    heads = q.size(2)
    kv_heads = k.size(2)
{qk_norm}    q = q.transpose(1, 2)
    k = k.transpose(1, 2)
    q = q * cos + torch.cat([q.narrow(-1, {half}, {half}).neg(), q.narrow(-1, 0, {half})], -1) * sin
    k = k * cos + torch.cat([k.narrow(-1, {half}, {half}).neg(), k.narrow(-1, 0, {half})], -1) * sin
    if kv_heads != heads:
        k = k.repeat_interleave(heads // kv_heads, 1)
        v = v.repeat_interleave(heads // kv_heads, 1)
    scores = torch.matmul(q, k.transpose(2, 3)) * {scale} + mask
    probs = torch.softmax(scores, -1, dtype=torch.float32).to(q.dtype)
    out = torch.matmul(probs, v).transpose(1, 2).reshape(batch, length, -1)
    return self.o_proj.forward(out)
)",
                         fmt::arg("d", d), fmt::arg("half", d / 2), fmt::arg("qk_norm", qk_norm),
                         fmt::arg("scale", python_float(1.0 / std::sqrt(double(d))))));
    return m;
  }

  // SwiGLU: down(silu(gate(x)) * up(x)); Mixtral's experts name them w1, w3, w2.
  Module gated_mlp(const std::string& prefix, const char* gate, const char* up, const char* down,
                   const std::string& kind) {
    Module m = new_module(kind);
    m.register_module(gate, linear(prefix + "." + gate));
    m.register_module(up, linear(prefix + "." + up));
    m.register_module(down, linear(prefix + "." + down));
    define(m, fmt::format(R"(
def forward(self, x: Tensor) -> Tensor:
    return self.{down}.forward(torch.silu(self.{gate}.forward(x)) * self.{up}.forward(x))
)",
                         fmt::arg("gate", gate), fmt::arg("up", up), fmt::arg("down", down)));
    return m;
  }

  // Mixtral: the router's softmax over all experts, the top k kept and
  // renormalised; each expert runs only on the tokens routed to it.
  Module sparse_moe(const std::string& prefix) {
    Module m = new_module("SparseMoeBlock");
    m.register_module("gate", linear(prefix + ".gate"));
    Module experts = new_module("Experts");
    std::string body;
    for (int64_t e = 0; e < config_.num_local_experts; ++e) {
      const std::string name = std::to_string(e);
      experts.register_module(name, gated_mlp(fmt::format("{}.experts.{}", prefix, e), "w1", "w3", "w2", "Expert"));
      body += fmt::format(R"(
    hit = selected == {e}
    tokens = torch.nonzero(hit.any(-1)).view(-1)
    if tokens.size(0) > 0:
        weight = (top_weights * hit.to(top_weights.dtype)).sum(-1).index_select(0, tokens)
        y = getattr(self.experts, "{e}").forward(flat.index_select(0, tokens))
        out.index_add_(0, tokens, y * weight.unsqueeze(1))
)",
                          fmt::arg("e", e));
    }
    m.register_module("experts", experts);
    define(m, fmt::format(R"(
def forward(self, x: Tensor) -> Tensor:
    flat = x.reshape(-1, x.size(-1))
    router = torch.softmax(self.gate.forward(flat), 1, dtype=torch.float32)
    top_weights, selected = torch.topk(router, {k}, -1)
    top_weights = (top_weights / top_weights.sum(-1, keepdim=True)).to(x.dtype)
    out = torch.zeros_like(flat){body}
    return out.view(x.size())
)",
                         fmt::arg("k", config_.num_experts_per_tok), fmt::arg("body", body)));
    return m;
  }

  Module decoder_layer(int64_t index) {
    const std::string prefix = fmt::format("model.layers.{}", index);
    Module m = new_module("DecoderLayer");
    m.register_module("input_layernorm", rms_norm(prefix + ".input_layernorm"));
    m.register_module("self_attn", attention(prefix + ".self_attn"));
    m.register_module("post_attention_layernorm", rms_norm(prefix + ".post_attention_layernorm"));
    std::string mlp = "mlp";
    if (config_.is_moe()) {
      mlp = "block_sparse_moe";
      m.register_module(mlp, sparse_moe(prefix + "." + mlp));
    } else {
      m.register_module(mlp, gated_mlp(prefix + ".mlp", "gate_proj", "up_proj", "down_proj", "MLP"));
    }
    define(m, fmt::format(R"(
def forward(self, h: Tensor, cos: Tensor, sin: Tensor, mask: Tensor) -> Tensor:
    h = h + self.self_attn.forward(self.input_layernorm.forward(h), cos, sin, mask)
    return h + self.{}.forward(self.post_attention_layernorm.forward(h))
)",
                         mlp));
    return m;
  }

  Module model() {
    Module m = new_module("Model");
    m.register_module("embed_tokens", embedding("model.embed_tokens"));
    m.register_module("rotary_emb", rotary_embedding());
    Module layers = new_module("Layers");
    std::string body;
    for (int64_t i = 0; i < config_.num_hidden_layers; ++i) {
      layers.register_module(std::to_string(i), decoder_layer(i));
      body += fmt::format("    h = getattr(self.layers, \"{}\").forward(h, cos, sin, mask)\n", i);
    }
    m.register_module("layers", layers);
    m.register_module("norm", rms_norm("model.norm"));
    // The causal mask: -inf above the diagonal, added to the scores.
    define(m, fmt::format(R"(
def forward(self, input_ids: Tensor) -> Tensor:
    h = self.embed_tokens.forward(input_ids)
    length = input_ids.size(1)
    cos, sin = self.rotary_emb.forward(h, length)
    mask = torch.full([length, length], float("-inf"), dtype=h.dtype, device=h.device).triu(1)
{}    return self.norm.forward(h)
)",
                         body));
    return m;
  }

  const TransformerConfig& config_;
  const std::map<std::string, torch::Tensor>& weights_;
  c10::ScalarType dtype_;
  std::shared_ptr<torch::jit::CompilationUnit> unit_;
};

Module submodule(const Module& module, const std::string& name) { return module.attr(name).toModule(); }

void require_causal_lm(const Module& model) {
  if (!is_causal_lm(model))
    throw Error("the model is not a Hugging Face causal LM (it has no 'hf_config' attribute); it was not "
                "loaded from a checkpoint directory");
}

}  // namespace

Module build_causal_lm(const TransformerConfig& config, const std::string& config_json,
                       const std::map<std::string, torch::Tensor>& weights, c10::ScalarType compute_dtype) {
  if (compute_dtype != torch::kFloat && compute_dtype != torch::kBFloat16 && compute_dtype != torch::kHalf)
    throw Error(fmt::format("a causal LM computes in float32, bfloat16 or float16, not {}",
                            c10::toString(compute_dtype)));
  check_weights(config, weights);
  return CausalLmBuilder(config, weights, compute_dtype).build(config_json);
}

bool is_causal_lm(const Module& model) {
  return model.hasattr(kConfigAttribute) && model.attr(kConfigAttribute).isString();
}

std::string causal_lm_config_json(const Module& model) {
  require_causal_lm(model);
  return model.attr(kConfigAttribute).toStringRef();
}

namespace {

// Rows of a linear layer's weight, floating or quantized (quantized_layer.h).
int64_t out_features(const Module& linear) {
  return linear.attr(linear.hasattr("weight") ? "weight" : kPackedWeightName).toTensor().size(0);
}

}  // namespace

TransformerConfig causal_lm_config(const Module& model) {
  TransformerConfig config = parse_transformer_config(causal_lm_config_json(model), "the model's config.json");
  const Module body = submodule(model, "model");
  const torch::Tensor embedding = submodule(body, "embed_tokens").attr("weight").toTensor();
  config.vocab_size = embedding.size(0);
  config.hidden_size = embedding.size(1);
  config.tie_word_embeddings = !model.hasattr("lm_head");

  const auto layers = submodule(body, "layers").named_children();
  config.num_hidden_layers = int64_t(layers.size());
  if (layers.size() == 0) return config;
  // A loadable checkpoint has the same shapes in every layer: the first one's are the model's.
  const Module first = (*layers.begin()).value;
  const Module attention = submodule(first, "self_attn");
  const Module q_proj = submodule(attention, "q_proj");
  config.num_attention_heads = out_features(q_proj) / config.head_dim;
  config.num_key_value_heads = out_features(submodule(attention, "k_proj")) / config.head_dim;
  config.attention_bias = q_proj.hasattr("bias");
  config.qk_norm = attention.hasattr("q_norm");
  if (first.hasattr("block_sparse_moe")) {
    const Module moe = submodule(first, "block_sparse_moe");
    config.num_local_experts = out_features(submodule(moe, "gate"));
    config.num_experts_per_tok = std::min(config.num_experts_per_tok, config.num_local_experts);
    const Module expert = (*submodule(moe, "experts").named_children().begin()).value;
    config.intermediate_size = out_features(submodule(expert, "w1"));
  } else {
    config.intermediate_size = out_features(submodule(submodule(first, "mlp"), "gate_proj"));
  }
  return config;
}

std::map<std::string, torch::Tensor> causal_lm_weights(const Module& model) {
  require_causal_lm(model);
  std::map<std::string, torch::Tensor> weights;
  for (const auto& parameter : model.named_parameters(/*recurse=*/true)) weights[parameter.name] = parameter.value;
  return weights;
}

}  // namespace mcompress
