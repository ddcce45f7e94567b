// The runner end to end through the CLI: gates, failures, atomic checkpoints,
// resume after a killed run, and what the records contain.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace fs = std::filesystem;
using mcompress::testing::read_text;
using mcompress::testing::run_command;
using mcompress::testing::TempDir;
using mcompress::testing::write_text;

namespace {

const std::string kTestPlugins = std::string(MCOMPRESS_TEST_PLUGIN_DIR) + "/good";

// A small, fast recipe: zoo MLP, 3000 Fashion-MNIST training samples.
std::string recipe_with(const std::string& stages, const std::string& extra = "") {
  return std::string(R"(mcompress: 1
name: runner_test
seed: 3
threads: 1
model:
  zoo: mlp
  options: {width: 16}
data:
  path: )") + MCOMPRESS_FASHION_MNIST_DIR + R"(
  train_limit: 3000
  eval_limit: 500
  validation_size: 500
probes:
  enabled: [accuracy, params, size]
)" + extra + "stages:\n" + stages;
}

const std::string kTrain = R"(  - name: train
    pass: finetune
    params: {epochs: 1, batch_size: 64, lr: 0.05}
)";

struct Run {
  mcompress::testing::CommandResult result;
  fs::path dir;
};

Run run_recipe(const TempDir& tmp, const std::string& recipe, const std::string& env = "") {
  write_text(tmp.path() / "recipe.yaml", recipe);
  const fs::path out = tmp.path() / "run";
  const std::string cmd = env + " " + MCOMPRESS_CLI + " run " + (tmp.path() / "recipe.yaml").string() +
                          " --quiet --out " + out.string() + " --plugin-dir " + kTestPlugins;
  return {run_command(cmd), out};
}

nlohmann::json read_json(const fs::path& path) { return nlohmann::json::parse(read_text(path)); }

std::vector<std::string> statuses(const fs::path& run_dir) {
  std::vector<std::string> out;
  const auto report = read_json(run_dir / "report.json");
  for (const auto& stage : report.at("stages")) out.push_back(stage.at("status"));
  return out;
}

// Temporary files are dot-files next to their target; none may survive.
std::vector<fs::path> leftover_temp_files(const fs::path& dir) {
  std::vector<fs::path> found;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.path().filename().string().rfind(".", 0) == 0) found.push_back(entry.path());
  }
  return found;
}

TEST(Runner, GateRollsBackADamagingStageAndContinuesFromThePreviousModel) {
  TempDir tmp("gate-rollback");
  const auto run = run_recipe(tmp, recipe_with(kTrain + R"(  - name: damage
    pass: test_damage
    gate: {max_accuracy_drop: 0.05, on_fail: rollback}
  - name: after
    pass: test_explode
    gate: {max_accuracy_drop: 0.05}
)"));
  // test_explode fails: the run ends with the trained model still the last accepted one.
  EXPECT_EQ(run.result.exit_code, 1) << run.result.output;
  EXPECT_EQ(statuses(run.dir), (std::vector<std::string>{"baseline", "accepted", "rolled_back", "failed"}));
  const auto report = read_json(run.dir / "report.json");
  EXPECT_EQ(report.at("final_stage"), "train");
  const auto damage = read_json(run.dir / "stages/02_damage/record.json");
  EXPECT_GT(damage.at("gate").at("accuracy_drop").get<double>(), 0.05);
  EXPECT_EQ(damage.at("gate").at("reference"), "train");
  EXPECT_NE(damage.at("outcome").at("gate_note").get<std::string>().find("more than the allowed 5.00 pt"),
            std::string::npos);
}

TEST(Runner, GateWithOnFailStopEndsTheRunWithExitCode3) {
  TempDir tmp("gate-stop");
  const auto run = run_recipe(tmp, recipe_with(kTrain + R"(  - name: damage
    pass: test_damage
    gate: {max_accuracy_drop: 0.05, on_fail: stop, reference: train}
  - pass: finetune
)"));
  EXPECT_EQ(run.result.exit_code, 3) << run.result.output;
  EXPECT_NE(run.result.output.find("did not pass its quality gate"), std::string::npos);
  EXPECT_EQ(statuses(run.dir), (std::vector<std::string>{"baseline", "accepted", "stopped"}));
  EXPECT_FALSE(fs::exists(run.dir / "model.pt"));
  EXPECT_FALSE(fs::exists(run.dir / "stages/03_finetune"));
}

TEST(Runner, FailingPassIsReportedWithPluginPassAndStageAndWritesNoModel) {
  TempDir tmp("explode");
  const auto run = run_recipe(tmp, recipe_with(R"(  - name: boom
    pass: test_explode
)"));
  EXPECT_EQ(run.result.exit_code, 1);
  EXPECT_NE(run.result.output.find("stage 'boom' (pass 'test_explode' from plugin 'test_passes' 1.0.0) "
                                   "failed: the test pass exploded on purpose"),
            std::string::npos)
      << run.result.output;
  EXPECT_FALSE(fs::exists(run.dir / "stages/01_boom/model.pt"));
  EXPECT_TRUE(fs::exists(run.dir / "report.md"));
  EXPECT_TRUE(leftover_temp_files(run.dir).empty());
}

TEST(Runner, RecordsHoldRecipeParametersPluginSeedMetricsAndTimings) {
  TempDir tmp("records");
  const auto run = run_recipe(tmp, recipe_with(kTrain));
  ASSERT_EQ(run.result.exit_code, 0) << run.result.output;
  const auto record = read_json(run.dir / "stages/01_train/record.json");
  EXPECT_EQ(record.at("recipe").at("name"), "runner_test");
  EXPECT_EQ(record.at("params").at("lr"), 0.05);
  EXPECT_EQ(record.at("params").at("optimizer"), "sgd");  // default resolved
  EXPECT_EQ(record.at("plugin").at("name"), "finetune");
  EXPECT_EQ(record.at("plugin").at("version"), "1.0.0");
  EXPECT_EQ(record.at("seed"), 4);  // recipe seed + stage index
  EXPECT_GT(record.at("outcome").at("metrics").at("accuracy").get<double>(), 0.5);
  EXPECT_GT(record.at("outcome").at("pass_seconds").get<double>(), 0.0);
  EXPECT_GT(record.at("stats").at("steps").get<int>(), 0);
  // Every library whose code ran, by absolute path and SHA-256.
  std::vector<std::string> libraries;
  for (const auto& library : record.at("libraries")) {
    const std::string path = library.at("path");
    EXPECT_TRUE(fs::path(path).is_absolute()) << path;
    EXPECT_EQ(library.at("sha256"), run_command("sha256sum " + path).output.substr(0, 64)) << path;
    libraries.push_back(fs::path(path).filename().string());
  }
  for (const auto* expected : {"mcompress", "finetune.so", "test_passes.so"}) {
    EXPECT_NE(std::find(libraries.begin(), libraries.end(), expected), libraries.end()) << expected;
  }
  EXPECT_TRUE(std::any_of(libraries.begin(), libraries.end(),
                          [](const std::string& name) { return name.rfind("libmcompress_sdk", 0) == 0; }));
  EXPECT_TRUE(fs::exists(run.dir / "model.pt"));
  EXPECT_NE(read_text(run.dir / "report.md").find("| train | finetune | accepted |"), std::string::npos);
}

TEST(Runner, KilledRunLeavesOnlyCompleteFilesAndResumesFromTheLastCompletedStage) {
  TempDir tmp("resume");
  const std::string recipe = recipe_with(kTrain + R"(  - name: crash
    pass: test_crash
  - name: polish
    pass: finetune
    params: {epochs: 1, lr: 0.01}
)");
  const auto killed = run_recipe(tmp, recipe, "MCOMPRESS_TEST_CRASH=1");
  EXPECT_NE(killed.result.exit_code, 0);
  EXPECT_TRUE(leftover_temp_files(killed.dir).empty());
  ASSERT_TRUE(fs::exists(killed.dir / "stages/01_train/record.json"));
  EXPECT_FALSE(fs::exists(killed.dir / "stages/02_crash/record.json"));
  const std::string train_record = read_text(killed.dir / "stages/01_train/record.json");

  const auto resumed = run_command(std::string(MCOMPRESS_CLI) + " run --resume " + killed.dir.string() +
                                   " --plugin-dir " + kTestPlugins);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("train: already done (accepted), skipped"), std::string::npos)
      << resumed.output;
  EXPECT_EQ(read_text(killed.dir / "stages/01_train/record.json"), train_record);
  EXPECT_EQ(statuses(killed.dir),
            (std::vector<std::string>{"baseline", "accepted", "accepted", "accepted"}));
  EXPECT_TRUE(fs::exists(killed.dir / "model.pt"));
}

TEST(Runner, ResumeRefusesARecipeThatChanged) {
  TempDir tmp("resume-changed");
  const auto run = run_recipe(tmp, recipe_with(kTrain));
  ASSERT_EQ(run.result.exit_code, 0) << run.result.output;
  auto changed = recipe_with(kTrain);
  changed.replace(changed.find("seed: 3"), 7, "seed: 9");
  write_text(tmp.path() / "recipe.yaml", changed);
  const auto resumed = run_command(std::string(MCOMPRESS_CLI) + " run --resume " + run.dir.string() +
                                   " --plugin-dir " + kTestPlugins);
  EXPECT_NE(resumed.exit_code, 0);
  EXPECT_NE(resumed.output.find("differs from the one run"), std::string::npos) << resumed.output;
}

TEST(Runner, ExistingRunDirectoryIsNotOverwritten) {
  TempDir tmp("no-overwrite");
  const auto first = run_recipe(tmp, recipe_with(kTrain));
  ASSERT_EQ(first.result.exit_code, 0);
  const auto second = run_recipe(tmp, recipe_with(kTrain));
  EXPECT_NE(second.result.exit_code, 0);
  EXPECT_NE(second.result.output.find("already holds a run"), std::string::npos) << second.result.output;
}

TEST(Runner, InvalidRecipeRunsNothingAndWritesNothing) {
  TempDir tmp("invalid");
  const auto run = run_recipe(tmp, recipe_with(R"(  - pass: magnitude_prun
    params: {sparsity: 2.0}
)"));
  EXPECT_EQ(run.result.exit_code, 2);
  EXPECT_NE(run.result.output.find("recipe.yaml:16:"), std::string::npos) << run.result.output;
  EXPECT_NE(run.result.output.find("did you mean `magnitude_prune`"), std::string::npos);
  EXPECT_FALSE(fs::exists(run.dir));
}

TEST(Runner, TeacherOriginalReachesThePass) {
  TempDir tmp("teacher");
  const auto run = run_recipe(tmp, recipe_with(kTrain + R"(  - name: distill
    pass: test_needs_teacher
    teacher: original
)"));
  ASSERT_EQ(run.result.exit_code, 0) << run.result.output;
  const auto record = read_json(run.dir / "stages/02_distill/record.json");
  EXPECT_TRUE(record.at("stats").contains("teacher_output_sum"));
}

TEST(Runner, ExtraProbesPluginProbesEdgeProfileAndDeviceAreRecorded) {
  TempDir tmp("probes");
  std::string recipe = recipe_with(kTrain);
  recipe.replace(recipe.find("enabled: [accuracy, params, size]"), 33,
                 "enabled: [accuracy, fidelity, latency, memory, params, test_probe]\n"
                 "  latency_batch_sizes: [1, 8]\n  latency_runs: 5\n"
                 "  edge: {threads: 1, cpus: [0], memory_mb: 4096}");
  const auto run = run_recipe(tmp, recipe);
  ASSERT_EQ(run.result.exit_code, 0) << run.result.output;
  const auto baseline = read_json(run.dir / "stages/00_baseline/record.json");
  const auto metrics = baseline.at("outcome").at("metrics");
  EXPECT_EQ(metrics.at("fidelity_top1_agreement").get<double>(), 1.0);  // the original against itself
  EXPECT_NEAR(metrics.at("fidelity_mean_kl").get<double>(), 0.0, 1e-9);
  EXPECT_EQ(metrics.at("test_probe_tensors").get<double>(), 6.0);        // 3 linear layers: weight + bias
  EXPECT_GT(metrics.at("peak_rss_mb").get<double>(), 10.0);
  EXPECT_LE(metrics.at("latency_b8_median_ms").get<double>(), metrics.at("latency_b8_p99_ms").get<double>());
  EXPECT_GT(metrics.at("throughput_b8_per_s").get<double>(), 0.0);
  EXPECT_GT(metrics.at("edge_latency_b1_median_ms").get<double>(), 0.0);
  EXPECT_EQ(metrics.at("edge_threads").get<double>(), 1.0);
  EXPECT_EQ(metrics.at("edge_fits").get<double>(), 1.0);
  EXPECT_EQ(baseline.at("device").at("type"), "cpu");
  EXPECT_NE(baseline.at("device").at("gpu_baseline").get<std::string>().find("not available"), std::string::npos);
  // After training, the model no longer agrees perfectly with the untrained original.
  const auto trained = read_json(run.dir / "stages/01_train/record.json").at("outcome").at("metrics");
  EXPECT_LT(trained.at("fidelity_top1_agreement").get<double>(), 0.9);
  EXPECT_GT(trained.at("fidelity_mean_kl").get<double>(), 0.0);
}

TEST(Runner, EdgeProfileReportsAModelThatDoesNotFit) {
  TempDir tmp("edge");
  std::string recipe = recipe_with(kTrain);
  recipe.replace(recipe.find("enabled: [accuracy, params, size]"), 33,
                 "enabled: [accuracy]\n  edge: {threads: 1, memory_mb: 0.0001}");
  const auto run = run_recipe(tmp, recipe);
  ASSERT_EQ(run.result.exit_code, 0) << run.result.output;
  const auto metrics = read_json(run.dir / "stages/01_train/record.json").at("outcome").at("metrics");
  EXPECT_EQ(metrics.at("edge_fits").get<double>(), 0.0);
}

TEST(Runner, JsonModePrintsOnlyTheReport) {
  TempDir tmp("json");
  write_text(tmp.path() / "recipe.yaml", recipe_with(kTrain));
  const auto result = run_command("( " + std::string(MCOMPRESS_CLI) + " run " +
                                  (tmp.path() / "recipe.yaml").string() + " --json --out " +
                                  (tmp.path() / "run").string() + " 2>/dev/null )");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto report = nlohmann::json::parse(result.output);
  EXPECT_EQ(report.at("status"), "completed");
  EXPECT_EQ(report.at("stages").size(), 2u);
}

}  // namespace
