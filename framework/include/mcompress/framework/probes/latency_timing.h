#pragma once
// Timing a call the way every latency measurement of the host does (the
// latency and edge probes, auto_prune): OpenBLAS on the calling thread, warm-up
// until the timings settle, then timed runs summarised by their median and
// interquartile range, so that a difference can be told from noise.
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mcompress/sdk/progress.h"

namespace mcompress {

// What the timed runs showed, in milliseconds per call.
struct LatencySummary {
  double median_ms = 0.0;
  double p25_ms = 0.0;  // the interquartile range: the middle half of the runs
  double p75_ms = 0.0;  // lies within [p25_ms, p75_ms]
  double p95_ms = 0.0;
  double p99_ms = 0.0;
  int runs = 0;          // timed runs
  int warmup_runs = 0;   // untimed runs before them
  bool settled = false;  // warm-up ended because the timings settled, not at its bound
};

// Nearest rank: the smallest time with at least `fraction` (0..1] of the
// times at or below it. Throws mcompress::Error on an empty list.
double percentile(std::vector<double> times_ms, double fraction);

// Median, quartiles, p95 and p99 of timed runs (at least one).
LatencySummary summarize_latency(const std::vector<double>& times_ms);

// How long warm-up goes on: at least `min_runs` calls, two windows and
// `min_seconds`, then until the median of the last `window` calls is within
// `tolerance` of the median of the `window` calls before them; never more
// than `max_runs` calls or (after `min_runs`) `max_seconds`. `min_seconds`
// outlasts what earlier work leaves spinning: OpenBLAS's idle workers spin
// for about 2^28 cycles (0.1 s) after their last product, on the cores the
// timed threads need (without it, a model timed right after multi-threaded
// BLAS work measured 20-50% slower).
struct WarmupPolicy {
  double min_seconds = 0.3;
  int min_runs = 5;
  int window = 5;
  double tolerance = 0.05;
  int max_runs = 100;
  double max_seconds = 5.0;
};

// Whether warm-up that took these times (in call order) has settled.
bool warmup_settled(const std::vector<double>& warmup_times_ms, const WarmupPolicy& policy);

// Times `call`: warm-up as `warmup` says, then timed calls, at least `runs`
// (at least 1) and at least `min_timed_seconds` of them (but no more than
// `runs` or kMaxTimedRuns, whichever is larger), all with OpenBLAS on the calling thread (its
// thread count comes back afterwards). `progress` shows it as one task named
// `label`.
constexpr double kMinTimedSeconds = 0.5;
constexpr int kMaxTimedRuns = 20000;
LatencySummary time_latency(const std::function<void()>& call, int runs, const WarmupPolicy& warmup,
                            Progress& progress, const std::string& label,
                            double min_timed_seconds = kMinTimedSeconds);

// The machine's 1-minute load average (/proc/loadavg), or nullopt where it
// cannot be read. Timings taken while it exceeds the cores are not
// comparable: threads wait for a core (and OpenMP's spin-waiting makes that
// worse, docs/architecture.md "Measuring").
std::optional<double> load_average_1m();

// The interval a latency is compared by, as text: "0.361 [0.352–0.370]"
// (median [p25–p75], milliseconds, three decimals).
std::string latency_with_spread(double median_ms, double p25_ms, double p75_ms);

}  // namespace mcompress
