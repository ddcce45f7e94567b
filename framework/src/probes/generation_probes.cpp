#include "mcompress/framework/probes/generation_probes.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include <fmt/format.h>

#include "mcompress/formats/hf_model.h"
#include "mcompress/models/causal_lm.h"
#include "mcompress/models/language_model.h"
#include "mcompress/models/kv_decoding.h"
#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

constexpr int kRuns = 3;

std::vector<int64_t> prompt_tokens(const torch::jit::Module& model, const Dataset* eval, int64_t length) {
  if (eval && eval->is_token_sequence() && eval->size() > 0) {
    const auto flat = eval->inputs.reshape({-1});
    if (flat.numel() >= length) {
      const auto head = flat.slice(0, 0, length).contiguous();
      return {head.data_ptr<int64_t>(), head.data_ptr<int64_t>() + length};
    }
  }
  auto generator = at::make_generator<at::CPUGeneratorImpl>(uint64_t{0});
  const auto ids = torch::randint(causal_lm_config(model).vocab_size, {length}, generator, torch::kLong);
  return {ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + length};
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

Metrics probe_generation(const torch::jit::Module& model, const Dataset* eval, int64_t prompt_length,
                         int64_t new_tokens, Progress& progress) {
  KvDecoder decoder(model);
  const auto prompt = prompt_tokens(model, eval, prompt_length);
  GenerationOptions options;
  options.max_new_tokens = new_tokens;  // greedy, no stop token: always the same work
  std::vector<double> prefill, decode;
  progress.start("generation", kRuns + 1);
  for (int run = 0; run <= kRuns; ++run) {
    decoder.reset();
    const GenerationResult result = generate(decoder, prompt, options);
    if (run > 0) {  // the first run warms caches and allocators
      prefill.push_back(result.prefill_seconds);
      decode.push_back(result.decode_seconds / double(std::max<int64_t>(1, int64_t(result.tokens.size()) - 1)));
    }
    progress.update(run + 1, "");
  }
  Metrics metrics;
  metrics["prompt_tokens"] = double(prompt.size());
  metrics["decoded_tokens"] = double(new_tokens);
  metrics["time_to_first_token_ms"] = 1000.0 * median(prefill);
  metrics["prefill_tokens_per_s"] = double(prompt.size()) / median(prefill);
  metrics["decode_tokens_per_s"] = 1.0 / median(decode);
  progress.finish(fmt::format("prefill {:.0f} tokens/s, decode {:.1f} tokens/s",
                              metrics["prefill_tokens_per_s"], metrics["decode_tokens_per_s"]));
  return metrics;
}

TextSample causal_lm_text_sample(const torch::jit::Module& model, const Dataset& eval,
                                 const Tokenizer& tokenizer, int64_t length, uint64_t seed) {
  if (!eval.is_token_sequence() || eval.size() == 0)
    throw Error("the text_sample probe needs held-out text (a text dataset)");
  const auto first = eval.inputs[0].contiguous();
  const std::vector<int64_t> prompt(first.data_ptr<int64_t>(), first.data_ptr<int64_t>() + first.numel());
  if (!decodable(model)) {
    // Layers the decoder cannot read (frozen into constants): sample through
    // the module's own forward, one window of context at a time.
    auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
    SamplingOptions sampling;
    sampling.new_tokens = length;
    sampling.temperature = 0.8;
    sampling.max_context = first.numel();
    const auto tokens = sample_tokens(model, first.unsqueeze(0), sampling, generator).slice(1, first.numel());
    const auto flat = tokens.reshape({-1}).contiguous();
    return {tokenizer.decode(prompt),
            tokenizer.decode({flat.data_ptr<int64_t>(), flat.data_ptr<int64_t>() + flat.numel()}, true)};
  }
  KvDecoder decoder(model);
  GenerationOptions options;
  options.max_new_tokens = length;
  options.temperature = 0.8;
  options.top_p = 0.95;
  options.seed = seed;
  if (const auto eos = tokenizer.eos_id()) options.stop_tokens.push_back(*eos);
  const GenerationResult result = generate(decoder, prompt, options);
  return {tokenizer.decode(prompt), tokenizer.decode(result.tokens, /*skip_special_tokens=*/true)};
}

double checkpoint_bytes(const torch::jit::Module& model) {
  double bytes = 0;
  for (const auto& parameter : model.parameters()) bytes += double(parameter.numel() * parameter.element_size());
  return bytes;
}

}  // namespace mcompress
