#include "mcompress/models/transformer_config.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

using nlohmann::json;

constexpr const char* kSupportedFamilies = "llama, mistral, qwen2, qwen3, mixtral";

TransformerFamily family_of(const std::string& model_type, const std::string& source) {
  if (model_type == "llama") return TransformerFamily::Llama;
  if (model_type == "mistral") return TransformerFamily::Mistral;
  if (model_type == "qwen2") return TransformerFamily::Qwen2;
  if (model_type == "qwen3") return TransformerFamily::Qwen3;
  if (model_type == "mixtral") return TransformerFamily::Mixtral;
  throw Error(fmt::format("{}: model_type '{}' is not supported; mcompress runs the decoder-only "
                          "families {}",
                          source, model_type, kSupportedFamilies));
}

std::string architecture_of(TransformerFamily family) {
  switch (family) {
    case TransformerFamily::Llama: return "LlamaForCausalLM";
    case TransformerFamily::Mistral: return "MistralForCausalLM";
    case TransformerFamily::Qwen2: return "Qwen2ForCausalLM";
    case TransformerFamily::Qwen3: return "Qwen3ForCausalLM";
    case TransformerFamily::Mixtral: return "MixtralForCausalLM";
  }
  return "";
}

// Reads config.json fields with messages that name the file and the key.
class ConfigReader {
 public:
  ConfigReader(const json& root, const std::string& source) : root_(root), source_(source) {}

  bool has(const std::string& key) const { return root_.contains(key) && !root_.at(key).is_null(); }

  int64_t positive_integer(const std::string& key) const {
    if (!has(key)) throw Error(fmt::format("{}: '{}' is missing", source_, key));
    return positive_integer_value(root_.at(key), key);
  }
  int64_t positive_integer_or(const std::string& key, int64_t fallback) const {
    return has(key) ? positive_integer_value(root_.at(key), key) : fallback;
  }
  double positive_number_or(const std::string& key, double fallback) const {
    if (!has(key)) return fallback;
    const json& value = root_.at(key);
    if (!value.is_number() || value.get<double>() <= 0)
      throw Error(fmt::format("{}: '{}' must be a positive number, not {}", source_, key, value.dump()));
    return value.get<double>();
  }
  bool boolean_or(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& value = root_.at(key);
    if (!value.is_boolean())
      throw Error(fmt::format("{}: '{}' must be true or false, not {}", source_, key, value.dump()));
    return value.get<bool>();
  }
  std::string string_or(const std::string& key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const json& value = root_.at(key);
    if (!value.is_string())
      throw Error(fmt::format("{}: '{}' must be a string, not {}", source_, key, value.dump()));
    return value.get<std::string>();
  }
  // bos/eos_token_id: an integer or a list of them (Llama 3 lists several EOS tokens).
  std::vector<int64_t> token_ids(const std::string& key) const {
    if (!has(key)) return {};
    const json& value = root_.at(key);
    auto token = [&](const json& item) {
      if (!item.is_number_integer() || item.get<int64_t>() < 0)
        throw Error(fmt::format("{}: '{}' must be a token id or a list of them, not {}", source_, key,
                                value.dump()));
      return item.get<int64_t>();
    };
    if (!value.is_array()) return {token(value)};
    std::vector<int64_t> ids;
    for (const json& item : value) ids.push_back(token(item));
    return ids;
  }

  const std::string& source() const { return source_; }

 private:
  int64_t positive_integer_value(const json& value, const std::string& key) const {
    if (!value.is_number_integer() || value.get<int64_t>() <= 0)
      throw Error(fmt::format("{}: '{}' must be a positive integer, not {}", source_, key, value.dump()));
    return value.get<int64_t>();
  }

  const json& root_;
  const std::string& source_;
};

// rope_scaling: null or "default" is plain RoPE; "llama3" rescales the
// frequencies; the others (linear, dynamic, yarn, longrope) change outputs in
// ways this implementation does not reproduce, so they are refused.
std::optional<Llama3RopeScaling> parse_rope_scaling(const json& root, const std::string& source) {
  if (!root.contains("rope_scaling") || root.at("rope_scaling").is_null()) return std::nullopt;
  const json& scaling = root.at("rope_scaling");
  if (!scaling.is_object())
    throw Error(fmt::format("{}: 'rope_scaling' must be an object or null, not {}", source, scaling.dump()));
  const std::string key = scaling.contains("rope_type") ? "rope_type" : "type";
  if (!scaling.contains(key) || !scaling.at(key).is_string())
    throw Error(fmt::format("{}: 'rope_scaling' has no 'rope_type' (or 'type') string: {}", source,
                            scaling.dump()));
  const std::string type = scaling.at(key).get<std::string>();
  if (type == "default") return std::nullopt;
  if (type != "llama3")
    throw Error(fmt::format("{}: rope scaling '{}' is not supported; mcompress runs plain RoPE and "
                            "'llama3' scaling",
                            source, type));
  const ConfigReader reader(scaling, source + " (rope_scaling)");
  Llama3RopeScaling llama3;
  llama3.factor = reader.positive_number_or("factor", llama3.factor);
  llama3.low_freq_factor = reader.positive_number_or("low_freq_factor", llama3.low_freq_factor);
  llama3.high_freq_factor = reader.positive_number_or("high_freq_factor", llama3.high_freq_factor);
  llama3.original_max_position_embeddings = reader.positive_integer_or(
      "original_max_position_embeddings", llama3.original_max_position_embeddings);
  if (llama3.high_freq_factor <= llama3.low_freq_factor)
    throw Error(fmt::format("{}: rope_scaling's high_freq_factor ({}) must exceed low_freq_factor ({})",
                            source, llama3.high_freq_factor, llama3.low_freq_factor));
  return llama3;
}

json token_ids_json(const std::vector<int64_t>& ids) {
  if (ids.size() == 1) return ids.front();
  return json(ids);
}

}  // namespace

TransformerConfig parse_transformer_config(const std::string& json_text, const std::string& source) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {
    throw Error(fmt::format("{}: not valid JSON ({})", source, e.what()));
  }
  if (!root.is_object()) throw Error(fmt::format("{}: config.json must hold a JSON object", source));
  const ConfigReader reader(root, source);

  TransformerConfig config;
  if (!reader.has("model_type"))
    throw Error(fmt::format("{}: 'model_type' is missing; mcompress runs the decoder-only families {}",
                            source, kSupportedFamilies));
  config.model_type = reader.string_or("model_type", "");
  config.family = family_of(config.model_type, source);

  config.vocab_size = reader.positive_integer("vocab_size");
  config.hidden_size = reader.positive_integer("hidden_size");
  config.intermediate_size = reader.positive_integer("intermediate_size");
  config.num_hidden_layers = reader.positive_integer("num_hidden_layers");
  config.num_attention_heads = reader.positive_integer("num_attention_heads");
  config.num_key_value_heads = reader.positive_integer_or("num_key_value_heads", config.num_attention_heads);
  if (config.num_attention_heads % config.num_key_value_heads != 0)
    throw Error(fmt::format("{}: num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                            source, config.num_attention_heads, config.num_key_value_heads));
  if (reader.has("head_dim")) {
    config.head_dim = reader.positive_integer("head_dim");
  } else {
    if (config.hidden_size % config.num_attention_heads != 0)
      throw Error(fmt::format("{}: without 'head_dim', hidden_size ({}) must be a multiple of "
                              "num_attention_heads ({})",
                              source, config.hidden_size, config.num_attention_heads));
    config.head_dim = config.hidden_size / config.num_attention_heads;
  }
  if (config.head_dim % 2 != 0)
    throw Error(fmt::format("{}: head_dim ({}) must be even for rotary embeddings", source, config.head_dim));

  config.rms_norm_eps = reader.positive_number_or("rms_norm_eps", config.rms_norm_eps);
  config.rope_theta = reader.positive_number_or("rope_theta", config.rope_theta);
  config.rope_scaling = parse_rope_scaling(root, source);
  config.max_position_embeddings =
      reader.positive_integer_or("max_position_embeddings", config.max_position_embeddings);
  config.tie_word_embeddings = reader.boolean_or("tie_word_embeddings", false);

  // Qwen2 always has q/k/v biases (its config has no key for them); Llama
  // and Qwen3 say so in attention_bias; Mistral and Mixtral have none.
  switch (config.family) {
    case TransformerFamily::Qwen2: config.attention_bias = true; break;
    case TransformerFamily::Llama:
    case TransformerFamily::Qwen3: config.attention_bias = reader.boolean_or("attention_bias", false); break;
    default: config.attention_bias = false; break;
  }
  if (reader.boolean_or("mlp_bias", false))
    throw Error(fmt::format("{}: 'mlp_bias' is true; mcompress runs MLPs without biases", source));
  config.qk_norm = config.family == TransformerFamily::Qwen3;

  if (config.family == TransformerFamily::Mixtral) {
    config.num_local_experts = reader.positive_integer("num_local_experts");
    config.num_experts_per_tok = reader.positive_integer("num_experts_per_tok");
    if (config.num_experts_per_tok > config.num_local_experts)
      throw Error(fmt::format("{}: num_experts_per_tok ({}) exceeds num_local_experts ({})", source,
                              config.num_experts_per_tok, config.num_local_experts));
  }
  if (reader.has("sliding_window") && root.at("sliding_window").is_number_integer())
    config.sliding_window = root.at("sliding_window").get<int64_t>();
  config.bos_token_ids = reader.token_ids("bos_token_id");
  config.eos_token_ids = reader.token_ids("eos_token_id");
  config.torch_dtype = reader.string_or("torch_dtype", "");
  return config;
}

std::string updated_config_json(const std::string& original_json, const TransformerConfig& config) {
  json root = json::object();
  if (!original_json.empty()) {
    try {
      root = json::parse(original_json);
    } catch (const json::exception& e) {
      throw Error(fmt::format("the model's config.json is not valid JSON ({})", e.what()));
    }
    if (!root.is_object()) root = json::object();
  }
  root["model_type"] = config.model_type;
  if (!root.contains("architectures")) root["architectures"] = json::array({architecture_of(config.family)});
  root["vocab_size"] = config.vocab_size;
  root["hidden_size"] = config.hidden_size;
  root["intermediate_size"] = config.intermediate_size;
  root["num_hidden_layers"] = config.num_hidden_layers;
  root["num_attention_heads"] = config.num_attention_heads;
  root["num_key_value_heads"] = config.num_key_value_heads;
  // Explicit, so stock loaders never derive it from hidden/heads after pruning.
  root["head_dim"] = config.head_dim;
  root["rms_norm_eps"] = config.rms_norm_eps;
  root["rope_theta"] = config.rope_theta;
  root["max_position_embeddings"] = config.max_position_embeddings;
  root["tie_word_embeddings"] = config.tie_word_embeddings;
  if (config.family == TransformerFamily::Llama || config.family == TransformerFamily::Qwen3)
    root["attention_bias"] = config.attention_bias;
  if (config.is_moe()) {
    root["num_local_experts"] = config.num_local_experts;
    root["num_experts_per_tok"] = config.num_experts_per_tok;
  }
  if (config.rope_scaling) {
    json scaling = root.contains("rope_scaling") && root["rope_scaling"].is_object() ? root["rope_scaling"]
                                                                                     : json::object();
    if (!scaling.contains("type")) scaling["rope_type"] = "llama3";
    scaling["factor"] = config.rope_scaling->factor;
    scaling["low_freq_factor"] = config.rope_scaling->low_freq_factor;
    scaling["high_freq_factor"] = config.rope_scaling->high_freq_factor;
    scaling["original_max_position_embeddings"] = config.rope_scaling->original_max_position_embeddings;
    root["rope_scaling"] = scaling;
  } else {
    root["rope_scaling"] = nullptr;
  }
  if (!config.bos_token_ids.empty()) root["bos_token_id"] = token_ids_json(config.bos_token_ids);
  if (!config.eos_token_ids.empty()) root["eos_token_id"] = token_ids_json(config.eos_token_ids);
  if (!config.torch_dtype.empty()) root["torch_dtype"] = config.torch_dtype;
  // Newer Qwen configs list one attention type per layer; after depth
  // pruning the list must still have one entry per layer.
  if (root.contains("layer_types") && root["layer_types"].is_array() && !root["layer_types"].empty()) {
    json& types = root["layer_types"];
    const json last = types.back();
    while (int64_t(types.size()) > config.num_hidden_layers) types.erase(types.size() - 1);
    while (int64_t(types.size()) < config.num_hidden_layers) types.push_back(last);
  }
  if (root.contains("max_window_layers") && root["max_window_layers"].is_number_integer() &&
      root["max_window_layers"].get<int64_t>() > config.num_hidden_layers)
    root["max_window_layers"] = config.num_hidden_layers;
  return root.dump(2) + "\n";
}

std::vector<ExpectedTensor> expected_tensors(const TransformerConfig& config) {
  const int64_t hidden = config.hidden_size;
  const int64_t q_rows = config.num_attention_heads * config.head_dim;
  const int64_t kv_rows = config.num_key_value_heads * config.head_dim;
  const int64_t inner = config.intermediate_size;
  std::vector<ExpectedTensor> tensors;
  tensors.push_back({"model.embed_tokens.weight", {config.vocab_size, hidden}});
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    const std::string layer = fmt::format("model.layers.{}.", i);
    tensors.push_back({layer + "input_layernorm.weight", {hidden}});
    tensors.push_back({layer + "self_attn.q_proj.weight", {q_rows, hidden}});
    if (config.attention_bias) tensors.push_back({layer + "self_attn.q_proj.bias", {q_rows}});
    tensors.push_back({layer + "self_attn.k_proj.weight", {kv_rows, hidden}});
    if (config.attention_bias) tensors.push_back({layer + "self_attn.k_proj.bias", {kv_rows}});
    tensors.push_back({layer + "self_attn.v_proj.weight", {kv_rows, hidden}});
    if (config.attention_bias) tensors.push_back({layer + "self_attn.v_proj.bias", {kv_rows}});
    tensors.push_back({layer + "self_attn.o_proj.weight", {hidden, q_rows}});
    if (config.qk_norm) {
      tensors.push_back({layer + "self_attn.q_norm.weight", {config.head_dim}});
      tensors.push_back({layer + "self_attn.k_norm.weight", {config.head_dim}});
    }
    tensors.push_back({layer + "post_attention_layernorm.weight", {hidden}});
    if (config.is_moe()) {
      tensors.push_back({layer + "block_sparse_moe.gate.weight", {config.num_local_experts, hidden}});
      for (int64_t e = 0; e < config.num_local_experts; ++e) {
        const std::string expert = fmt::format("{}block_sparse_moe.experts.{}.", layer, e);
        tensors.push_back({expert + "w1.weight", {inner, hidden}});
        tensors.push_back({expert + "w2.weight", {hidden, inner}});
        tensors.push_back({expert + "w3.weight", {inner, hidden}});
      }
    } else {
      tensors.push_back({layer + "mlp.gate_proj.weight", {inner, hidden}});
      tensors.push_back({layer + "mlp.up_proj.weight", {inner, hidden}});
      tensors.push_back({layer + "mlp.down_proj.weight", {hidden, inner}});
    }
  }
  tensors.push_back({"model.norm.weight", {hidden}});
  if (!config.tie_word_embeddings) tensors.push_back({"lm_head.weight", {config.vocab_size, hidden}});
  return tensors;
}

}  // namespace mcompress
