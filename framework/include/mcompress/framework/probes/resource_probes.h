#pragma once
// Probes of what running a model costs the machine: peak memory, behaviour
// under an edge device's limits, and which device measured it.
#include <map>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/script.h>

#include "mcompress/framework/recipe/recipe.h"
#include "mcompress/sdk/data.h"
#include "mcompress/sdk/progress.h"

namespace mcompress {

// Peak resident set size (VmHWM) while running forward on `inputs`, after the
// kernel's high-water mark is reset (/proc/self/clear_refs), and how much of
// it inference added over the resident size before: "peak_rss_mb",
// "inference_rss_mb".
std::map<std::string, double> measure_inference_memory(const torch::jit::Module& model,
                                                       const torch::Tensor& inputs, int runs);

// Batch-1 latency and memory with the recipe's edge limits applied to this
// process (intra-op threads, CPU pinning of the calling thread); the previous
// settings are restored afterwards. "edge_latency_b1_median_ms",
// "edge_latency_b1_p95_ms", "edge_peak_rss_mb", "edge_required_mb" (weights
// and buffers plus the memory inference adds) and "edge_fits" (1 when that
// fits `memory_mb`, else 0).
std::map<std::string, double> run_edge_profile(const torch::jit::Module& model,
                                               const torch::Tensor& example_input,
                                               const ProbeSpec& spec, Progress& progress);

// Where measurements were taken: CPU model, cores, threads, LibTorch version,
// and whether a GPU baseline could be measured (and if not, why).
nlohmann::json device_info();

}  // namespace mcompress
