#pragma once
// The hyperparameters of a Hugging Face decoder-only transformer, read from its
// config.json: the families mcompress runs (Llama 1/2/3.x, Mistral, Qwen2/2.5,
// Qwen3, Mixtral) share one description, the differences are flags.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mcompress/sdk/export.h"

namespace mcompress {

enum class TransformerFamily { Llama, Mistral, Qwen2, Qwen3, Mixtral };

// `llama3` rope scaling (Llama 3.1/3.2): inverse frequencies rescaled by wavelength.
struct Llama3RopeScaling {
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct TransformerConfig {
  std::string model_type;  // as config.json names it: "llama", "mistral", "qwen2", "qwen3", "mixtral"
  TransformerFamily family = TransformerFamily::Llama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // = num_attention_heads when config.json has none
  int64_t head_dim = 0;             // config.head_dim, else hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::optional<Llama3RopeScaling> rope_scaling;
  int64_t max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (Qwen2; config.attention_bias for Llama)
  bool qk_norm = false;         // per-head RMSNorm of q and k before RoPE (Qwen3)
  int64_t num_local_experts = 0;   // > 0: Mixtral MoE MLP
  int64_t num_experts_per_tok = 0;
  std::optional<int64_t> sliding_window;  // Mistral/Qwen; recorded, not applied
  std::vector<int64_t> bos_token_ids;
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype;  // "bfloat16", "float16", "float32" (may be empty)

  bool is_moe() const { return num_local_experts > 0; }
};

// Parses config.json text. Throws mcompress::Error naming `source` (the file)
// and the key for a missing or invalid field, and for a `model_type` outside
// the supported families (the message lists them).
MCOMPRESS_SDK_API TransformerConfig parse_transformer_config(const std::string& json_text,
                                                             const std::string& source);

// `original_json` (the config.json text the model came from, may be empty) with
// every shape field replaced by `config`'s, keys it does not know kept, so a
// written checkpoint describes the tensors written with it.
MCOMPRESS_SDK_API std::string updated_config_json(const std::string& original_json,
                                                  const TransformerConfig& config);

// The HF tensor names a model of `config` must have (no lm_head.weight when
// embeddings are tied) with their shapes, in a fixed order.
struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
};
MCOMPRESS_SDK_API std::vector<ExpectedTensor> expected_tensors(const TransformerConfig& config);

}  // namespace mcompress
