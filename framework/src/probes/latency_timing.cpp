#include "mcompress/framework/probes/latency_timing.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>

#include "mcompress/models/blas_threads.h"
#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

double median_of(std::vector<double>::const_iterator begin, std::vector<double>::const_iterator end) {
  return percentile(std::vector<double>(begin, end), 0.5);
}

double milliseconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

double percentile(std::vector<double> times_ms, double fraction) {
  if (times_ms.empty()) throw Error("a percentile of no timings was asked for");
  std::sort(times_ms.begin(), times_ms.end());
  const auto rank = size_t(std::ceil(fraction * double(times_ms.size())));
  return times_ms[std::clamp<size_t>(rank, 1, times_ms.size()) - 1];
}

LatencySummary summarize_latency(const std::vector<double>& times_ms) {
  LatencySummary summary;
  summary.median_ms = percentile(times_ms, 0.5);
  summary.p25_ms = percentile(times_ms, 0.25);
  summary.p75_ms = percentile(times_ms, 0.75);
  summary.p95_ms = percentile(times_ms, 0.95);
  summary.p99_ms = percentile(times_ms, 0.99);
  summary.runs = int(times_ms.size());
  return summary;
}

bool warmup_settled(const std::vector<double>& times, const WarmupPolicy& policy) {
  const size_t window = size_t(std::max(1, policy.window));
  if (times.size() < std::max(size_t(std::max(0, policy.min_runs)), 2 * window)) return false;
  const double last = median_of(times.end() - long(window), times.end());
  const double before = median_of(times.end() - long(2 * window), times.end() - long(window));
  return std::fabs(last - before) <= policy.tolerance * before;
}

LatencySummary time_latency(const std::function<void()>& call, int runs, const WarmupPolicy& warmup,
                            Progress& progress, const std::string& label, double min_timed_seconds) {
  runs = std::max(1, runs);
  ScopedBlasThreads pinned(1);  // OpenBLAS on the calling thread while timing
  progress.start(label + ", warm-up", 0);
  std::vector<double> warmup_ms;
  bool settled = false;
  std::chrono::steady_clock::time_point bound_clock;
  const auto warmup_start = std::chrono::steady_clock::now();
  for (;;) {
    const auto start = std::chrono::steady_clock::now();
    call();
    warmup_ms.push_back(milliseconds_since(start));
    const int done = int(warmup_ms.size());
    if (done == std::max(1, warmup.min_runs)) bound_clock = std::chrono::steady_clock::now();
    progress.update(done, fmt::format("{:.3f} ms", warmup_ms.back()));
    if (milliseconds_since(warmup_start) < 1000.0 * warmup.min_seconds) continue;
    if ((settled = warmup_settled(warmup_ms, warmup))) break;
    if (done >= std::max(1, warmup.max_runs)) break;
    if (done > warmup.min_runs && milliseconds_since(bound_clock) > 1000.0 * warmup.max_seconds) break;
  }
  // Timed runs: at least `runs`, and at least `min_timed_seconds` of them, so
  // that a sub-millisecond model is summarised over many calls and a burst of
  // interference (another process on a core the intra-op threads need stalls
  // every parallel region) moves its median little.
  const std::vector<double> settled_window(warmup_ms.end() - std::min<long>(long(warmup_ms.size()), 5),
                                           warmup_ms.end());
  const double typical_ms = std::max(1e-3, percentile(settled_window, 0.5));
  const int planned = int(std::clamp(std::ceil(1000.0 * min_timed_seconds / typical_ms), double(runs),
                                     double(std::max(runs, kMaxTimedRuns))));
  progress.start(label, planned);
  std::vector<double> times_ms;
  const auto timed_start = std::chrono::steady_clock::now();
  for (int i = 0; i < std::max(runs, kMaxTimedRuns); ++i) {
    if (i >= runs && milliseconds_since(timed_start) >= 1000.0 * min_timed_seconds) break;
    const auto start = std::chrono::steady_clock::now();
    call();
    times_ms.push_back(milliseconds_since(start));
    progress.update(std::min(i + 1, planned), fmt::format("{:.3f} ms", times_ms.back()));
  }
  LatencySummary summary = summarize_latency(times_ms);
  summary.warmup_runs = int(warmup_ms.size());
  summary.settled = settled;
  progress.finish(fmt::format("median {} ms after {} warm-up runs{}",
                              latency_with_spread(summary.median_ms, summary.p25_ms, summary.p75_ms),
                              summary.warmup_runs, settled ? "" : " (timings had not settled)"));
  return summary;
}

std::optional<double> load_average_1m() {
  std::ifstream in("/proc/loadavg");
  double load = 0.0;
  if (in >> load) return load;
  return std::nullopt;
}

std::string latency_with_spread(double median_ms, double p25_ms, double p75_ms) {
  return fmt::format("{:.3f} [{:.3f}–{:.3f}]", median_ms, p25_ms, p75_ms);
}

}  // namespace mcompress
