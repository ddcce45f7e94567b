// `mcompress run --isolate`: each stage's pass runs in a child process, so a
// plugin that segfaults, aborts, leaks or hangs fails its stage with a clear
// reason while the host writes its record and report and exits normally.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "test_support.h"

namespace fs = std::filesystem;
using mcompress::testing::read_text;
using mcompress::testing::run_command;
using mcompress::testing::TempDir;
using mcompress::testing::write_text;

namespace {

const std::string kTestPlugins = std::string(MCOMPRESS_TEST_PLUGIN_DIR) + "/good";

std::string recipe_with(const std::string& stages) {
  return std::string(R"(mcompress: 1
name: isolation_test
seed: 5
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
  enabled: [accuracy, params, size]
stages:
  - name: train
    pass: finetune
    params: {epochs: 1, batch_size: 64, lr: 0.05}
)" + stages;
}

struct Run {
  mcompress::testing::CommandResult result;
  fs::path dir;
};

// Under AddressSanitizer (scripts/test.sh --sanitize), a pass that segfaults
// on purpose must still die by the signal, as in a normal build, rather than
// have ASan report the fault and exit with code 1.
std::string environment_for_crashing_children() {
#ifdef __SANITIZE_ADDRESS__
  const char* options = std::getenv("ASAN_OPTIONS");
  return std::string("ASAN_OPTIONS='") + (options ? options : "") + ":handle_segv=0' ";
#else
  return "";
#endif
}

Run run_recipe(const fs::path& dir, const std::string& recipe, const std::string& flags) {
  write_text(dir / "recipe.yaml", recipe);
  const fs::path out = dir / "run";
  return {run_command(environment_for_crashing_children() + MCOMPRESS_CLI + " run " + (dir / "recipe.yaml").string() + " --quiet --no-tracking --out " +
                      out.string() + " --plugin-dir " + kTestPlugins + " " + flags),
          out};
}

nlohmann::json read_json(const fs::path& path) { return nlohmann::json::parse(read_text(path)); }

std::vector<std::string> statuses(const nlohmann::json& report) {
  std::vector<std::string> out;
  for (const auto& stage : report.at("stages")) out.push_back(stage.at("status"));
  return out;
}

struct Misbehaviour {
  std::string pass;
  std::string limits;  // the stage's `isolation:` mapping
  std::string reason;  // what the failed stage's error must say
  std::string output;  // a line the pass logged before it misbehaved, if any
};

void PrintTo(const Misbehaviour& bad, std::ostream* out) { *out << bad.pass; }

class MisbehavingPass : public ::testing::TestWithParam<Misbehaviour> {};

TEST_P(MisbehavingPass, FailsItsStageWithAClearReasonAndTheHostWritesEverything) {
  const auto& bad = GetParam();
  TempDir tmp("isolate-" + bad.pass);
  const auto run = run_recipe(tmp.path(), recipe_with("  - name: bad\n    pass: " + bad.pass +
                                                      "\n    isolation: " + bad.limits +
                                                      "\n  - name: after\n    pass: finetune\n"),
                              "--isolate");
  // A failing stage, reported by a host that ended normally: exit code 1, as without --isolate.
  EXPECT_EQ(run.result.exit_code, 1) << run.result.output;
  EXPECT_NE(run.result.output.find("stage 'bad' (pass '" + bad.pass + "' from plugin 'test_passes' 1.0.0) failed: "),
            std::string::npos)
      << run.result.output;
  EXPECT_NE(run.result.output.find(bad.reason), std::string::npos) << run.result.output;

  const auto report = read_json(run.dir / "report.json");
  EXPECT_EQ(report.at("status"), "failed");
  EXPECT_EQ(statuses(report), (std::vector<std::string>{"baseline", "accepted", "failed"}));
  EXPECT_EQ(report.at("final_stage"), "train");
  const auto record = read_json(run.dir / "stages/02_bad/record.json");
  const std::string error = record.at("outcome").at("error");
  EXPECT_NE(error.find(bad.reason), std::string::npos) << error;
  if (!bad.output.empty()) {
    EXPECT_NE(error.find("last output: "), std::string::npos) << error;
    EXPECT_NE(error.find(bad.output), std::string::npos) << error;
  }
  EXPECT_NE(read_text(run.dir / "report.md").find("failed"), std::string::npos);

  // The stage before it is intact; nothing of the failed stage's exchange is left.
  const auto train = read_json(run.dir / "stages/01_train/record.json");
  EXPECT_EQ(train.at("outcome").at("status"), "accepted");
  EXPECT_GT(train.at("outcome").at("metrics").at("accuracy").get<double>(), 0.5);
  EXPECT_NO_THROW(torch::jit::load((run.dir / "stages/01_train/model.pt").string()));
  EXPECT_FALSE(fs::exists(run.dir / "stages/02_bad/model.pt"));
  EXPECT_FALSE(fs::exists(run.dir / "stages/02_bad/isolated"));
  EXPECT_TRUE(fs::exists(run.dir / "stages/02_bad/stage.log"));
  EXPECT_FALSE(fs::exists(run.dir / "stages/03_after"));
}

INSTANTIATE_TEST_SUITE_P(
    Isolate, MisbehavingPass,
    ::testing::Values(Misbehaviour{"test_segfault", "{}", "died of signal 11 (Segmentation fault)", ""},
                      Misbehaviour{"test_abort", "{}", "died of signal 6 (Aborted)", ""},
                      Misbehaviour{"test_leak", "{memory_limit_mb: 700}", "exceeded memory limit 700 MB",
                                   "leaking 64 MB blocks"},
                      Misbehaviour{"test_hang", "{time_limit_s: 6}", "exceeded time limit 6 s", "sleeping forever"}),
    [](const ::testing::TestParamInfo<Misbehaviour>& info) { return info.param.pass; });

TEST(Isolate, AThrowingPassFailsWithTheSameMessageAsInProcess) {
  TempDir tmp("isolate-explode");
  const auto run = run_recipe(tmp.path(), recipe_with("  - name: boom\n    pass: test_explode\n"), "--isolate");
  EXPECT_EQ(run.result.exit_code, 1);
  EXPECT_NE(run.result.output.find("stage 'boom' (pass 'test_explode' from plugin 'test_passes' 1.0.0) "
                                   "failed: the test pass exploded on purpose"),
            std::string::npos)
      << run.result.output;
}

// Final model's outputs on fixed inputs.
torch::Tensor outputs_of(const fs::path& model_file) {
  auto model = torch::jit::load(model_file.string());
  model.eval();
  torch::NoGradGuard no_grad;
  auto input = torch::linspace(-1, 1, 4 * 28 * 28).reshape({4, 1, 28, 28});
  return model.forward({input}).toTensor();
}

// A pass's summary without its timing ("..., 65826 samples/s").
std::string without_throughput(const std::string& summary) {
  return std::regex_replace(summary, std::regex("[0-9]+ samples/s"), "N samples/s");
}

TEST(Isolate, APipelineGivesTheSameResultWithAndWithoutIsolation) {
  const std::string stages = R"(  - name: prune
    pass: magnitude_prune
    params: {sparsity: 0.5}
  - name: distill
    pass: kd_standard
    teacher: train
    params: {epochs: 1}
)";
  TempDir in_process("isolate-same-a"), isolated("isolate-same-b");
  const auto a = run_recipe(in_process.path(), recipe_with(stages), "");
  const auto b = run_recipe(isolated.path(), recipe_with(stages), "--isolate");
  ASSERT_EQ(a.result.exit_code, 0) << a.result.output;
  ASSERT_EQ(b.result.exit_code, 0) << b.result.output;
  const auto report_a = read_json(a.dir / "report.json"), report_b = read_json(b.dir / "report.json");
  ASSERT_EQ(report_a.at("stages").size(), report_b.at("stages").size());
  for (size_t i = 0; i < report_a.at("stages").size(); ++i) {
    const auto& sa = report_a.at("stages")[i];
    const auto& sb = report_b.at("stages")[i];
    EXPECT_EQ(sa.at("status"), sb.at("status"));
    EXPECT_EQ(without_throughput(sa.at("summary")), without_throughput(sb.at("summary")));
    for (const auto* metric : {"accuracy", "params", "size_bytes"}) {
      EXPECT_EQ(sa.at("metrics").at(metric), sb.at("metrics").at(metric)) << sa.at("name") << " " << metric;
    }
  }
  EXPECT_TRUE(torch::equal(outputs_of(a.dir / "model.pt"), outputs_of(b.dir / "model.pt")));
  EXPECT_TRUE(fs::exists(b.dir / "stages/03_distill/stage.log"));
  EXPECT_FALSE(fs::exists(b.dir / "stages/03_distill/isolated"));
}

TEST(Isolate, LimitsAreValidatedWithTheirPositions) {
  TempDir tmp("isolate-invalid");
  std::string recipe = recipe_with("  - name: bad\n    pass: test_damage\n    isolation: {time_limit_s: -1}\n");
  recipe.replace(recipe.find("stages:"), 7, "isolation: {memori_limit_mb: 100}\nstages:");
  write_text(tmp.path() / "recipe.yaml", recipe);
  const auto r = run_command(std::string(MCOMPRESS_CLI) + " run " + (tmp.path() / "recipe.yaml").string() +
                             " --dry-run --plugin-dir " + kTestPlugins);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("recipe.yaml:15:13: error: unknown key `memori_limit_mb` in `isolation`; did you mean "
                          "`memory_limit_mb`?"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("recipe.yaml:22:31: error: `stages[1].isolation.time_limit_s` (seconds; 0 = no limit) = -1 "
                          "is out of range"),
            std::string::npos)
      << r.output;
}

}  // namespace
