#include "mcompress/framework/probes/probes.h"

#include "mcompress/framework/probes/generation_probes.h"
#include "mcompress/formats/hf_model.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>

#include <torch/cuda.h>

#include <fmt/format.h>

#include <cstdlib>

#include "mcompress/framework/probes/latency_timing.h"
#include "mcompress/framework/probes/resource_probes.h"
#include "mcompress/formats/onnx_export.h"
#include "probes/onnx_runtime_session.h"
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

// Says `message` under `label` once per process: a pipeline probes every
// stage, and what keeps one stage out of ONNX Runtime usually holds for all.
void say_once(Progress& progress, const std::string& label, const std::string& message) {
  static std::mutex mutex;
  static std::set<std::string> said;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (!said.insert(message).second) return;
  }
  progress.start(label, 0);
  progress.finish(message);
}

// Why `model` is not timed in ONNX Runtime, or nullopt when it may be. Only
// image models with one float input export (docs/onnx.md); checking first
// spares freezing a language model only to have it refused.
std::optional<std::string> onnx_runtime_skip_reason(const torch::jit::Module& model, const Dataset* eval,
                                                    const torch::Tensor& example) {
  if (writable_as_checkpoint(model) || (eval && eval->is_token_sequence()))
    return std::string("language models do not export to ONNX");
  if (example.scalar_type() != torch::kFloat)
    return fmt::format("its input is {}, and the ONNX export takes float32 inputs",
                       c10::toString(example.scalar_type()));
  const auto forward = model.find_method("forward");
  if (!forward || forward->function().getSchema().arguments().size() != 2)
    return std::string("its forward does not take exactly one input");
  return std::nullopt;
}

// The latency probe again in ONNX Runtime, where it is present: the model is
// exported once (at the example input's shape, batch dynamic) and timed like
// LibTorch's forward at every batch size, with as many intra-op threads.
// A model that does not export or run there is skipped, saying why once.
void probe_onnx_runtime_latency(const torch::jit::Module& model, const Dataset* eval, const torch::Tensor& example,
                                const ProbeSpec& spec, Progress& progress, Metrics& metrics) {
  if (spec.latency_runs <= 0 || onnx_runtime_disabled_by_environment()) return;
  const std::string label = "ONNX Runtime latency";
  const auto runtime = load_onnx_runtime();
  // Absent where nobody asked for it: a machine without ONNX Runtime is the
  // usual case, and the stage's device info says "not present" already.
  if (!runtime.library) {
    if (std::getenv("MCOMPRESS_ONNXRUNTIME_LIBRARY")) say_once(progress, label, "not timed: " + runtime.why_not);
    return;
  }
  if (const auto reason = onnx_runtime_skip_reason(model, eval, example))
    return say_once(progress, label, fmt::format("not timed: {}", *reason));
  const auto message = [](const std::exception& error) -> std::string {
    if (const auto* torch_error = dynamic_cast<const c10::Error*>(&error)) return torch_error->what_without_backtrace();
    return error.what();
  };
  std::unique_ptr<OnnxRuntimeSession> session;
  try {
    OnnxExportOptions options;
    options.input_shape = example.sizes().vec();
    const OnnxModel onnx = torchscript_to_onnx(model, options);
    std::vector<std::string> outputs;
    for (const auto& output : onnx.graph.outputs) outputs.push_back(output.name);
    session = std::make_unique<OnnxRuntimeSession>(runtime.library, encode_onnx_model(onnx),
                                                   onnx.graph.inputs.at(0).name, outputs, at::get_num_threads());
  } catch (const std::exception& error) {
    return say_once(progress, label, fmt::format("not timed: the model does not export to ONNX: {}", message(error)));
  }
  Metrics timed;  // recorded only when every batch size ran
  try {
    for (int64_t batch : spec.latency_batch_sizes) {
      const auto inputs = latency_input(eval, example, batch).to(torch::kFloat).contiguous();
      const auto latency = time_latency([&] { session->run(inputs); }, spec.latency_runs, warmup_of(spec), progress,
                                        fmt::format("{} {} batch {}", label, runtime.version, batch));
      record_latency(timed, "onnxruntime_latency", batch, latency);
    }
  } catch (const std::exception& error) {
    return say_once(progress, label,
                    fmt::format("not timed: ONNX Runtime {} did not run the model: {}", runtime.version,
                                message(error)));
  }
  metrics.insert(timed.begin(), timed.end());
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
    probe_onnx_runtime_latency(model, eval, example_input, spec, progress, metrics);
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
