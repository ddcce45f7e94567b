#include "mcompress/models/language_model.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional/loss.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <array>
#include <cmath>

#include "mcompress/sdk/error.h"
#include "mcompress/models/evaluate.h"

namespace mcompress {
namespace {

std::string printable(unsigned char byte) {
  if (byte >= 32 && byte < 127) return fmt::format("'{}'", char(byte));
  return fmt::format("byte 0x{:02x}", byte);
}

void check_logits(const torch::Tensor& logits, const torch::Tensor& inputs) {
  if (logits.dim() != 3 || logits.size(0) != inputs.size(0) || logits.size(1) != inputs.size(1)) {
    throw Error(fmt::format("a language model must map tokens [N, T] to logits [N, T, "
                            "vocabulary]; got [{}] for inputs [{}]",
                            fmt::join(logits.sizes(), ", "), fmt::join(inputs.sizes(), ", ")));
  }
}

}  // namespace

CharVocabulary CharVocabulary::of_text(const std::string& text) {
  std::array<bool, 256> present{};
  for (unsigned char c : text) present[c] = true;
  CharVocabulary vocabulary;
  for (int c = 0; c < 256; ++c)
    if (present[size_t(c)]) vocabulary.symbols.push_back(char(c));
  return vocabulary;
}

torch::Tensor CharVocabulary::encode(const std::string& text) const {
  std::array<int64_t, 256> id;
  id.fill(-1);
  for (size_t i = 0; i < symbols.size(); ++i) id[static_cast<unsigned char>(symbols[i])] = int64_t(i);
  auto ids = torch::empty({int64_t(text.size())}, torch::kLong);
  auto* out = ids.data_ptr<int64_t>();
  for (size_t i = 0; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (id[byte] < 0) {
      throw Error(fmt::format("{} at offset {} is not in the vocabulary of {} symbols", printable(byte),
                              i, symbols.size()));
    }
    out[i] = id[byte];
  }
  return ids;
}

std::string CharVocabulary::decode(const torch::Tensor& ids) const {
  auto flat = ids.to(torch::kLong).contiguous().reshape({-1});
  std::string text;
  text.reserve(size_t(flat.numel()));
  const auto* in = flat.data_ptr<int64_t>();
  for (int64_t i = 0; i < flat.numel(); ++i) {
    if (in[i] < 0 || in[i] >= size()) {
      throw Error(fmt::format("token id {} is outside the vocabulary of {} symbols", in[i], size()));
    }
    text.push_back(symbols[size_t(in[i])]);
  }
  return text;
}

Dataset next_token_windows(const torch::Tensor& tokens, int64_t context, int64_t stride,
                           const std::string& name, const CharVocabulary& vocabulary) {
  if (context < 1 || stride < 1) {
    throw Error(fmt::format("context ({}) and stride ({}) must be positive", context, stride));
  }
  const int64_t length = tokens.numel();
  if (length < context + 1) {
    throw Error(fmt::format("'{}' has {} tokens, fewer than one window of context {} plus its "
                            "next token; use a shorter context or more text",
                            name, length, context));
  }
  const int64_t count = (length - context - 1) / stride + 1;
  // [count, context + 1] windows; inputs and targets are views of one copy.
  auto windows = tokens.reshape({-1}).unfold(0, context + 1, stride).slice(0, 0, count).contiguous();
  Dataset data;
  data.name = name;
  data.inputs = windows.slice(1, 0, context).contiguous();
  data.targets = windows.slice(1, 1, context + 1).contiguous();
  data.num_classes = vocabulary.size();
  data.alphabet = vocabulary.symbols;
  return data;
}

LanguageModelScores evaluate_language_model(const torch::jit::Module& model, const Dataset& data,
                                            int64_t batch_size, Progress& progress) {
  torch::NoGradGuard no_grad;
  EvalModeGuard eval_mode(model);
  BatchIterator batches(data, batch_size, /*shuffle=*/false, /*seed=*/0);
  progress.start("evaluate " + data.name, batches.batches_per_epoch());
  double total_nats = 0.0;
  int64_t correct = 0;
  LanguageModelScores scores;
  int64_t done = 0;
  Batch batch;
  while (batches.next(batch)) {
    const auto logits = forward_tensor(model, batch.inputs);
    check_logits(logits, batch.inputs);
    // Positions with a negative target were scored by an earlier window.
    const auto all_targets = batch.targets.reshape({-1});
    const auto scored = all_targets.ge(0).nonzero().reshape({-1});
    const auto rows = logits.reshape({-1, logits.size(2)}).index_select(0, scored).to(torch::kFloat);
    const auto targets = all_targets.index_select(0, scored);
    total_nats += torch::nn::functional::cross_entropy(
                      rows, targets,
                      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                      .item<double>();
    correct += rows.argmax(1).eq(targets).sum().item<int64_t>();
    scores.tokens += targets.numel();
    progress.update(++done, fmt::format("{:.3f} nats/token", total_nats / double(scores.tokens)));
  }
  if (scores.tokens == 0) throw Error(fmt::format("'{}' has no scored positions", data.name));
  scores.cross_entropy = total_nats / double(scores.tokens);
  scores.bits_per_token = scores.cross_entropy / std::log(2.0);
  scores.perplexity = std::exp(scores.cross_entropy);
  scores.accuracy = double(correct) / double(scores.tokens);
  progress.finish(fmt::format("{:.3f} bits/token", scores.bits_per_token));
  return scores;
}

torch::Tensor sample_tokens(const torch::jit::Module& model, const torch::Tensor& prompt,
                            const SamplingOptions& options, at::Generator& generator) {
  if (prompt.dim() != 2 || prompt.size(1) < 1) {
    throw Error(fmt::format("sampling needs a prompt of token ids [N, P] with P >= 1; got [{}]",
                            fmt::join(prompt.sizes(), ", ")));
  }
  if (!(options.temperature > 0)) {
    throw Error(fmt::format("sampling temperature must be positive, got {}", options.temperature));
  }
  torch::NoGradGuard no_grad;
  EvalModeGuard model_mode(model);
  std::optional<EvalModeGuard> teacher_mode;
  if (options.teacher) teacher_mode.emplace(*options.teacher);
  auto next_probabilities = [&](const torch::jit::Module& m, const torch::Tensor& tokens) {
    const auto logits = forward_tensor(m, tokens);
    check_logits(logits, tokens);
    return torch::softmax(logits.select(1, logits.size(1) - 1) / options.temperature, -1);
  };
  auto tokens = prompt.to(torch::kLong);
  for (int64_t i = 0; i < options.new_tokens; ++i) {
    auto visible = tokens;
    if (options.max_context > 0 && visible.size(1) > options.max_context)
      visible = visible.slice(1, visible.size(1) - options.max_context);
    auto probabilities = next_probabilities(model, visible);
    if (options.teacher && options.teacher_weight > 0) {
      probabilities = options.teacher_weight * next_probabilities(*options.teacher, visible) +
                      (1.0 - options.teacher_weight) * probabilities;
    }
    const auto next = torch::multinomial(probabilities, 1, /*replacement=*/false, generator);
    tokens = torch::cat({tokens, next}, 1);
  }
  return tokens;
}

}  // namespace mcompress
