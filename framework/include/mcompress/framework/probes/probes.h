#pragma once
// Measurements of a model, taken by the host before and after every stage.
#include <map>
#include <string>

#include <torch/script.h>

#include "mcompress/framework/recipe/recipe.h"
#include "mcompress/sdk/data.h"
#include "mcompress/sdk/progress.h"

namespace mcompress {

// Flat metric names -> values, e.g. "accuracy" 0.87, "latency_b1_median_ms",
// "latency_b1_p95_ms", "params", "macs", "size_bytes", "threads"; for language
// models on text data (the `perplexity` probe) also "cross_entropy" (nats per
// character), "bits_per_char" and "perplexity", and "accuracy" is next-character
// accuracy.
using Metrics = std::map<std::string, double>;

// Runs the built-in probes `spec` enables. `eval` may be null when no data is
// set (accuracy is then skipped). `reference` (the original model) is what the
// `fidelity` probe compares with ("fidelity_top1_agreement",
// "fidelity_mean_kl"). `memory` adds "peak_rss_mb" and "inference_rss_mb" at
// the largest latency batch size; `latency` also the spread of every latency
// ("latency_b<N>_p25_ms", "_p75_ms": the interquartile range), "_p99_ms",
// "_warmup_runs" (warm-up runs until the timings settled),
// "throughput_b<N>_per_s" and "load_average_1m" (the machine's, when timing
// began), timed with OpenBLAS on the calling thread (latency_timing.h);
// `spec.edge` adds the edge profile (resource_probes.h).
// Uses the current intra-op thread count.
Metrics run_probes(const torch::jit::Module& model, const Dataset* eval,
                   const torch::Tensor& example_input, const ProbeSpec& spec, Progress& progress,
                   const torch::jit::Module* reference = nullptr);


// The `text_sample` probe: a language model continues the first window of
// the held-out text for `length` characters, drawn at temperature 0.8 from a
// generator seeded with `seed` (the same model always writes the same text).
struct TextSample {
  std::string prompt;
  std::string continuation;
};
TextSample text_sample(const torch::jit::Module& model, const Dataset& eval, int64_t length,
                       uint64_t seed);

}  // namespace mcompress
