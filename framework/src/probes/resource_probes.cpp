#include "mcompress/framework/probes/resource_probes.h"

#include <ATen/Parallel.h>
#include <sched.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <thread>
#include <vector>

#include "mcompress/sdk/error.h"
#include "mcompress/framework/probes/latency_timing.h"
#include "mcompress/models/blas_threads.h"
#include "mcompress/models/evaluate.h"
#include "probes/onnx_runtime_session.h"

namespace mcompress {
namespace {

// A field of /proc/self/status in kB, as MB.
double status_mb(const std::string& field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1)) / 1024.0;
  }
  return 0.0;
}

void reset_peak_rss() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";  // resets VmHWM to the current RSS (Linux >= 4.0)
}

// Applies the edge limits; the destructor restores what was there before.
class EdgeLimits {
 public:
  explicit EdgeLimits(const ProbeSpec::Edge& edge) : threads_(at::get_num_threads()) {
    sched_getaffinity(0, sizeof(affinity_), &affinity_);
    at::set_num_threads(edge.threads);
    if (!edge.cpus.empty()) {
      cpu_set_t pinned;
      CPU_ZERO(&pinned);
      for (int64_t cpu : edge.cpus) CPU_SET(static_cast<int>(cpu), &pinned);
      if (sched_setaffinity(0, sizeof(pinned), &pinned) != 0) {
        throw Error(fmt::format("cannot pin to CPUs [{}] (this machine has {}); fix `probes.edge.cpus`",
                                fmt::join(edge.cpus, ", "), std::thread::hardware_concurrency()));
      }
    }
  }
  ~EdgeLimits() {
    sched_setaffinity(0, sizeof(affinity_), &affinity_);
    at::set_num_threads(threads_);
  }

 private:
  int threads_;
  cpu_set_t affinity_;
};

// OpenMP's wait policy is read from the environment when the process starts;
// its default spins before sleeping, which on a machine busier than its cores
// makes multi-threaded latency swing (docs/architecture.md "Measuring").
std::string openmp_wait_policy() {
  std::string policy;
  for (const char* name : {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"}) {
    if (const char* value = std::getenv(name)) policy += fmt::format("{}{}={}", policy.empty() ? "" : " ", name, value);
  }
  return policy.empty() ? "default (threads spin before they sleep)" : policy;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

}  // namespace

std::map<std::string, double> measure_inference_memory(const torch::jit::Module& model,
                                                       const torch::Tensor& inputs, int runs) {
  torch::NoGradGuard no_grad;
  EvalModeGuard eval(model);
  forward_tensor(model, inputs);  // first call allocates the executor's plan
  reset_peak_rss();
  const double before = status_mb("VmRSS");
  for (int i = 0; i < std::max(1, runs); ++i) forward_tensor(model, inputs);
  const double peak = status_mb("VmHWM");
  return {{"peak_rss_mb", peak}, {"inference_rss_mb", std::max(0.0, peak - before)}};
}

std::map<std::string, double> run_edge_profile(const torch::jit::Module& model,
                                               const torch::Tensor& example_input,
                                               const ProbeSpec& spec, Progress& progress) {
  if (!spec.edge) return {};
  const auto& edge = *spec.edge;
  EdgeLimits limits(edge);
  progress.start("edge profile", 1);
  std::map<std::string, double> metrics;
  LatencySummary latency;
  {
    torch::NoGradGuard no_grad;
    EvalModeGuard eval(model);
    WarmupPolicy warmup;
    warmup.min_runs = spec.latency_warmup;
    NullProgress quiet;  // the edge profile is one step of its own progress task
    latency = time_latency([&] { forward_tensor(model, example_input); }, spec.latency_runs, warmup, quiet,
                           "edge latency");
  }
  metrics["edge_latency_b1_median_ms"] = latency.median_ms;
  metrics["edge_latency_b1_p25_ms"] = latency.p25_ms;
  metrics["edge_latency_b1_p75_ms"] = latency.p75_ms;
  metrics["edge_latency_b1_p95_ms"] = latency.p95_ms;
  metrics["edge_latency_b1_warmup_runs"] = latency.warmup_runs;
  const auto memory = measure_inference_memory(model, example_input, 3);
  metrics["edge_peak_rss_mb"] = memory.at("peak_rss_mb");
  metrics["edge_inference_rss_mb"] = memory.at("inference_rss_mb");
  metrics["edge_threads"] = edge.threads;
  // What the device must hold: the weights plus what inference allocates on top.
  double weight_bytes = 0;
  for (const auto& p : model.parameters()) weight_bytes += p.numel() * p.element_size();
  for (const auto& b : model.buffers()) weight_bytes += b.numel() * b.element_size();
  metrics["edge_required_mb"] = weight_bytes / (1 << 20) + memory.at("inference_rss_mb");
  if (edge.memory_mb > 0) {
    metrics["edge_memory_limit_mb"] = edge.memory_mb;
    metrics["edge_fits"] = metrics["edge_required_mb"] <= edge.memory_mb ? 1.0 : 0.0;
  }
  progress.finish(fmt::format("{} ms on {} thread(s)",
                              latency_with_spread(latency.median_ms, latency.p25_ms, latency.p75_ms), edge.threads));
  return metrics;
}

nlohmann::json device_info() {
  nlohmann::json info = {{"type", "cpu"},
                         {"cpu", cpu_model()},
                         {"cores", std::thread::hardware_concurrency()},
                         {"threads", at::get_num_threads()},
                         {"blas_while_timing", blas_is_openblas() ? "OpenBLAS on the calling thread" : "not OpenBLAS: its threads were left as they were"},
                         {"openmp_wait_policy", openmp_wait_policy()},
                         {"libtorch", TORCH_VERSION},
                         {"onnxruntime", onnx_runtime_description()}};
  if (torch::cuda::is_available()) {
    info["gpu_baseline"] = fmt::format("available: {} CUDA device(s)", torch::cuda::device_count());
  } else {
    info["gpu_baseline"] =
        "not available: this LibTorch has no CUDA support or no GPU is present, so no GPU numbers are reported";
  }
  return info;
}

}  // namespace mcompress
