#pragma once
// Probes for Hugging Face causal language models (causal_lm.h), run through
// the key/value-cache decoder (kv_decoding.h): what a deployment sees when it
// generates.
#include <cstdint>
#include <string>

#include <torch/script.h>

#include "mcompress/formats/tokenizer.h"
#include "mcompress/framework/probes/probes.h"
#include "mcompress/sdk/data.h"
#include "mcompress/sdk/progress.h"

namespace mcompress {

// The `generation` probe: prefill of a `prompt_length`-token prompt (the
// held-out text's first tokens when `eval` has enough, else token ids drawn
// from a seeded generator), then `new_tokens` greedy decode steps at batch 1;
// the median of 3 runs after a warm-up. Metrics "prefill_tokens_per_s",
// "decode_tokens_per_s", "time_to_first_token_ms", "prompt_tokens",
// "decoded_tokens". Uses the current intra-op thread count.
Metrics probe_generation(const torch::jit::Module& model, const Dataset* eval, int64_t prompt_length,
                         int64_t new_tokens, Progress& progress);

// The `text_sample` probe of a causal LM: it continues the first window of
// the held-out text for `length` tokens at temperature 0.8 (top-p 0.95) from
// a seeded generator, decoded with the tokenizer; ends early at EOS. A model
// whose layers the decoder cannot read (quantized) samples through its
// forward at temperature 0.8 instead.
TextSample causal_lm_text_sample(const torch::jit::Module& model, const Dataset& eval,
                                 const Tokenizer& tokenizer, int64_t length, uint64_t seed);

// Bytes of the model's parameters as a checkpoint stores them (the `size`
// probe of a causal LM: its safetensors hold exactly these, plus headers).
double checkpoint_bytes(const torch::jit::Module& model);

}  // namespace mcompress
