// Latency that can be trusted: timings summarised with their spread, warm-up
// that goes on until the timings settle, OpenBLAS on the calling thread while
// timing, and the default pipeline's probes giving one model the same latency
// twice in one process.
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fmt/format.h>

#include <chrono>
#include <map>
#include <cmath>
#include <thread>

#include "mcompress/framework/loader/plugin_host.h"
#include "mcompress/framework/probes/latency_timing.h"
#include "mcompress/framework/probes/probes.h"
#include "mcompress/framework/recipe/recipe.h"
#include "mcompress/framework/sources/zoo.h"
#include "mcompress/framework/strategy/auto_prune.h"
#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

TEST(LatencyTiming, PercentilesAreNearestRankAndTheSummaryHasTheQuartiles) {
  const std::vector<double> times{8, 1, 7, 2, 6, 3, 5, 4};  // 1..8, shuffled
  EXPECT_EQ(percentile(times, 0.5), 4);
  EXPECT_EQ(percentile(times, 0.25), 2);
  EXPECT_EQ(percentile(times, 0.75), 6);
  EXPECT_EQ(percentile(times, 1.0), 8);
  EXPECT_EQ(percentile({3.5}, 0.95), 3.5);
  const auto summary = summarize_latency(times);
  EXPECT_EQ(summary.median_ms, 4);
  EXPECT_EQ(summary.p25_ms, 2);
  EXPECT_EQ(summary.p75_ms, 6);
  EXPECT_EQ(summary.p95_ms, 8);
  EXPECT_EQ(summary.runs, 8);
  EXPECT_THROW(percentile({}, 0.5), Error);
}

TEST(LatencyTiming, WarmupSettlesWhenTheLastWindowsMediansAgreeWithinTolerance) {
  WarmupPolicy policy;
  policy.min_runs = 5;
  policy.window = 3;
  policy.tolerance = 0.05;
  // The first calls compile and profile the graph: slow, then steady.
  EXPECT_FALSE(warmup_settled({90, 40, 10, 10.2, 10.1}, policy));  // fewer than two windows
  EXPECT_FALSE(warmup_settled({90, 40, 10, 10.2, 10.1, 9.9}, policy));  // medians 40 vs 10
  EXPECT_TRUE(warmup_settled({90, 40, 10, 10.2, 10.1, 9.9, 10.3, 10.0}, policy));  // 10.1 vs 10.0
  EXPECT_FALSE(warmup_settled({10, 10, 10, 12, 12, 12}, policy));  // a 20% change
  policy.min_runs = 10;  // the recipe's latency_warmup is a lower bound
  EXPECT_FALSE(warmup_settled({10, 10, 10, 10, 10, 10, 10, 10, 10}, policy));
  EXPECT_TRUE(warmup_settled({10, 10, 10, 10, 10, 10, 10, 10, 10, 10}, policy));
}

TEST(LatencyTiming, WarmupThatNeverSettlesStopsAtItsBound) {
  WarmupPolicy policy;
  policy.min_seconds = 0.0;
  policy.min_runs = 1;
  policy.window = 2;
  policy.max_runs = 8;
  int calls = 0;
  NullProgress quiet;
  // Every call takes longer than the one before: the timings never settle.
  const auto summary = time_latency(
      [&] { std::this_thread::sleep_for(std::chrono::microseconds(50 * (1 << std::min(++calls, 12)))); }, 2,
      policy, quiet, "growing", /*min_timed_seconds=*/0.0);
  EXPECT_EQ(summary.warmup_runs, 8);
  EXPECT_FALSE(summary.settled);
  EXPECT_EQ(summary.runs, 2);
  EXPECT_EQ(calls, 10);
  EXPECT_LE(summary.p25_ms, summary.median_ms);
  EXPECT_LE(summary.median_ms, summary.p75_ms);
}

// A sub-millisecond model is summarised over a duration, not a handful of
// calls: one burst of interference then moves the median little.
TEST(LatencyTiming, TimedRunsGoOnForTheMinimumDurationBeyondTheRunsAsked) {
  WarmupPolicy policy;
  policy.min_seconds = 0.0;
  policy.min_runs = 2;
  policy.window = 1;
  NullProgress quiet;
  const auto sleep_1ms = [] { std::this_thread::sleep_for(std::chrono::milliseconds(1)); };
  const auto summary = time_latency(sleep_1ms, 3, policy, quiet, "1 ms", /*min_timed_seconds=*/0.06);
  EXPECT_GE(summary.runs, 20);  // 60 ms of calls of at least 1 ms each, at most 60 of them
  EXPECT_LE(summary.runs, 60);
  const auto few = time_latency(sleep_1ms, 3, policy, quiet, "1 ms", /*min_timed_seconds=*/0.0);
  EXPECT_EQ(few.runs, 3);
}

TEST(LatencyTiming, OpenBlasRunsOnTheCallingThreadWhileTimingAndGetsItsThreadsBackAfter) {
  using GetThreads = int (*)();
  using SetThreads = void (*)(int);
  const auto get_threads = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  const auto set_threads = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (!get_threads || !set_threads) GTEST_SKIP() << "this LibTorch's BLAS is not OpenBLAS";
  const int before = get_threads();
  set_threads(2);
  std::vector<int> seen;
  NullProgress quiet;
  time_latency([&] { seen.push_back(get_threads()); }, 3, WarmupPolicy{}, quiet, "blas");
  EXPECT_EQ(get_threads(), 2);
  set_threads(before);
  for (int threads : seen) EXPECT_EQ(threads, 1);
}

TEST(LatencyProbe, RecordsTheSpreadAndTheWarmupOfEveryLatency) {
  auto model = build_zoo_model("cnn", {{"width", 8}}, 10, 1);
  ProbeSpec spec;
  spec.enabled = {"latency"};
  spec.latency_batch_sizes = {1, 4};
  spec.latency_warmup = 2;
  spec.latency_runs = 8;
  NullProgress quiet;
  const auto metrics = run_probes(model, nullptr, torch::randn({1, 1, 28, 28}), spec, quiet);
  for (int batch : {1, 4}) {
    const auto key = [&](const char* what) { return fmt::format("latency_b{}_{}", batch, what); };
    for (const char* what : {"median_ms", "p25_ms", "p75_ms", "p95_ms", "p99_ms", "warmup_runs"}) {
      ASSERT_TRUE(metrics.count(key(what))) << key(what);
    }
    EXPECT_GT(metrics.at(key("p25_ms")), 0.0);
    EXPECT_LE(metrics.at(key("p25_ms")), metrics.at(key("median_ms")));
    EXPECT_LE(metrics.at(key("median_ms")), metrics.at(key("p75_ms")));
    EXPECT_LE(metrics.at(key("p75_ms")), metrics.at(key("p95_ms")));
    // At least the recipe's warm-up, and two windows to compare.
    EXPECT_GE(metrics.at(key("warmup_runs")), 10);
  }
}

// Keeps OpenBLAS's own worker threads busy, as a training stage does between
// the baseline's probes and its own.
void multithreaded_blas_work() {
  using SetThreads = void (*)(int);
  if (const auto set_threads = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set_threads(int(std::thread::hardware_concurrency()));
  }
  torch::NoGradGuard no_grad;
  const auto a = torch::randn({384, 384});
  auto b = torch::randn({384, 384});
  for (int i = 0; i < 20; ++i) b = torch::mm(a, b).tanh();
}

// The intra-op thread count a recipe asks for, for the life of this object.
class RecipeThreads {
 public:
  explicit RecipeThreads(int threads) : previous_(at::get_num_threads()) {
    at::set_num_threads(threads > 0 ? threads : int(std::thread::hardware_concurrency()));
  }
  ~RecipeThreads() { at::set_num_threads(previous_); }

 private:
  int previous_;
};

// The median over `repeats` runs of the probes of each latency_b<N>_median_ms.
std::map<int64_t, double> median_of_repeats(const torch::jit::Module& model, const torch::Tensor& example,
                                            const ProbeSpec& spec, int repeats) {
  std::map<int64_t, std::vector<double>> medians;
  NullProgress quiet;
  for (int r = 0; r < repeats; ++r) {
    const auto metrics = run_probes(model, nullptr, example, spec, quiet);
    for (int64_t batch : spec.latency_batch_sizes) {
      medians[batch].push_back(metrics.at(fmt::format("latency_b{}_median_ms", batch)));
    }
  }
  std::map<int64_t, double> result;
  for (const auto& [batch, values] : medians) result[batch] = percentile(values, 0.5);
  return result;
}

// The issue this answers: in the default pipeline's table, the trained model
// measured 6.4x the baseline's latency with the same architecture. Here the
// default pipeline's own probe settings (model, threads, batch sizes, warm-up,
// runs) measure one model, then again after multi-threaded BLAS work (what
// training leaves behind); each side is the median of three runs of the
// probes, and the two must agree within 10%. A pair that disagrees is
// measured once more. A machine busier than its cores cannot time the
// recipe's threads (they wait for a core); there a disagreement is reported
// and the test is skipped rather than failed.
TEST(LatencyProbe, TheDefaultPipelinesProbesMeasureOneModelTwiceWithinTenPercent) {
  PluginHost plugins;
  register_builtin_passes(plugins);
  plugins.load_directories(PluginHost::search_path({}));
  const Recipe recipe =
      load_recipe(std::string(MCOMPRESS_SOURCE_DIR) + "/pipelines/fashion_mnist_prune.yaml", {}, plugins);
  ASSERT_FALSE(recipe.model.zoo.empty());
  ProbeSpec spec = recipe.probes;
  spec.enabled = {"latency"};
  RecipeThreads threads(recipe.threads);
  auto model = build_zoo_model(recipe.model.zoo, recipe.model.options, recipe.model.num_classes, recipe.seed);
  std::vector<int64_t> shape{1};
  shape.insert(shape.end(), recipe.model.input_shape.begin(), recipe.model.input_shape.end());
  const auto example = torch::randn(shape);

  std::string disagreements;
  double highest_load = 0.0;
  for (int attempt = 1; attempt <= 2; ++attempt) {
    highest_load = std::max(highest_load, load_average_1m().value_or(0.0));
    const auto first = median_of_repeats(model, example, spec, 3);
    multithreaded_blas_work();
    const auto second = median_of_repeats(model, example, spec, 3);
    highest_load = std::max(highest_load, load_average_1m().value_or(0.0));
    disagreements.clear();
    for (int64_t batch : spec.latency_batch_sizes) {
      const double a = first.at(batch), b = second.at(batch);
      if (std::fabs(a - b) > 0.10 * std::min(a, b)) {
        disagreements += fmt::format("attempt {}, batch {}: {:.3f} ms, then {:.3f} ms ({:+.1f}%)\n", attempt, batch,
                                     a, b, 100 * (b - a) / a);
      }
    }
    if (disagreements.empty()) break;
    std::cerr << disagreements;
  }
  const unsigned cores = std::thread::hardware_concurrency();
  if (!disagreements.empty() && highest_load > cores) {
    GTEST_SKIP() << fmt::format("the machine was busier than its {} cores (1-minute load average up to {:.1f}), so "
                                "{} threads could not be timed:\n{}",
                                cores, highest_load, at::get_num_threads(), disagreements);
  }
  EXPECT_TRUE(disagreements.empty()) << disagreements;
}

}  // namespace
}  // namespace mcompress
