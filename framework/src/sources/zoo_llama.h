#pragma once
// The zoo's Llama: a Hugging Face Llama checkpoint model (causal_lm.h) of
// configurable size with fresh weights, so a recipe can train a real small
// language model and every language-model feature is shown on it.
#include <cstdint>
#include <map>
#include <string>

namespace torch::jit {
struct Module;
}

namespace mcompress {

// Option defaults of the zoo's `llama`.
const std::map<std::string, int64_t>& llama_zoo_defaults();

// `options` resolved (all of llama_zoo_defaults' keys); weights N(0, 0.02) as
// transformers initialises Llama, norms 1, embeddings tied.
torch::jit::Module build_zoo_llama(const std::map<std::string, int64_t>& options, int64_t vocabulary,
                                   uint64_t seed);

}  // namespace mcompress
