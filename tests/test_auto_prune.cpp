// The strategy selector: auto_prune probes every loaded pruning criterion on
// the model, picks the best by held-out score, runs it, and says why.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "mcompress/sdk/error.h"
#include "strategy/criterion_choice.h"
#include "test_support.h"

namespace fs = std::filesystem;
using mcompress::testing::read_text;
using mcompress::testing::run_command;
using mcompress::testing::TempDir;
using mcompress::testing::write_text;

namespace {

std::string recipe(const std::string& prune_params) {
  return std::string(R"(mcompress: 1
name: auto_prune_test
seed: 5
threads: 1
model:
  zoo: cnn
  options: {width: 8}
data:
  path: )") + MCOMPRESS_FASHION_MNIST_DIR + R"(
  train_limit: 3000
  eval_limit: 500
  validation_size: 500
  calibration_size: 256
probes:
  enabled: [accuracy, params, macs]
stages:
  - name: train
    pass: finetune
    params: {epochs: 1, optimizer: adam, lr: 0.003}
  - name: prune
    pass: auto_prune
    params: )" + prune_params + "\n";
}

nlohmann::json run_and_read_record(const TempDir& tmp, const std::string& text) {
  write_text(tmp.path() / "recipe.yaml", text);
  const auto result = run_command(std::string(MCOMPRESS_CLI) + " run " + (tmp.path() / "recipe.yaml").string() +
                                  " --quiet --no-tracking --out " + (tmp.path() / "run").string());
  EXPECT_EQ(result.exit_code, 0) << result.output;
  return nlohmann::json::parse(read_text(tmp.path() / "run/stages/02_prune/record.json"));
}

TEST(AutoPrune, ProbesEveryCriterionPicksTheBestAndRecordsWhy) {
  TempDir tmp("auto-prune");
  const auto record = run_and_read_record(tmp, recipe("{sparsity: 0.5, probe_samples: 300}"));
  const auto stats = record.at("stats");
  const auto probes = stats.at("probes");
  std::vector<std::string> probed;
  std::vector<mcompress::ProbedCriterion> measured;
  for (const auto& p : probes) {
    probed.push_back(p.at("pass"));
    EXPECT_EQ(p.at("failed"), "");
    // Every probe was scored with its 95% interval and timed with its spread.
    const double accuracy = p.at("accuracy").get<double>();
    EXPECT_LE(p.at("score_interval")[0].get<double>(), accuracy);
    EXPECT_GE(p.at("score_interval")[1].get<double>(), accuracy);
    const double median = p.at("latency_b1_median_ms").get<double>();
    EXPECT_LE(p.at("latency_b1_p25_ms").get<double>(), median);
    EXPECT_GE(p.at("latency_b1_p75_ms").get<double>(), median);
    measured.push_back({p.at("pass"), accuracy, 300,
                        mcompress::Measurement::within(median, p.at("latency_b1_p25_ms"), p.at("latency_b1_p75_ms"))});
  }
  EXPECT_EQ(probed, (std::vector<std::string>{"activation_prune", "gradient_prune", "magnitude_prune"}));
  // The choice is the one the tie rule makes from what the record shows, and
  // the record says why (CriterionChoice tests cover the rule itself).
  const auto expected = mcompress::choose_criterion(measured, "held-out accuracy");
  EXPECT_EQ(stats.at("chosen"), measured[expected.chosen].pass);
  EXPECT_EQ(stats.at("why"), expected.why);
  EXPECT_EQ(stats.at("ties"), nlohmann::json(expected.ties));
  // The chosen criterion really ran: channels were removed.
  const auto metrics = record.at("outcome").at("metrics");
  const auto trained = nlohmann::json::parse(read_text(tmp.path() / "run/stages/01_train/record.json"));
  EXPECT_LT(metrics.at("params").get<double>(), 0.6 * trained.at("outcome").at("metrics").at("params").get<double>());
}

TEST(AutoPrune, CandidatesCanBeRestrictedAndUnknownOnesFail) {
  TempDir tmp("auto-prune-restricted");
  const auto record = run_and_read_record(tmp, recipe("{sparsity: 0.3, candidates: [magnitude_prune]}"));
  EXPECT_EQ(record.at("stats").at("chosen"), "magnitude_prune");
  EXPECT_EQ(record.at("stats").at("probes").size(), 1u);

  TempDir bad("auto-prune-bad");
  write_text(bad.path() / "recipe.yaml", recipe("{candidates: [finetune]}"));
  const auto result = run_command(std::string(MCOMPRESS_CLI) + " run " + (bad.path() / "recipe.yaml").string() +
                                  " --quiet --no-tracking --out " + (bad.path() / "run").string());
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("auto_prune candidate 'finetune' is not a loaded pruning pass"), std::string::npos)
      << result.output;
}

TEST(CriterionChoice, WilsonIntervalsOfAFraction) {
  const auto half = mcompress::fraction_interval(0.5, 100);
  EXPECT_NEAR(half.low, 0.4038, 1e-4);
  EXPECT_NEAR(half.high, 0.5962, 1e-4);
  const auto none_wrong = mcompress::fraction_interval(1.0, 50);
  EXPECT_EQ(none_wrong.high, 1.0);
  EXPECT_NEAR(none_wrong.low, 0.9287, 1e-4);
  EXPECT_EQ(mcompress::fraction_interval(0.3, 0).low, 0.0);  // nothing measured: anything is possible
}

mcompress::ProbedCriterion probed(const std::string& pass, double score, int64_t samples, double latency) {
  return {pass, score, samples, mcompress::Measurement::within(latency, 0.95 * latency, 1.05 * latency)};
}

TEST(CriterionChoice, ScoresApartPickTheHighest) {
  const auto choice = mcompress::choose_criterion(
      {probed("magnitude_prune", 0.80, 10000, 0.5), probed("gradient_prune", 0.90, 10000, 1.0)}, "held-out accuracy");
  EXPECT_EQ(choice.chosen, 1u);
  EXPECT_TRUE(choice.ties.empty());
  EXPECT_EQ(choice.why.find("gradient_prune had the highest held-out accuracy"), 0u) << choice.why;
}

TEST(CriterionChoice, ScoresWithinTheirIntervalsTieAndTheFasterCopyWins) {
  // 300 samples: 80% and 79% are the same score; the second copy is clearly faster.
  const auto choice = mcompress::choose_criterion(
      {probed("magnitude_prune", 0.80, 300, 1.0), probed("gradient_prune", 0.79, 300, 0.6)}, "held-out accuracy");
  EXPECT_EQ(choice.chosen, 1u);
  EXPECT_EQ(choice.ties, (std::vector<std::string>{"`gradient_prune` and `magnitude_prune` tie on held-out accuracy "
                                                   "(intervals overlap), ranked by batch-1 latency."}));
  EXPECT_EQ(choice.why.find("gradient_prune ties with magnitude_prune on held-out accuracy (95% intervals overlap), "
                            "ranked by batch-1 latency"),
            0u)
      << choice.why;
}

TEST(CriterionChoice, TiedOnScoreAndLatencyTheHigherScoreDecides) {
  // The same architecture after uniform pruning: latencies tie too.
  const auto choice = mcompress::choose_criterion(
      {probed("activation_prune", 0.78, 300, 1.0), probed("magnitude_prune", 0.80, 300, 1.01)}, "held-out accuracy");
  EXPECT_EQ(choice.chosen, 1u);
  EXPECT_EQ(choice.why.find("magnitude_prune had the highest held-out accuracy; activation_prune tied with it "
                            "within the measured spread"),
            0u)
      << choice.why;
  ASSERT_EQ(choice.ties.size(), 1u);
  EXPECT_NE(choice.ties[0].find("as they tie on every criterion"), std::string::npos);
}

TEST(CriterionChoice, UntimedCopiesRankByScoreAloneAndNothingToChooseFromIsAnError) {
  const auto choice = mcompress::choose_criterion(
      {{"magnitude_prune", 0.80, 300, std::nullopt}, {"gradient_prune", 0.79, 300, std::nullopt}}, "held-out accuracy");
  EXPECT_EQ(choice.chosen, 0u);
  EXPECT_THROW(mcompress::choose_criterion({}, "held-out accuracy"), mcompress::Error);
}

}  // namespace
