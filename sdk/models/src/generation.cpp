#include <ATen/CPUGeneratorImpl.h>

#include <fmt/format.h>

#include <chrono>
#include <limits>

#include "mcompress/models/kv_decoding.h"
#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

void check(const GenerationOptions& options) {
  if (!(options.temperature >= 0.0))
    throw Error(fmt::format("temperature must be 0 (greedy) or positive, is {}", options.temperature));
  if (options.top_k < 0) throw Error(fmt::format("top_k must be 0 (no cut) or positive, is {}", options.top_k));
  if (!(options.top_p > 0.0 && options.top_p <= 1.0))
    throw Error(fmt::format("top_p must be in (0, 1], is {}", options.top_p));
}

int64_t most_likely(const torch::Tensor& logits) {
  const float* values = logits.data_ptr<float>();
  int64_t best = 0;
  for (int64_t i = 1; i < logits.numel(); ++i)
    if (values[i] > values[best]) best = i;
  return best;
}

// Temperature, then the top-k cut, then the nucleus (the most likely tokens
// whose probabilities reach top_p; the first always stays), as Hugging Face's
// logits warpers apply them.
int64_t sample(const torch::Tensor& logits, const GenerationOptions& options, at::Generator& generator) {
  torch::Tensor scores = logits / options.temperature;
  const int64_t vocabulary = scores.numel();
  if (options.top_k > 0 && options.top_k < vocabulary) {
    const torch::Tensor kth = std::get<0>(scores.topk(options.top_k)).min();
    scores = scores.masked_fill(scores < kth, -std::numeric_limits<float>::infinity());
  }
  if (options.top_p < 1.0) {
    auto [sorted, order] = scores.sort(/*dim=*/-1, /*descending=*/true);
    const torch::Tensor probabilities = torch::softmax(sorted, -1);
    const torch::Tensor before = probabilities.cumsum(-1) - probabilities;  // mass of the more likely tokens
    const torch::Tensor removed_sorted = before >= options.top_p;
    const torch::Tensor removed = torch::zeros_like(removed_sorted).scatter(-1, order, removed_sorted);
    scores = scores.masked_fill(removed, -std::numeric_limits<float>::infinity());
  }
  const torch::Tensor probabilities = torch::softmax(scores, -1);
  return at::multinomial(probabilities, 1, /*replacement=*/false, generator).item<int64_t>();
}

}  // namespace

GenerationResult generate(KvDecoder& decoder, const std::vector<int64_t>& prompt, const GenerationOptions& options,
                          Progress* progress) {
  check(options);
  if (prompt.empty()) throw Error("generation needs a prompt of at least one token");
  GenerationResult result;
  if (options.max_new_tokens <= 0) return result;
  torch::NoGradGuard no_grad;
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  auto choose = [&](const torch::Tensor& logits) {
    const torch::Tensor row = logits.select(0, 0).contiguous();
    return options.temperature == 0.0 ? most_likely(row) : sample(row, options, generator);
  };
  auto emit = [&](int64_t token) {
    result.tokens.push_back(token);
    for (int64_t stop : options.stop_tokens) result.stopped = result.stopped || token == stop;
    if (progress) progress->update(int64_t(result.tokens.size()), "");
    return !result.stopped && int64_t(result.tokens.size()) < options.max_new_tokens;
  };

  if (progress) progress->start("generating", options.max_new_tokens);
  const Clock::time_point prefill_start = Clock::now();
  decoder.reset();
  const torch::Tensor ids = torch::tensor(prompt, torch::kLong).unsqueeze(0);
  int64_t token = choose(decoder.append(ids));
  result.prefill_seconds = seconds_since(prefill_start);

  const Clock::time_point decode_start = Clock::now();
  torch::Tensor next = torch::empty({1, 1}, torch::kLong);
  while (emit(token)) {
    next.data_ptr<int64_t>()[0] = token;
    token = choose(decoder.append(next));
  }
  result.decode_seconds = seconds_since(decode_start);
  if (progress) progress->finish(fmt::format("{} tokens", result.tokens.size()));
  return result;
}

}  // namespace mcompress
