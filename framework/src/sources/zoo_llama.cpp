#include "zoo_llama.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/script.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "mcompress/models/causal_lm.h"
#include "mcompress/sdk/error.h"

namespace mcompress {

const std::map<std::string, int64_t>& llama_zoo_defaults() {
  static const std::map<std::string, int64_t> defaults{
      {"width", 256}, {"layers", 4}, {"heads", 8}, {"kv_heads", 4}, {"intermediate", 768}, {"context", 256}};
  return defaults;
}

torch::jit::Module build_zoo_llama(const std::map<std::string, int64_t>& options, int64_t vocabulary,
                                   uint64_t seed) {
  const int64_t width = options.at("width"), heads = options.at("heads"), kv_heads = options.at("kv_heads");
  if (width % heads != 0)
    throw Error(fmt::format("zoo model 'llama': width {} must be a multiple of heads {}", width, heads));
  if (heads % kv_heads != 0)
    throw Error(fmt::format("zoo model 'llama': heads {} must be a multiple of kv_heads {} (grouped-query "
                            "attention shares each key/value head among heads / kv_heads query heads)",
                            heads, kv_heads));
  if ((width / heads) % 2 != 0)
    throw Error(fmt::format("zoo model 'llama': the head size width / heads = {} must be even for RoPE",
                            width / heads));
  const nlohmann::json config{{"architectures", {"LlamaForCausalLM"}},
                              {"model_type", "llama"},
                              {"vocab_size", vocabulary},
                              {"hidden_size", width},
                              {"intermediate_size", options.at("intermediate")},
                              {"num_hidden_layers", options.at("layers")},
                              {"num_attention_heads", heads},
                              {"num_key_value_heads", kv_heads},
                              {"head_dim", width / heads},
                              {"hidden_act", "silu"},
                              {"max_position_embeddings", options.at("context")},
                              {"rms_norm_eps", 1e-5},
                              {"rope_theta", 10000.0},
                              {"tie_word_embeddings", true},
                              {"attention_bias", false},
                              {"mlp_bias", false},
                              {"torch_dtype", "float32"}};
  const std::string config_json = config.dump(2);
  const TransformerConfig parsed = parse_transformer_config(config_json, "zoo model 'llama'");
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::map<std::string, torch::Tensor> weights;
  for (const auto& tensor : expected_tensors(parsed)) {
    const bool norm = tensor.shape.size() == 1;
    weights[tensor.name] =
        norm ? torch::ones(tensor.shape) : torch::empty(tensor.shape).normal_(0.0, 0.02, generator);
  }
  return build_causal_lm(parsed, config_json, weights, torch::kFloat);
}

}  // namespace mcompress
