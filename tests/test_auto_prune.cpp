// The strategy selector: auto_prune probes every loaded pruning criterion on
// the model, picks the best by held-out score, runs it, and says why.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

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
  double best = -1;
  std::string best_pass;
  for (const auto& p : probes) {
    probed.push_back(p.at("pass"));
    EXPECT_EQ(p.at("failed"), "");
    if (p.at("accuracy").get<double>() > best) {
      best = p.at("accuracy").get<double>();
      best_pass = p.at("pass");
    }
  }
  EXPECT_EQ(probed, (std::vector<std::string>{"activation_prune", "gradient_prune", "magnitude_prune"}));
  EXPECT_EQ(stats.at("chosen"), best_pass);
  EXPECT_NE(stats.at("why").get<std::string>().find(best_pass + " had the highest held-out accuracy"),
            std::string::npos);
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

}  // namespace
