#include "mcompress/framework/probes/probes.h"

#include "mcompress/framework/probes/generation_probes.h"
#include "mcompress/formats/hf_model.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>

#include <torch/cuda.h>

#include <fmt/format.h>

#include "mcompress/framework/probes/latency_timing.h"
#include "mcompress/framework/probes/resource_probes.h"
#include "mcompress/sdk/error.h"
#include "mcompress/models/evaluate.h"
#include "mcompress/models/fidelity.h"
#include "mcompress/models/kv_decoding.h"
#include "mcompress/models/language_model.h"
#include "mcompress/models/model_stats.h"
#include "mcompress/models/module_copy.h"

namespace mcompress {
namespace {

bool enabled(const ProbeSpec& spec, const std::string& probe) {
  return std::find(spec.enabled.begin(), spec.enabled.end(), probe) != spec.enabled.end();
}

// `batch` rows cycled from `rows` (its first dimension is the batch).
torch::Tensor cycle_rows(const torch::Tensor& rows, int64_t batch) {
  const int64_t available = rows.size(0);
  if (available >= batch) return rows.slice(0, 0, batch).contiguous();
  std::vector<int64_t> repeats(size_t(rows.dim()), 1);
  repeats[0] = (batch + available - 1) / available;
  return rows.repeat(repeats).slice(0, 0, batch).contiguous();
}

// Real samples when there is data (some layers' speed depends on values,
// e.g. sparse kernels), else the example input repeated.
torch::Tensor latency_input(const Dataset* eval, const torch::Tensor& example, int64_t batch) {
  if (eval && eval->size() > 0) return cycle_rows(eval->inputs, batch);
  return cycle_rows(example, batch);
}

// How the recipe's probes warm up: at least `latency_warmup` runs, then until
// the timings settle.
WarmupPolicy warmup_of(const ProbeSpec& spec) {
  WarmupPolicy policy;
  policy.min_runs = spec.latency_warmup;
  return policy;
}

// Milliseconds per forward call (LatencySummary) after warm-up runs that let
// the profiling executor specialise the graph and the timings settle.
// `wait` blocks until the device has finished (GPU calls return early).
LatencySummary time_forward(const torch::jit::Module& model, const torch::Tensor& inputs,
                            const ProbeSpec& spec, Progress& progress, const std::string& label = "latency",
                            const std::function<void()>& wait = [] {}) {
  torch::NoGradGuard no_grad;
  EvalModeGuard eval_mode(model);
  return time_latency(
      [&] {
        forward_tensor(model, inputs);
        wait();
      },
      spec.latency_runs, warmup_of(spec), progress, fmt::format("{} batch {}", label, inputs.size(0)));
}

// "<prefix>_b<batch>_median_ms" and the rest of the summary: the spread
// (p25/p75) and how many warm-up runs it took, for every latency recorded.
void record_latency(Metrics& metrics, const std::string& prefix, int64_t batch, const LatencySummary& latency) {
  const auto key = [&](const char* what) { return fmt::format("{}_b{}_{}", prefix, batch, what); };
  metrics[key("median_ms")] = latency.median_ms;
  metrics[key("p25_ms")] = latency.p25_ms;
  metrics[key("p75_ms")] = latency.p75_ms;
  metrics[key("p95_ms")] = latency.p95_ms;
  metrics[key("warmup_runs")] = latency.warmup_runs;
}

void probe_latency(const torch::jit::Module& model, const Dataset* eval,
                   const torch::Tensor& example, const ProbeSpec& spec, Progress& progress,
                   Metrics& metrics) {
  if (spec.latency_runs <= 0) return;
  // How busy the machine was: timings taken on a machine busier than its
  // cores are not comparable with each other (the report says so).
  if (const auto load = load_average_1m()) metrics["load_average_1m"] = *load;
  for (int64_t batch : spec.latency_batch_sizes) {
    if (batch <= 0) throw Error(fmt::format("latency batch sizes must be positive, got {}", batch));
    const auto latency = time_forward(model, latency_input(eval, example, batch), spec, progress);
    record_latency(metrics, "latency", batch, latency);
    metrics[fmt::format("latency_b{}_p99_ms", batch)] = latency.p99_ms;
    metrics[fmt::format("throughput_b{}_per_s", batch)] = 1000.0 * batch / latency.median_ms;
  }
}

// The same latency probe on the first CUDA device, as the GPU baseline, when
// this LibTorch has CUDA and a GPU is present (device_info() says which).
// A model that cannot run there (a CPU-only custom operator) gets no GPU
// numbers and the progress line says why.
void probe_gpu_latency(const torch::jit::Module& model, const Dataset* eval, const torch::Tensor& example,
                       const ProbeSpec& spec, Progress& progress, Metrics& metrics) {
  if (spec.latency_runs <= 0 || !torch::cuda::is_available()) return;
  try {
    torch::jit::Module on_gpu = deep_copy(model);
    on_gpu.to(torch::Device(torch::kCUDA, 0));
    for (int64_t batch : spec.latency_batch_sizes) {
      const auto inputs = latency_input(eval, example, batch).to(torch::Device(torch::kCUDA, 0));
      const auto latency =
          time_forward(on_gpu, inputs, spec, progress, "GPU latency", [] { torch::cuda::synchronize(); });
      record_latency(metrics, "gpu_latency", batch, latency);
      metrics[fmt::format("gpu_throughput_b{}_per_s", batch)] = 1000.0 * batch / latency.median_ms;
    }
  } catch (const c10::Error& error) {
    progress.finish(fmt::format("no GPU baseline for this model: {}", error.what_without_backtrace()));
  }
}

// What a deployment ships: the serialized TorchScript archive.
double serialized_size(const torch::jit::Module& model) {
  std::ostringstream out;
  model.save(out);
  return double(out.str().size());
}

}  // namespace

Metrics run_probes(const torch::jit::Module& model, const Dataset* eval,
                   const torch::Tensor& example_input, const ProbeSpec& spec, Progress& progress,
                   const torch::jit::Module* reference) {
  Metrics metrics;
  if (enabled(spec, "accuracy") && eval && eval->size() > 0) {
    metrics["accuracy"] = evaluate_accuracy(model, *eval, spec.eval_batch_size, progress);
  }
  if (enabled(spec, "perplexity") && eval && eval->is_token_sequence()) {
    const auto scores = evaluate_language_model(model, *eval, spec.eval_batch_size, progress);
    metrics["cross_entropy"] = scores.cross_entropy;
    metrics[eval->alphabet.empty() ? "bits_per_token" : "bits_per_char"] = scores.bits_per_token;
    metrics["perplexity"] = scores.perplexity;
    metrics["next_token_accuracy"] = scores.accuracy;
  }
  if (enabled(spec, "fidelity") && reference && eval && eval->size() > 0) {
    const auto fidelity = evaluate_fidelity(model, *reference, *eval, spec.eval_batch_size, progress);
    metrics["fidelity_top1_agreement"] = fidelity.top1_agreement;
    metrics["fidelity_mean_kl"] = fidelity.mean_kl;
  }
  if (enabled(spec, "latency")) {
    probe_latency(model, eval, example_input, spec, progress, metrics);
    probe_gpu_latency(model, eval, example_input, spec, progress, metrics);
  }
  if (enabled(spec, "memory")) {
    const int64_t batch = *std::max_element(spec.latency_batch_sizes.begin(), spec.latency_batch_sizes.end());
    for (const auto& [key, value] : measure_inference_memory(model, latency_input(eval, example_input, batch), 3)) {
      metrics[key] = value;
    }
  }
  for (const auto& [key, value] : run_edge_profile(model, example_input, spec, progress)) metrics[key] = value;
  if (enabled(spec, "params")) metrics["params"] = double(count_parameters(model));
  if (enabled(spec, "macs")) metrics["macs"] = double(count_macs(model, example_input));
  // Checkpoint tensors still in place (not quantized or frozen away): the
  // decoder and the checkpoint writer can read the model.
  const bool causal_lm = writable_as_checkpoint(model);
  // Quantized layers decode too (KvDecoder runs them from their codes).
  if (enabled(spec, "generation") && decodable(model)) {
    for (const auto& [key, value] : probe_generation(model, eval, spec.prompt_length, spec.new_tokens, progress))
      metrics[key] = value;
  }
  // A checkpoint is its tensors' bytes; serialising a billion-parameter
  // model into memory only to count them would double its footprint.
  if (enabled(spec, "size")) metrics["size_bytes"] = causal_lm ? checkpoint_bytes(model) : serialized_size(model);
  metrics["threads"] = double(at::get_num_threads());
  return metrics;
}

TextSample text_sample(const torch::jit::Module& model, const Dataset& eval, int64_t length,
                       uint64_t seed) {
  if (!eval.is_token_sequence() || eval.size() == 0) {
    throw Error("the text_sample probe needs held-out text (a text dataset)");
  }
  const CharVocabulary vocabulary{eval.alphabet};
  const auto prompt = eval.inputs.slice(0, 0, 1);
  const int64_t context = prompt.size(1);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  SamplingOptions options;
  options.new_tokens = length;
  options.temperature = 0.8;
  options.max_context = context;
  const auto tokens = sample_tokens(model, prompt, options, generator);
  return {vocabulary.decode(prompt.reshape({-1})),
          vocabulary.decode(tokens.slice(1, context).reshape({-1}))};
}

}  // namespace mcompress
