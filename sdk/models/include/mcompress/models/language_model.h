#pragma once
// Character-level language modelling, shared by the text data loader, the
// language-model probes and the language-model distillation passes. A model
// maps token ids [N, T] (int64) to next-token logits [N, T, vocabulary] and is
// causal: the logits at position t depend on tokens 0..t only.
#include <torch/script.h>

#include <cstdint>
#include <optional>
#include <string>

#include "mcompress/sdk/data.h"
#include "mcompress/sdk/export.h"
#include "mcompress/sdk/progress.h"

namespace mcompress {

// Token ids of bytes: id i stands for symbols[i]. Built from a corpus as its
// distinct bytes in ascending order, so the same text always gives the same ids.
struct MCOMPRESS_SDK_API CharVocabulary {
  std::string symbols;

  static CharVocabulary of_text(const std::string& text);
  int64_t size() const { return static_cast<int64_t>(symbols.size()); }
  // int64 [text.size()]; throws mcompress::Error naming a byte not in the vocabulary.
  torch::Tensor encode(const std::string& text) const;
  // ids: 1-D int64; throws mcompress::Error for an id out of range.
  std::string decode(const torch::Tensor& ids) const;
};

// Next-token windows of a token stream: sample i has inputs
// tokens[i·stride, i·stride + context) and targets shifted by one. Windows
// share no storage with `tokens`. Throws mcompress::Error when the stream is
// shorter than context + 1.
MCOMPRESS_SDK_API Dataset next_token_windows(const torch::Tensor& tokens, int64_t context,
                                             int64_t stride, const std::string& name,
                                             const CharVocabulary& vocabulary);

struct LanguageModelScores {
  double cross_entropy = 0.0;   // nats per token
  double bits_per_token = 0.0;  // cross_entropy / ln 2 (bits per character for a char model)
  double perplexity = 0.0;      // exp(cross_entropy)
  double accuracy = 0.0;        // next-token top-1 accuracy
  int64_t tokens = 0;           // predictions scored
};

// Scores `model` on every position of every window of `data` (eval mode, no gradients).
MCOMPRESS_SDK_API LanguageModelScores evaluate_language_model(const torch::jit::Module& model,
                                                              const Dataset& data,
                                                              int64_t batch_size,
                                                              Progress& progress);

struct SamplingOptions {
  int64_t new_tokens = 64;   // tokens appended to the prompt
  double temperature = 1.0;  // > 0; logits are divided by it
  // With a teacher, each token is drawn from
  // teacher_weight · p_teacher + (1 − teacher_weight) · p_model
  // (MiniLLM's teacher-mixed sampling); without one, from p_model.
  const torch::jit::Module* teacher = nullptr;
  double teacher_weight = 0.0;
  int64_t max_context = 0;  // > 0: the model sees at most this many latest tokens
};

// Extends `prompt` ([N, P] int64, P ≥ 1) autoregressively and returns
// [N, P + new_tokens]. Eval mode, no gradients; draws from `generator` only,
// so a seeded generator gives the same text every time.
MCOMPRESS_SDK_API torch::Tensor sample_tokens(const torch::jit::Module& model,
                                              const torch::Tensor& prompt,
                                              const SamplingOptions& options,
                                              at::Generator& generator);

}  // namespace mcompress
