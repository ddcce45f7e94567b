// `mcompress_quant_bench kernels`: mcompress::quantized_linear against
// float32 BLAS (LibTorch's at::linear, i.e. addmm/addmv on the float
// weight) on a 4096x4096 layer, at the same thread count.
//
// 1. Compute: input rows 1, 16, 64 and 256 (--rows), float32 BLAS and the
//    operator at 2, 3, 4, 5, 6 and 8 bits (group 64, float16 scales and
//    biases, as MLX models ship) on the path it picks by default, plus the
//    other paths for 4 and 8 bits where they apply. min / median / max of
//    --runs calls, measured in alternating blocks of calls per variant.
// 2. Batch 1 from memory: a decode step reads every weight once, so it is
//    bound by memory bandwidth. The benchmark measures that bandwidth itself
//    (a parallel read of a buffer twice the size of the last-level cache),
//    then times each kernel on enough copies of the weight to overflow the
//    cache too, and reports bytes of packed weights + scales + biases read
//    per second as a share of it.
//
// OpenBLAS gets the same threads as LibTorch (at::get_num_threads). It
// spins its workers after each product, which slows whatever runs next on
// the same cores, so blocks after a BLAS block wait a moment first.
#include "quant_kernel_bench.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "mcompress/runtime/quantized_linear.h"
#include "memory_bandwidth.h"
#include "openblas_threads.h"

namespace rt = mcompress::runtime;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int64_t kOut = 4096, kIn = 4096, kGroup = 64;
const std::vector<int> kBits{2, 3, 4, 5, 6, 8};

double load_average() {
  std::ifstream in("/proc/loadavg");
  double load = -1;
  in >> load;
  return load;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

int64_t last_level_cache_bytes() {
  const long bytes = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (bytes > 0) return bytes;
  std::ifstream in("/sys/devices/system/cpu/cpu0/cache/index3/size");
  int64_t kib = 0;
  if (in >> kib) return kib * 1024;
  return int64_t{64} << 20;
}

double milliseconds_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

struct Timing {
  double min = 0, median = 0, max = 0;
};

Timing summarize(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  return {ms.front(), ms[ms.size() / 2], ms.back()};
}

struct Variant {
  std::string method;  // what is multiplied
  std::string path;    // how (the operator's kernel, or BLAS)
  double bytes = 0;    // weight bytes one call reads
  std::function<void()> call;
  bool uses_blas = false;
};

// Each variant runs its calls in `blocks` blocks, the variants taking turns,
// so a slow minute of a shared machine does not fall on one variant only.
std::vector<Timing> measure(const std::vector<Variant>& variants, int runs, int blocks = 2) {
  std::vector<std::vector<double>> samples(variants.size());
  const int per_block = std::max(1, (runs + blocks - 1) / blocks);
  bool after_blas = false;
  for (int b = 0; b < blocks; ++b) {
    for (size_t v = 0; v < variants.size(); ++v) {
      if (after_blas) std::this_thread::sleep_for(std::chrono::milliseconds(300));
      for (int i = 0; i < 2; ++i) variants[v].call();
      for (int i = 0; i < per_block; ++i) {
        const auto start = Clock::now();
        variants[v].call();
        samples[v].push_back(milliseconds_since(start));
      }
      after_blas = variants[v].uses_blas;
    }
  }
  std::vector<Timing> timings;
  for (auto& s : samples) timings.push_back(summarize(s));
  return timings;
}

double weight_bytes(const rt::QuantizedWeight& q) {
  return double(q.packed.numel() * 4 + (q.scales.numel() + q.biases.numel()) * q.scales.element_size());
}

// Runs the operator with `choice` and int8 path threshold `int8_rows`
// (process-wide settings, set before every call since variants alternate).
std::function<void()> op_call(const torch::Tensor& x, const rt::QuantizedWeight& q, const torch::Tensor& bias,
                              rt::KernelChoice choice, int64_t int8_rows) {
  return [&x, &q, &bias, choice, int8_rows] {
    rt::set_kernel_choice(choice);
    rt::set_int8_rows_threshold(int8_rows);
    rt::quantized_linear(x, q.packed, q.scales, q.biases, bias, q.bits, q.group_size);
  };
}

// quantized_linear_int8 (int8 activations at every row count) with `choice`.
std::function<void()> int8_op_call(const torch::Tensor& x, const rt::QuantizedWeight& q, const torch::Tensor& bias,
                                   rt::KernelChoice choice) {
  return [&x, &q, &bias, choice] {
    rt::set_kernel_choice(choice);
    rt::quantized_linear_int8(x, q.packed, q.scales, q.biases, bias, q.bits, q.group_size);
  };
}

std::string int8_path_name(const rt::QuantizedWeight& q, int64_t rows, rt::KernelChoice choice) {
  const auto saved_choice = rt::kernel_choice();
  rt::set_kernel_choice(choice);
  const std::string name = rt::active_int8_kernel(q.bits, q.group_size, q.scales.size(1) * q.group_size, rows) +
                           " (quantized_linear_int8)";
  rt::set_kernel_choice(saved_choice);
  return name;
}

std::string path_name(const rt::QuantizedWeight& q, int64_t rows, rt::KernelChoice choice, int64_t int8_rows) {
  const auto saved_choice = rt::kernel_choice();
  const auto saved_rows = rt::int8_rows_threshold();
  rt::set_kernel_choice(choice);
  rt::set_int8_rows_threshold(int8_rows);
  const std::string name = rt::active_kernel(q.bits, rows);
  rt::set_kernel_choice(saved_choice);
  rt::set_int8_rows_threshold(saved_rows);
  return name;
}

void compute_table(const KernelBenchOptions& options, const torch::Tensor& weight, const torch::Tensor& bias,
                   const std::vector<rt::QuantizedWeight>& quantized) {
  fmt::print("| rows | method | path | min ms | median ms | max ms | x fp32 (median) | GMAC/s |\n");
  fmt::print("|---:|---|---|---:|---:|---:|---:|---:|\n");
  const int64_t default_int8_rows = rt::int8_rows_threshold();
  const int64_t never = std::numeric_limits<int64_t>::max();
  for (int64_t rows : options.rows) {
    const auto x = torch::randn({rows, kIn});
    std::vector<Variant> variants;
    variants.push_back({"fp32 weight", "BLAS (at::linear)", double(kOut * kIn * 4),
                        [&] { at::linear(x, weight, bias); }, true});
    for (const auto& q : quantized) {
      variants.push_back({fmt::format("{}-bit g{}", q.bits, q.group_size),
                          path_name(q, rows, rt::KernelChoice::Auto, default_int8_rows), weight_bytes(q),
                          op_call(x, q, bias, rt::KernelChoice::Auto, default_int8_rows), false});
    }
    // One row with int8 activations (what KvDecoder decodes with), for every width.
    if (rows == 1 && rt::cpu_supports_avx2()) {
      for (const auto& q : quantized) {
        variants.push_back({fmt::format("{}-bit g{}", q.bits, q.group_size),
                            int8_path_name(q, rows, rt::KernelChoice::Auto), weight_bytes(q),
                            int8_op_call(x, q, bias, rt::KernelChoice::Auto), false});
      }
    }
    // The other paths, for 4 and 8 bits: what a CPU without VNNI runs, and
    // the float paths the int8 one replaces.
    for (const auto& q : quantized) {
      if (q.bits != 4 && q.bits != 8) continue;
      const std::string method = fmt::format("{}-bit g{}", q.bits, q.group_size);
      if (rows >= default_int8_rows) {
        for (auto choice : {rt::KernelChoice::AvxVnni, rt::KernelChoice::Avx2}) {
          const std::string name = path_name(q, rows, choice, default_int8_rows);
          if (!rt::cpu_supports(choice) || name == path_name(q, rows, rt::KernelChoice::Auto, default_int8_rows)) {
            continue;
          }
          variants.push_back({method, name, weight_bytes(q), op_call(x, q, bias, choice, default_int8_rows), false});
        }
        const std::string float_path = path_name(q, rows, rt::KernelChoice::Auto, never);
        variants.push_back({method, float_path + " (int8 off)", weight_bytes(q),
                            op_call(x, q, bias, rt::KernelChoice::Auto, never),
                            float_path.find("blas") != std::string::npos});
      } else if (rows > 1 && rt::cpu_supports_avx2()) {
        // Below the threshold: what the int8 path would give (its choice).
        variants.push_back({method, path_name(q, rows, rt::KernelChoice::Auto, 1) + " (forced)", weight_bytes(q),
                            op_call(x, q, bias, rt::KernelChoice::Auto, 1), false});
      }
      if (rows > 1) {
        variants.push_back({method, "portable (no AVX2)", weight_bytes(q),
                            op_call(x, q, bias, rt::KernelChoice::Portable, default_int8_rows), rows >= 64});
      }
    }
    const int runs = rows >= 256 ? std::max(5, options.runs / 2) : options.runs;
    const auto timings = measure(variants, runs);
    const double fp32 = timings[0].median;
    for (size_t v = 0; v < variants.size(); ++v) {
      const auto& t = timings[v];
      fmt::print("| {} | {} | {} | {:.3f} | {:.3f} | {:.3f} | {:.2f} | {:.1f} |\n", rows, variants[v].method,
                 variants[v].path, t.min, t.median, t.max, fp32 / t.median,
                 double(rows) * kOut * kIn / (t.median * 1e6));
    }
  }
  rt::set_kernel_choice(rt::KernelChoice::Auto);
  rt::set_int8_rows_threshold(0);
}

// GB/s of `repeats` reads of `buffer` on LibTorch's thread count (min / median / max).
Timing stream_read_gbps(const std::vector<float>& buffer, int repeats) {
  std::vector<double> rates;
  for (int r = 0; r < repeats; ++r) rates.push_back(memory_bandwidth::read_gbps(buffer, at::get_num_threads()));
  return summarize(rates);
}

void bandwidth_table(const KernelBenchOptions& options, const torch::Tensor& weight, const torch::Tensor& bias,
                     const std::vector<rt::QuantizedWeight>& quantized) {
  const int64_t cache = last_level_cache_bytes();
  const int64_t working_set = std::max<int64_t>(2 * cache, int64_t{256} << 20);
  const std::vector<float> stream_buffer = memory_bandwidth::make_buffer(size_t(working_set));
  fmt::print("\nBatch 1 with the weights streamed from memory: each call reads another copy of the\n"
             "weight, {} MB of copies in all (last-level cache {} MB). Right before each method, a\n"
             "read of a {} MB buffer on the same {} threads (memory_bandwidth.h: 8 streams each,\n"
             "AVX-512 with prefetch) measures the bandwidth it is compared with (median of 3 reads).\n\n",
             working_set >> 20, cache >> 20, working_set >> 20, at::get_num_threads());
  fmt::print("| method | path | MB per call | min ms | median ms | max ms | GB/s (median) | stream read GB/s | share |\n");
  fmt::print("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
  const auto x = torch::randn({1, kIn});
  auto report = [&](const std::string& method, const std::string& path, double bytes,
                    const std::function<void(int64_t)>& call, int64_t copies) {
    const double stream = stream_read_gbps(stream_buffer, 3).median;
    for (int64_t i = 0; i < copies; ++i) call(i);  // warm-up: every copy once
    std::vector<double> ms;
    const int64_t calls = std::max<int64_t>(3 * copies, options.runs);
    for (int64_t i = 0; i < calls; ++i) {
      const auto start = Clock::now();
      call(i % copies);
      ms.push_back(milliseconds_since(start));
    }
    const Timing t = summarize(ms);
    const double gbps = bytes / (t.median * 1e6);
    fmt::print("| {} | {} | {:.1f} | {:.3f} | {:.3f} | {:.3f} | {:.1f} | {:.1f} | {:.0f}% |\n", method, path,
               bytes / 1e6, t.min, t.median, t.max, gbps, stream, 100 * gbps / stream);
  };
  {
    const double bytes = double(kOut * kIn * 4);
    std::vector<torch::Tensor> copies;
    for (int64_t i = 0; i * bytes < working_set; ++i) copies.push_back(weight.clone());
    report("fp32 weight", "BLAS (at::linear)", bytes, [&](int64_t i) { at::linear(x, copies[size_t(i)], bias); },
           int64_t(copies.size()));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (const auto& q : quantized) {
    const double bytes = weight_bytes(q);
    std::vector<rt::QuantizedWeight> copies;
    for (int64_t i = 0; i * bytes < working_set; ++i) {
      rt::QuantizedWeight c = q;
      c.packed = q.packed.clone();
      c.scales = q.scales.clone();
      c.biases = q.biases.clone();
      copies.push_back(c);
    }
    report(fmt::format("{}-bit g{}", q.bits, q.group_size), rt::active_kernel(q.bits, 1), bytes,
           [&](int64_t i) {
             const auto& c = copies[size_t(i)];
             rt::quantized_linear(x, c.packed, c.scales, c.biases, bias, c.bits, c.group_size);
           },
           int64_t(copies.size()));
    if (!rt::cpu_supports_avx2()) continue;
    report(fmt::format("{}-bit g{}", q.bits, q.group_size), int8_path_name(q, 1, rt::KernelChoice::Auto), bytes,
           [&](int64_t i) {
             const auto& c = copies[size_t(i)];
             rt::quantized_linear_int8(x, c.packed, c.scales, c.biases, bias, c.bits, c.group_size);
           },
           int64_t(copies.size()));
  }
}

}  // namespace

void run_kernel_benchmark(const KernelBenchOptions& options) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  const int threads = at::get_num_threads();
  const bool openblas = set_openblas_threads(threads);
  const auto weight = torch::randn({kOut, kIn}) * 0.02;
  const auto bias = torch::randn({kOut});
  std::vector<rt::QuantizedWeight> quantized;
  for (int bits : kBits) quantized.push_back(rt::quantize_weight(weight.to(torch::kHalf), bits, kGroup));
  const double load_at_start = load_average();
  fmt::print("\n{}x{} linear layer (+ bias), {}; {} threads for LibTorch and the operator", kOut, kIn, cpu_model(),
             threads);
  if (openblas) {
    fmt::print(", OpenBLAS on {} thread(s) with its \"{}\" kernels", threads, openblas_core_name());
  }
  fmt::print(". Quantized weights: group {}, float16 scales/biases. The int8 path starts at {} rows.\n"
             "1-minute load average {:.2f} at the start.\n\n",
             kGroup, rt::int8_rows_threshold(), load_at_start);
  compute_table(options, weight, bias, quantized);
  if (options.bandwidth) bandwidth_table(options, weight, bias, quantized);
  fmt::print("\n1-minute load average {:.2f} at the end.\n", load_average());
}
