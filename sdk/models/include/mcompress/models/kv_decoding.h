#pragma once
// Running a causal LM (causal_lm.h) token by token with a key/value cache, in
// C++ without the TorchScript interpreter: the path generation, the
// throughput probes and `mcompress benchmark` use. Logits agree with the
// module's forward.
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mcompress/models/transformer_config.h"
#include "mcompress/runtime/quantized_linear.h"
#include "mcompress/sdk/export.h"
#include "mcompress/sdk/progress.h"

namespace torch::jit {
struct Module;
}

namespace mcompress {

class MCOMPRESS_SDK_API KvDecoder {
 public:
  // Shares (does not copy) the module's parameters; the module must outlive
  // the decoder. Its quantized layers (quantized_layer.h) run quantized.
  explicit KvDecoder(const torch::jit::Module& model);
  // `weights` by Hugging Face name; `quantized` by module path (e.g.
  // "model.layers.0.mlp.down_proj", "model.embed_tokens", "lm_head"): those
  // layers run from MLX's format with the runtime's kernels instead of a
  // floating `<path>.weight` (an MLX checkpoint: read_mlx_lm_checkpoint).
  KvDecoder(const TransformerConfig& config, std::map<std::string, torch::Tensor> weights,
            std::map<std::string, runtime::QuantizedWeight> quantized = {});
  ~KvDecoder();
  KvDecoder(KvDecoder&&) noexcept;
  KvDecoder& operator=(KvDecoder&&) noexcept;

  // Empties the cache.
  void reset();
  // Appends `ids` (int64 [N, T]) to the cache and returns the logits of the
  // last position, float32 [N, vocab]. The first call after reset() is the
  // prefill; later calls with T = 1 are decode steps.
  torch::Tensor append(const torch::Tensor& ids);
  int64_t cached_tokens() const;
  const TransformerConfig& config() const;

  // Quantized layers multiply int8-quantized activations (as llama.cpp
  // does on CPUs; runtime::quantized_linear_int8): the default, the fast
  // way where decoding is compute-bound, about 1% RMS off the exact
  // product. false: the exact kernels (float activations).
  void set_int8_activations(bool enabled);
  bool int8_activations() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Whether KvDecoder(model) can run `model`: a causal LM (causal_lm.h) whose
// layers are its parameters or quantized layers, not frozen into constants.
MCOMPRESS_SDK_API bool decodable(const torch::jit::Module& model);

struct GenerationOptions {
  int64_t max_new_tokens = 64;
  double temperature = 0.0;  // 0: greedy
  int64_t top_k = 0;         // 0: no top-k cut
  double top_p = 1.0;        // 1: no nucleus cut
  uint64_t seed = 0;
  std::vector<int64_t> stop_tokens;  // generation ends after emitting one of these (EOS)
};

struct GenerationResult {
  std::vector<int64_t> tokens;  // the new tokens only
  bool stopped = false;         // ended at a stop token
  double prefill_seconds = 0.0; // time to first token
  double decode_seconds = 0.0;  // the remaining tokens
};

// Generates from `prompt` (non-empty) with batch 1. Deterministic for a seed.
MCOMPRESS_SDK_API GenerationResult generate(KvDecoder& decoder, const std::vector<int64_t>& prompt,
                                            const GenerationOptions& options,
                                            Progress* progress = nullptr);

}  // namespace mcompress
