// `mcompress compare` and `mcompress report`: candidates as child processes,
// crash and time-limit isolation, streaming + resume, shards, ranking and the
// HTML report rendered by headless Chromium.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "mcompress/framework/sweep/comparison.h"
#include "mcompress/framework/sweep/sweep.h"
#include "test_support.h"

namespace fs = std::filesystem;
using mcompress::testing::read_text;
using mcompress::testing::run_command;
using mcompress::testing::TempDir;
using mcompress::testing::write_text;

namespace {

const std::string kPlugins = std::string(" --plugin-dir ") + MCOMPRESS_TEST_PLUGIN_DIR + "/good";

// Base recipe: a small MLP trained briefly, then pruned.
void write_base(const fs::path& dir) {
  write_text(dir / "base.yaml", std::string(R"(mcompress: 1
name: sweep_base
seed: 1
threads: 1
model:
  zoo: mlp
  options: {width: 16}
data:
  path: )") + MCOMPRESS_FASHION_MNIST_DIR + R"(
  train_limit: 2000
  eval_limit: 400
  validation_size: 400
probes:
  enabled: [accuracy, latency, params, size]
  latency_batch_sizes: [1]
  latency_runs: 3
  latency_warmup: 1
stages:
  - name: train
    pass: finetune
    params: {epochs: 1, lr: 0.05}
  - name: prune
    pass: magnitude_prune
    params: {sparsity: 0.5}
)");
}

std::string sweep_text(const std::string& extra) {
  return R"(mcompress_sweep: 1
name: test_sweep
base: base.yaml
candidates:
  - name: crashes
    set: ["stages.prune.pass=test_crash", "stages.prune.params={}"]
grid:
  stages.prune.params.sparsity: [0.0, 0.5]
objective:
  reference: train
  constraints: {max_accuracy_drop: 0.3}
  minimize: size_mb
)" + extra;
}

mcompress::testing::CommandResult compare(const fs::path& dir, const std::string& args, const std::string& env = "") {
  return run_command(env + " " + MCOMPRESS_CLI + " compare " + (dir / "sweep.yaml").string() + " --quiet" + kPlugins +
                     " " + args);
}

nlohmann::json comparison_of(const fs::path& out) {
  return nlohmann::json::parse(read_text(out / "comparison.json"));
}

std::map<std::string, std::string> statuses(const nlohmann::json& comparison) {
  std::map<std::string, std::string> out;
  for (const auto& c : comparison.at("candidates")) out[c.at("name")] = c.at("status");
  return out;
}

TEST(Compare, CrashingCandidateIsRecordedAndTheSweepGoesOnThenResumesWithoutRedoingWork) {
  TempDir tmp("compare");
  write_base(tmp.path());
  write_text(tmp.path() / "sweep.yaml", sweep_text(""));
  const auto out = tmp.path() / "out";
  const auto first = compare(tmp.path(), "--jobs 2 --out " + out.string(), "MCOMPRESS_TEST_CRASH=1");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  auto cmp = comparison_of(out);
  // Candidates run with --isolate: the crash fails the candidate's stage, whose run reports it.
  EXPECT_EQ(statuses(cmp), (std::map<std::string, std::string>{
                               {"crashes", "failed"}, {"prune.sparsity=0.0", "completed"}, {"prune.sparsity=0.5", "completed"}}));
  for (const auto& c : cmp.at("candidates")) {
    if (c.at("name") == "crashes") {
      EXPECT_NE(c.at("error").get<std::string>().find("stage 'prune' (pass 'test_crash' from plugin 'test_passes' "
                                                      "1.0.0) failed: the stage's process died of signal 9"),
                std::string::npos)
          << c.at("error");
    }
  }
  // Ranked: both completed meet the constraint; the pruned one is smaller, so it wins.
  EXPECT_EQ(cmp.at("best"), "prune.sparsity=0.5");
  EXPECT_EQ(cmp.at("candidates")[0].at("name"), "prune.sparsity=0.5");
  EXPECT_TRUE(cmp.at("candidates")[0].at("pareto_size").get<bool>());
  EXPECT_TRUE(fs::exists(out / "comparison.csv"));
  EXPECT_NE(read_text(out / "comparison.md").find("Best: `prune.sparsity=0.5`"), std::string::npos);

  // Rerun: nothing finished is redone; a removed result is run again.
  const auto crashed_dir = out / "candidates" / "000_crashes";
  fs::remove(crashed_dir / "result.json");
  const std::string kept = read_text(out / "candidates" / "001_prune.sparsity_0.0" / "result.json");
  const auto second = compare(tmp.path(), "--out " + out.string());
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_EQ(read_text(out / "candidates" / "001_prune.sparsity_0.0" / "result.json"), kept);
  EXPECT_EQ(statuses(comparison_of(out)).at("crashes"), "completed");  // no crash without the variable
}

TEST(Compare, WithoutIsolationACrashTakesDownItsCandidateOnly) {
  TempDir tmp("compare-no-isolate");
  write_base(tmp.path());
  write_text(tmp.path() / "sweep.yaml", sweep_text(""));
  const auto out = tmp.path() / "out";
  const auto r = compare(tmp.path(), "--jobs 2 --no-isolate --out " + out.string(), "MCOMPRESS_TEST_CRASH=1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto cmp = comparison_of(out);
  EXPECT_EQ(statuses(cmp), (std::map<std::string, std::string>{
                               {"crashes", "crashed"}, {"prune.sparsity=0.0", "completed"}, {"prune.sparsity=0.5", "completed"}}));
  for (const auto& c : cmp.at("candidates")) {
    if (c.at("name") == "crashes") {
      EXPECT_NE(c.at("error").get<std::string>().find("signal 9"), std::string::npos);
    }
  }
  // Every result records the sweep host's memory when it was written.
  EXPECT_GT(nlohmann::json::parse(read_text(out / "candidates" / "000_crashes" / "result.json"))
                .at("host_rss_mb")
                .get<double>(),
            1.0);
}

TEST(Compare, ShardsAreDisjointAndReportMergesThem) {
  TempDir tmp("shards");
  write_base(tmp.path());
  write_text(tmp.path() / "sweep.yaml", sweep_text(""));
  for (int i = 0; i < 2; ++i) {
    const auto r = compare(tmp.path(), "--shard " + std::to_string(i) + "/2 --out " +
                                           (tmp.path() / ("s" + std::to_string(i))).string());
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  EXPECT_EQ(comparison_of(tmp.path() / "s0").at("candidates").size(), 2u);  // candidates 0 and 2
  EXPECT_EQ(comparison_of(tmp.path() / "s1").at("candidates").size(), 1u);  // candidate 1
  const auto merged = run_command(std::string(MCOMPRESS_CLI) + " report " + (tmp.path() / "s0").string() + " " +
                                  (tmp.path() / "s1").string() + " --out " + (tmp.path() / "all").string());
  ASSERT_EQ(merged.exit_code, 0) << merged.output;
  EXPECT_EQ(comparison_of(tmp.path() / "all").at("candidates").size(), 3u);
  EXPECT_NE(merged.output.find("Best: `prune.sparsity=0.5`"), std::string::npos) << merged.output;
}

TEST(Compare, TimeLimitStopsAHangingCandidate) {
  TempDir tmp("timeout");
  write_base(tmp.path());
  write_text(tmp.path() / "sweep.yaml", R"(mcompress_sweep: 1
name: slow
base: base.yaml
time_limit: 1
candidates:
  - name: long_training
    set: ["stages.train.params.epochs=500"]
)");
  const auto r = compare(tmp.path(), "--out " + (tmp.path() / "out").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto cmp = comparison_of(tmp.path() / "out");
  EXPECT_EQ(cmp.at("candidates")[0].at("status"), "timeout");
  EXPECT_NE(cmp.at("recommendation").get<std::string>().find("No candidate completed"), std::string::npos);
}

TEST(Compare, InvalidSweepAndInvalidCandidatesAreReportedBeforeAnythingRuns) {
  TempDir tmp("invalid");
  write_base(tmp.path());
  write_text(tmp.path() / "sweep.yaml", R"(mcompress_sweep: 1
base: base.yaml
candidatez: []
grid:
  stages.prune.params.sparsity: [0.5, 1.5]
objective:
  minimize: latency
)");
  auto r = compare(tmp.path(), "--out " + (tmp.path() / "out").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("sweep.yaml:3:1: error: unknown key `candidatez`"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("sweep.yaml:7:13: error: unknown metric `latency`"), std::string::npos) << r.output;

  write_text(tmp.path() / "sweep.yaml", R"(mcompress_sweep: 1
base: base.yaml
grid:
  stages.prune.params.sparsity: [0.5, 1.5]
)");
  r = compare(tmp.path(), "--out " + (tmp.path() / "out").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("candidate `prune.sparsity=1.5`"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(tmp.path() / "out"));
}

TEST(Ranking, ConstraintsOrderFeasibleFirstAndNameTheClosestWhenNoneFits) {
  mcompress::Objective objective;
  objective.constraints = {{"latency_b1_median_ms", true, 1.0}, {"accuracy_drop", true, 0.01}};
  objective.primary = "accuracy";
  objective.direction = mcompress::Direction::Maximize;
  auto result = [](int i, double acc, double drop, double latency, double size) {
    mcompress::CandidateResult r;
    r.index = i;
    r.name = "c" + std::to_string(i);
    r.status = "completed";
    r.metrics = {{"accuracy", acc}, {"accuracy_drop", drop}, {"latency_b1_median_ms", latency},
                 {"size_bytes", size}, {"size_mb", size / 1048576}};
    return r;
  };
  auto cmp = mcompress::rank_candidates("t", objective,
                                        {result(0, 0.90, 0.00, 2.0, 100), result(1, 0.89, 0.005, 0.8, 50),
                                         result(2, 0.91, 0.0, 0.9, 80), result(3, 0.80, 0.1, 0.5, 40)});
  EXPECT_EQ(cmp.ranked[0].result.name, "c2");  // feasible, most accurate
  EXPECT_EQ(cmp.ranked[1].result.name, "c1");
  EXPECT_FALSE(cmp.ranked[2].feasible);
  // c0 is slower and less accurate than c2; every other one is best at something.
  std::map<std::string, bool> front;
  for (const auto& c : cmp.ranked) front[c.result.name] = c.pareto_latency;
  EXPECT_EQ(front, (std::map<std::string, bool>{{"c0", false}, {"c1", true}, {"c2", true}, {"c3", true}}));
  EXPECT_NE(cmp.recommendation.find("Best: `c2`"), std::string::npos);

  objective.constraints = {{"latency_b1_median_ms", true, 0.1}};
  cmp = mcompress::rank_candidates("t", objective, {result(0, 0.9, 0, 2.0, 1), result(1, 0.9, 0, 0.2, 1)});
  EXPECT_NE(cmp.recommendation.find("No candidate meets every constraint. Closest: `c1`"), std::string::npos)
      << cmp.recommendation;
  EXPECT_NE(cmp.recommendation.find("latency_b1_median_ms 0.200 ms > 0.100 ms"), std::string::npos)
      << cmp.recommendation;
}

// Same-architecture candidates whose latencies differ by timing noise: their
// interquartile ranges overlap, so they tie and accuracy ranks them.
mcompress::CandidateResult measured_result(int i, double acc, double latency, double p25, double p75) {
  mcompress::CandidateResult r;
  r.index = i;
  r.name = "c" + std::to_string(i);
  r.status = "completed";
  r.metrics = {{"accuracy", acc},          {"latency_b1_median_ms", latency}, {"latency_b1_p25_ms", p25},
               {"latency_b1_p75_ms", p75}, {"size_bytes", 1e5},                {"size_mb", 1e5 / 1048576}};
  return r;
}

TEST(Ranking, LatenciesWithinTheirSpreadTieAndAccuracyRanksThemAndTheReportsSaySo) {
  mcompress::Objective objective;  // minimize latency_b1_median_ms
  const auto cmp = mcompress::rank_candidates(
      "ties", objective,
      {measured_result(0, 0.860, 0.075, 0.070, 0.082), measured_result(1, 0.867, 0.080, 0.074, 0.086),
       measured_result(2, 0.850, 0.060, 0.058, 0.062)});
  ASSERT_EQ(cmp.ranked.size(), 3u);
  EXPECT_EQ(cmp.ranked[0].result.name, "c2");  // clearly the fastest
  EXPECT_EQ(cmp.ranked[0].ranked_by, "batch-1 latency");
  EXPECT_EQ(cmp.ranked[1].result.name, "c1");  // ties with c0 on latency, more accurate
  EXPECT_EQ(cmp.ranked[1].ranked_by, "accuracy");
  EXPECT_EQ(cmp.ranked[1].tied_with, (std::vector<std::string>{"c0"}));
  EXPECT_EQ(cmp.ranked[2].result.name, "c0");
  const std::string note = "`c1` and `c0` tie on batch-1 latency (intervals overlap), ranked by accuracy.";
  EXPECT_EQ(cmp.ties, (std::vector<std::string>{note}));

  const auto markdown = mcompress::comparison_markdown(cmp);
  EXPECT_NE(markdown.find("## Ties within the measured spread\n\n- " + note), std::string::npos) << markdown;
  EXPECT_NE(markdown.find("| 0.080 [0.074–0.086] ms |"), std::string::npos) << markdown;
  EXPECT_NE(mcompress::comparison_table(cmp).find(note), std::string::npos);
  EXPECT_NE(mcompress::comparison_html(cmp).find("<li>`c1` and `c0` tie on batch-1 latency"), std::string::npos);
  const auto json = mcompress::comparison_json(cmp);
  EXPECT_EQ(json.at("ties"), nlohmann::json::array({note}));
  EXPECT_EQ(json.at("candidates")[1].at("ranked_by"), "accuracy");
  EXPECT_EQ(json.at("candidates")[1].at("objective_interval"), nlohmann::json::array({0.074, 0.086}));
  EXPECT_EQ(json.at("candidates")[1].at("metrics").at("latency_b1_p75_ms"), 0.086);
  const auto csv = mcompress::comparison_csv(cmp);
  EXPECT_NE(csv.find("latency_b1_p25_ms,latency_b1_p75_ms"), std::string::npos) << csv;
  EXPECT_NE(csv.find(",ranked_by\n"), std::string::npos) << csv;
}

TEST(Ranking, TheBestCandidatesTieIsNamedInTheRecommendation) {
  mcompress::Objective objective;
  const auto cmp = mcompress::rank_candidates(
      "ties", objective,
      {measured_result(0, 0.860, 0.075, 0.070, 0.082), measured_result(1, 0.867, 0.080, 0.074, 0.086)});
  EXPECT_NE(cmp.recommendation.find("Best: `c1`"), std::string::npos) << cmp.recommendation;
  EXPECT_NE(cmp.recommendation.find("latency_b1_median_ms 0.080 [0.074–0.086] ms"), std::string::npos)
      << cmp.recommendation;
  EXPECT_NE(cmp.recommendation.find("It ties with `c0` on batch-1 latency (intervals overlap) and ranks first by "
                                    "accuracy."),
            std::string::npos)
      << cmp.recommendation;
}

TEST(Ranking, ResultsWithoutASpreadRankByTheirValuesAsBefore) {
  mcompress::Objective objective;
  auto plain = [](int i, double acc, double latency) {
    mcompress::CandidateResult r;
    r.index = i;
    r.name = "c" + std::to_string(i);
    r.status = "completed";
    r.metrics = {{"accuracy", acc}, {"latency_b1_median_ms", latency}};
    return r;
  };
  const auto cmp = mcompress::rank_candidates("old", objective, {plain(0, 0.9, 0.080), plain(1, 0.8, 0.075)});
  EXPECT_EQ(cmp.ranked[0].result.name, "c1");
  EXPECT_TRUE(cmp.ties.empty());
}

TEST(Ranking, AWeightedScoreCarriesTheLatencySpreadIntoItsInterval) {
  mcompress::Objective objective;
  objective.primary = "score";
  objective.direction = mcompress::Direction::Maximize;
  objective.score_weights = {{"accuracy", 100}, {"latency_b1_median_ms", -10}};
  // c1 scores 86.7 - 0.80 = 85.9; its latency's range 0.074-0.086 ms makes
  // that 85.84-85.96 (c0: 85.18-85.30, clearly lower).
  const auto cmp = mcompress::rank_candidates(
      "score", objective,
      {measured_result(0, 0.860, 0.075, 0.070, 0.082), measured_result(1, 0.867, 0.080, 0.074, 0.086)});
  EXPECT_EQ(cmp.ranked[0].result.name, "c1");
  EXPECT_TRUE(cmp.ties.empty());
  const auto json = mcompress::comparison_json(cmp);
  const auto interval = json.at("candidates")[0].at("objective_interval");
  EXPECT_NEAR(interval[0].get<double>(), 86.7 - 0.86, 1e-9);
  EXPECT_NEAR(interval[1].get<double>(), 86.7 - 0.74, 1e-9);
}

TEST(Compare, HtmlReportRendersInHeadlessChromium) {
  if (!fs::exists("/usr/bin/chromium")) GTEST_SKIP() << "Debian's chromium is not installed (scripts/install-deps.sh installs it)";
  auto result = [](int i, double acc, double latency, double size) {
    mcompress::CandidateResult r;
    r.index = i;
    r.name = "candidate " + std::to_string(i);
    r.status = "completed";
    r.metrics = {{"accuracy", acc}, {"latency_b1_median_ms", latency}, {"size_bytes", size * 1048576}, {"size_mb", size}};
    return r;
  };
  const auto cmp = mcompress::rank_candidates(
      "render check", {}, {result(0, 0.9, 1.0, 2.0), result(1, 0.85, 0.5, 1.0), result(2, 0.8, 0.9, 1.5)});
  TempDir tmp("html");
  mcompress::write_comparison(tmp.path().string(), cmp);
  const auto dom = run_command(
      "timeout 60 /usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
      "--disable-background-networking --disable-component-update --disable-sync --user-data-dir=" +
      (tmp.path() / "profile").string() + " --dump-dom file://" + (tmp.path() / "comparison.html").string() +
      " 2>/dev/null");
  ASSERT_EQ(dom.exit_code, 0) << dom.output;
  // The browser parsed the page: both plots with their points, fronts and the table.
  EXPECT_NE(dom.output.find("data-metric=\"latency_b1_median_ms\""), std::string::npos) << dom.output;
  EXPECT_NE(dom.output.find("data-metric=\"size_mb\""), std::string::npos);
  size_t circles = 0;
  for (size_t p = dom.output.find("<circle"); p != std::string::npos; p = dom.output.find("<circle", p + 1)) ++circles;
  EXPECT_EQ(circles, 6u);
  EXPECT_NE(dom.output.find("class=\"front\""), std::string::npos);
  EXPECT_NE(dom.output.find("<td>candidate 1</td>"), std::string::npos);
}

}  // namespace
