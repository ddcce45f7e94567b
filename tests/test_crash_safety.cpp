// Crash safety: `mcompress run` and `mcompress compare` are killed with
// SIGKILL (with their whole process group) at random points of a small real
// pipeline. Whatever they leave must be complete (JSON parses, TorchScript
// loads, temporary files never under a final name), and rerunning (`run
// --resume`, `compare` again) must reach the result of an uninterrupted run.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/script.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "test_support.h"

namespace fs = std::filesystem;
using mcompress::testing::read_text;
using mcompress::testing::run_command;
using mcompress::testing::TempDir;
using mcompress::testing::write_text;

namespace {

const std::string kPlugins = std::string(" --plugin-dir ") + MCOMPRESS_TEST_PLUGIN_DIR + "/good";
constexpr int kKills = 5;
constexpr unsigned kSeed = 20261123;

// Zoo MLP on a small Fashion-MNIST subset: three stages, a few seconds.
std::string pipeline() {
  return std::string(R"(mcompress: 1
name: crash_safety
seed: 11
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
    params: {epochs: 1, lr: 0.05}
  - name: prune
    pass: magnitude_prune
    params: {sparsity: 0.5}
  - name: recover
    pass: finetune
    params: {epochs: 1, lr: 0.01}
)";
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Starts a shell command in a process group of its own, so it can be killed
// together with every child it started.
pid_t start_group(const std::string& command) {
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", (command + " >/dev/null 2>&1").c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  setpgid(pid, pid);
  return pid;
}

// Kills the group after `seconds` (unless it ended before); true if it was killed.
bool kill_group_after(pid_t pid, double seconds) {
  const auto start = std::chrono::steady_clock::now();
  int status = 0;
  while (seconds_since(start) < seconds) {
    if (waitpid(pid, &status, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(-pid, SIGKILL);
  waitpid(pid, &status, 0);
  // Children of the group that outlived the shell get a moment to be reaped by init.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  return true;
}

bool is_temporary(const fs::path& file) {
  const std::string name = file.filename().string();
  return name.rfind(".", 0) == 0 && name.find(".tmp-") != std::string::npos;
}

// Every file under `dir` that has a final name is complete; returns how many were checked.
int check_files_complete(const fs::path& dir) {
  int checked = 0;
  if (!fs::exists(dir)) return 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    const fs::path& file = entry.path();
    if (is_temporary(file)) continue;  // a write the kill interrupted, never under its final name
    EXPECT_NE(file.filename().string().front(), '.') << "unexpected hidden file " << file;
    const auto ext = file.extension().string();
    if (ext == ".json") {
      EXPECT_NO_THROW(nlohmann::json::parse(read_text(file))) << file;
    } else if (ext == ".pt") {
      EXPECT_NO_THROW(torch::jit::load(file.string())) << file;
    } else if (ext == ".md" || ext == ".yaml" || ext == ".csv" || ext == ".html") {
      EXPECT_FALSE(read_text(file).empty()) << file;
    }
    ++checked;
  }
  return checked;
}

std::vector<fs::path> temporary_files(const fs::path& dir) {
  std::vector<fs::path> found;
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    if (is_temporary(entry.path())) found.push_back(entry.path());
  return found;
}

nlohmann::json read_json(const fs::path& path) { return nlohmann::json::parse(read_text(path)); }

torch::Tensor outputs_of(const fs::path& model_file) {
  auto model = torch::jit::load(model_file.string());
  model.eval();
  torch::NoGradGuard no_grad;
  return model.forward({torch::linspace(-1, 1, 8 * 28 * 28).reshape({8, 1, 28, 28})}).toTensor();
}

// Stage name -> metrics that do not depend on timing.
std::map<std::string, nlohmann::json> stable_metrics(const nlohmann::json& report) {
  std::map<std::string, nlohmann::json> out;
  for (const auto& stage : report.at("stages")) {
    const auto& m = stage.at("metrics");
    out[stage.at("name")] = {{"status", stage.at("status")},
                             {"accuracy", m.at("accuracy")},
                             {"params", m.at("params")},
                             {"size_bytes", m.at("size_bytes")}};
  }
  return out;
}

std::string cli() { return MCOMPRESS_CLI; }

TEST(CrashSafety, RunKilledAtRandomPointsResumesToTheUninterruptedResult) {
  TempDir tmp("crash-run");
  write_text(tmp.path() / "recipe.yaml", pipeline());
  const std::string run_base = cli() + " run " + (tmp.path() / "recipe.yaml").string() + " --quiet --no-tracking" + kPlugins;

  const auto reference_dir = tmp.path() / "reference";
  const auto start = std::chrono::steady_clock::now();
  const auto reference = run_command(run_base + " --out " + reference_dir.string());
  const double duration = seconds_since(start);
  ASSERT_EQ(reference.exit_code, 0) << reference.output;
  const auto expected = stable_metrics(read_json(reference_dir / "report.json"));
  const auto expected_outputs = outputs_of(reference_dir / "model.pt");

  std::mt19937 rng(kSeed);
  std::uniform_real_distribution<double> when(0.05 * duration, 0.95 * duration);
  int killed = 0;
  for (int i = 0; i < kKills; ++i) {
    // Half the runs isolate their stages, so killed stage processes are covered too.
    const std::string isolate = i % 2 ? " --isolate" : "";
    const auto dir = tmp.path() / ("killed-" + std::to_string(i));
    const double at = when(rng);
    SCOPED_TRACE("run " + std::to_string(i) + isolate + " killed after " + std::to_string(at) + " s");
    killed += kill_group_after(start_group(run_base + isolate + " --out " + dir.string()), at);
    check_files_complete(dir);

    // Continue the run; one killed before its run.json existed starts afresh.
    const bool started = fs::exists(dir / "run.json");
    const auto resumed = started ? run_command(cli() + " run --resume " + dir.string() + " --quiet --no-tracking" +
                                               kPlugins + isolate)
                                 : run_command(run_base + isolate + " --out " + dir.string());
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    EXPECT_GT(check_files_complete(dir), 0);
    EXPECT_EQ(temporary_files(dir), std::vector<fs::path>{}) << "a resumed run clears what the kill left";
    EXPECT_EQ(stable_metrics(read_json(dir / "report.json")), expected);
    EXPECT_TRUE(torch::equal(outputs_of(dir / "model.pt"), expected_outputs));
  }
  EXPECT_GE(killed, kKills - 1) << "the kill times should fall inside the runs";
}

// Ranked candidates: name -> status and metrics that do not depend on timing.
std::map<std::string, nlohmann::json> stable_comparison(const fs::path& dir) {
  std::map<std::string, nlohmann::json> out;
  const auto comparison = read_json(dir / "comparison.json");
  for (const auto& c : comparison.at("candidates")) {
    nlohmann::json entry = {{"status", c.at("status")}};
    for (const auto* metric : {"accuracy", "accuracy_drop", "params", "size_bytes"}) {
      if (c.contains("metrics") && c.at("metrics").contains(metric)) entry[metric] = c.at("metrics").at(metric);
    }
    out[c.at("name").get<std::string>()] = entry;
  }
  return out;
}

TEST(CrashSafety, CompareKilledAtRandomPointsReachesTheUninterruptedComparison) {
  TempDir tmp("crash-compare");
  write_text(tmp.path() / "base.yaml", pipeline());
  write_text(tmp.path() / "sweep.yaml", R"(mcompress_sweep: 1
name: crash_sweep
base: base.yaml
candidates:
  - name: no_pruning
    stages: [{name: train, pass: finetune, params: {epochs: 1, lr: 0.05}}]
grid:
  stages.prune.params.sparsity: [0.25, 0.5, 0.75]
objective:
  reference: train
  maximize: accuracy
)");
  const std::string compare_base = cli() + " compare " + (tmp.path() / "sweep.yaml").string() +
                                   " --quiet --no-tracking --jobs 2" + kPlugins;
  const auto reference_dir = tmp.path() / "reference";
  const auto start = std::chrono::steady_clock::now();
  const auto reference = run_command(compare_base + " --out " + reference_dir.string());
  const double duration = seconds_since(start);
  ASSERT_EQ(reference.exit_code, 0) << reference.output;
  const auto expected = stable_comparison(reference_dir);
  ASSERT_EQ(expected.size(), 4u) << read_text(reference_dir / "comparison.json");
  for (const auto& [name, entry] : expected) EXPECT_EQ(entry.at("status"), "completed") << name;

  std::mt19937 rng(kSeed + 1);
  std::uniform_real_distribution<double> when(0.05 * duration, 0.95 * duration);
  for (int i = 0; i < 3; ++i) {
    const auto dir = tmp.path() / ("killed-" + std::to_string(i));
    const double at = when(rng);
    SCOPED_TRACE("compare " + std::to_string(i) + " killed after " + std::to_string(at) + " s");
    kill_group_after(start_group(compare_base + " --out " + dir.string()), at);
    check_files_complete(dir);
    const auto rerun = run_command(compare_base + " --out " + dir.string());
    ASSERT_EQ(rerun.exit_code, 0) << rerun.output;
    check_files_complete(dir);
    EXPECT_EQ(stable_comparison(dir), expected);
    EXPECT_EQ(read_json(dir / "comparison.json").at("best"), read_json(reference_dir / "comparison.json").at("best"));
  }
}

// Processes whose command line mentions `text`.
std::vector<pid_t> processes_mentioning(const std::string& text) {
  std::vector<pid_t> found;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = read_text(entry.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(text) != std::string::npos && cmdline.find("sh -c") == std::string::npos)
      found.push_back(std::stoi(name));
  }
  return found;
}

TEST(CrashSafety, CandidatesEndWithAKilledCompareSoARerunNeverRacesThem) {
  TempDir tmp("crash-compare-alone");
  write_text(tmp.path() / "base.yaml", pipeline());
  write_text(tmp.path() / "sweep.yaml", R"(mcompress_sweep: 1
name: lonely_kill
base: base.yaml
grid:
  stages.prune.params.sparsity: [0.25, 0.5]
)");
  const auto out = tmp.path() / "out";
  const pid_t group = start_group(cli() + " compare " + (tmp.path() / "sweep.yaml").string() +
                                  " --quiet --no-tracking --jobs 2" + kPlugins + " --out " + out.string());
  // Wait until both candidates (and their stage processes) are running.
  std::vector<pid_t> compare;
  for (int i = 0; i < 200 && processes_mentioning(out.string() + "/candidates").size() < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  for (const pid_t pid : processes_mentioning(" compare "))
    if (read_text("/proc/" + std::to_string(pid) + "/cmdline").find(out.string()) != std::string::npos)
      compare.push_back(pid);
  ASSERT_EQ(compare.size(), 1u);
  ASSERT_FALSE(processes_mentioning(out.string() + "/candidates").empty());
  kill(compare.front(), SIGKILL);  // the sweep host alone, not its process group
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(processes_mentioning(out.string() + "/candidates"), std::vector<pid_t>{});
  kill(-group, SIGKILL);
  int status = 0;
  waitpid(group, &status, 0);
}

}  // namespace
