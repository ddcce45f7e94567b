// Experiment tracking: the MLflow file store layout byte for byte, reading it
// back, concurrent experiment creation, what a run directory becomes, and
// `mcompress run | compare` logging plus `mcompress runs list | show | diff`.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "mcompress/framework/tracking/run_tracking.h"
#include "mcompress/framework/tracking/runs_view.h"
#include "mcompress/framework/tracking/tracking.h"
#include "mcompress/sdk/error.h"
#include "test_support.h"

namespace fs = std::filesystem;
using mcompress::testing::read_text;
using mcompress::testing::run_command;
using mcompress::testing::TempDir;
using mcompress::testing::write_text;

namespace {

const std::regex kRunId("[0-9a-f]{32}");

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

mcompress::TrackedRun sample_run(const fs::path& artifact) {
  mcompress::TrackedRun run;
  run.name = "first try";
  run.status = mcompress::MlflowRunStatus::Finished;
  run.start_time_ms = 1700000000000;
  run.end_time_ms = 1700000012345;
  run.user = "alice";
  run.params = {{"prune.sparsity", "0.5"}, {"seed", "3"}};
  run.metrics["accuracy"] = {{1700000001000, 0.1, 0}, {1700000002000, 0.8125, 1}, {1700000003000, 0.75, 2}};
  run.metrics["params"] = {{1700000001000, 12345.0, 0}};
  run.tags = {{"mcompress.status", "completed"}};
  run.artifacts = {{"report.md", artifact}, {"stages/01_train/record.json", artifact}};
  return run;
}

TEST(TrackingStore, WritesMlflowsFileStoreLayout) {
  TempDir tmp("tracking-layout");
  write_text(tmp.path() / "report.md", "# report\n");
  mcompress::TrackingStore store(tmp.path() / "mlruns");
  EXPECT_FALSE(fs::exists(tmp.path() / "mlruns"));  // nothing until something is logged

  const std::string experiment = store.ensure_experiment("runner_test");
  EXPECT_EQ(experiment, "1");
  EXPECT_EQ(store.ensure_experiment("runner_test"), "1");  // looked up by name
  EXPECT_EQ(store.ensure_experiment("other"), "2");
  const std::string run_id = store.log_run(experiment, sample_run(tmp.path() / "report.md"));
  EXPECT_TRUE(std::regex_match(run_id, kRunId)) << run_id;

  const fs::path root = fs::absolute(tmp.path() / "mlruns").lexically_normal();
  EXPECT_TRUE(fs::is_directory(root / ".trash"));
  const std::string millis = "[0-9]{13}";
  // Experiment 0 exists in every MLflow store.
  const auto default_meta = lines_of(read_text(root / "0" / "meta.yaml"));
  ASSERT_EQ(default_meta.size(), 6u);
  EXPECT_EQ(default_meta[0], "artifact_location: file://" + (root / "0").string());
  EXPECT_TRUE(std::regex_match(default_meta[1], std::regex("creation_time: " + millis))) << default_meta[1];
  EXPECT_EQ(default_meta[2], "experiment_id: '0'");
  EXPECT_TRUE(std::regex_match(default_meta[3], std::regex("last_update_time: " + millis)));
  EXPECT_EQ(default_meta[4], "lifecycle_stage: active");
  EXPECT_EQ(default_meta[5], "name: Default");
  EXPECT_EQ(lines_of(read_text(root / "1" / "meta.yaml"))[5], "name: runner_test");

  const fs::path run = root / "1" / run_id;
  const std::string meta = read_text(run / "meta.yaml");
  EXPECT_EQ(meta, "artifact_uri: file://" + (run / "artifacts").string() +
                      "\n"
                      "end_time: 1700000012345\n"
                      "entry_point_name: ''\n"
                      "experiment_id: '1'\n"
                      "lifecycle_stage: active\n"
                      "run_id: " + run_id + "\n" +  // plain: hex never reads as a YAML number without a '.'
                      "run_name: first try\n"
                      "run_uuid: " + run_id + "\n" +
                      "source_name: ''\n"
                      "source_type: 4\n"
                      "source_version: ''\n"
                      "start_time: 1700000000000\n"
                      "status: 3\n"
                      "tags: []\n"
                      "user_id: alice\n");
  // Params and tags: the value, no newline. Metrics: "timestamp value step" lines.
  EXPECT_EQ(read_text(run / "params" / "prune.sparsity"), "0.5");
  EXPECT_EQ(read_text(run / "params" / "seed"), "3");
  EXPECT_EQ(read_text(run / "metrics" / "accuracy"),
            "1700000001000 0.1 0\n1700000002000 0.8125 1\n1700000003000 0.75 2\n");
  EXPECT_EQ(read_text(run / "metrics" / "params"), "1700000001000 12345.0 0\n");
  EXPECT_EQ(read_text(run / "tags" / "mlflow.runName"), "first try");
  EXPECT_EQ(read_text(run / "tags" / "mlflow.user"), "alice");
  EXPECT_EQ(read_text(run / "tags" / "mcompress.status"), "completed");
  EXPECT_EQ(read_text(run / "artifacts" / "report.md"), "# report\n");
  EXPECT_EQ(read_text(run / "artifacts" / "stages" / "01_train" / "record.json"), "# report\n");
  // Nothing else: no temporary files anywhere.
  std::set<std::string> names;
  for (const auto& e : fs::recursive_directory_iterator(root)) names.insert(e.path().filename().string());
  for (const auto& name : names) EXPECT_TRUE(name == ".trash" || name == ".mcompress.lock" || name[0] != '.') << name;
}

// MLflow reads meta.yaml with PyYAML: the types must come back as MLflow
// wrote them (ids as strings, times and status as integers), and the text
// must be what PyYAML itself would write, quoting included.
TEST(TrackingStore, MetaYamlIsWhatPyYamlWritesEvenForAwkwardNames) {
  TempDir tmp("tracking-yaml");
  mcompress::TrackingStore store(tmp.path() / "mlruns");
  const std::vector<std::string> names{"yes", "1.5", "007", "a: b", "it's", "ünïcode", "x #y", "-", "null", "2024-01-02"};
  std::vector<std::string> files;
  for (const auto& name : names) {
    const auto id = store.ensure_experiment(name);
    mcompress::TrackedRun run;
    run.name = name;
    run.start_time_ms = 1;
    run.end_time_ms = 2;
    files.push_back((tmp.path() / "mlruns" / id / "meta.yaml").string());
    files.push_back((tmp.path() / "mlruns" / id / store.log_run(id, run) / "meta.yaml").string());
  }
  std::string script = R"(
import sys, yaml
Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
for path in sys.argv[1:]:
    text = open(path, encoding="utf-8").read()
    data = yaml.safe_load(text)
    again = yaml.dump(data, default_flow_style=False, allow_unicode=True, sort_keys=True, Dumper=Dumper)
    assert again == text, (path, text, again)
    assert isinstance(data["experiment_id"], str), path
    if "run_id" in data:
        assert isinstance(data["run_id"], str) and isinstance(data["status"], int), path
        assert isinstance(data["end_time"], int) and data["tags"] == [], path
        print(data["run_name"])
    else:
        assert isinstance(data["creation_time"], int), path
)";
  write_text(tmp.path() / "check.py", script);
  std::string command = std::string(MCOMPRESS_PYTHON) + " " + (tmp.path() / "check.py").string();
  for (const auto& f : files) command += " '" + f + "'";
  const auto result = run_command(command);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::string expected;
  for (const auto& name : names) expected += name + "\n";
  EXPECT_EQ(result.output, expected);
}

TEST(TrackingStore, ReadsBackRunsAndFindsThemByIdPrefix) {
  TempDir tmp("tracking-read");
  write_text(tmp.path() / "report.md", "r");
  mcompress::TrackingStore store(tmp.path() / "mlruns");
  const auto experiment = store.ensure_experiment("exp");
  auto older = sample_run(tmp.path() / "report.md");
  const auto first = store.log_run(experiment, older);
  auto newer = older;
  newer.name = "second";
  newer.start_time_ms += 1000;
  newer.status = mcompress::MlflowRunStatus::Failed;
  newer.end_time_ms = 0;  // still unknown: written as null
  const auto second = store.log_run(experiment, newer);

  const auto runs = store.runs();
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].run_id, second);  // newest first
  EXPECT_FALSE(runs[0].end_time.has_value());
  EXPECT_EQ(runs[0].status, 4);
  const auto& run = runs[1];
  EXPECT_EQ(run.run_name, "first try");
  EXPECT_EQ(run.experiment_name, "exp");
  EXPECT_EQ(run.params.at("prune.sparsity"), "0.5");
  EXPECT_EQ(run.metrics.at("accuracy").size(), 3u);
  EXPECT_EQ(run.latest("accuracy"), 0.75);  // the largest step, as MLflow shows it
  EXPECT_EQ(run.tag("mlflow.runName"), "first try");
  EXPECT_EQ(*run.end_time, 1700000012345);

  EXPECT_EQ(store.find_run(first).run_id, first);
  // The shortest prefix that tells the two apart finds one.
  size_t common = 0;
  while (first[common] == second[common]) ++common;
  EXPECT_EQ(store.find_run(first.substr(0, common + 1)).run_id, first);
  // 17 runs: two of them surely share a first digit, which is then ambiguous.
  for (int i = 0; i < 15; ++i) store.log_run(experiment, mcompress::TrackedRun{});
  std::map<char, int> first_digits;
  for (const auto& r : store.runs()) ++first_digits[r.run_id[0]];
  const auto shared = std::find_if(first_digits.begin(), first_digits.end(), [](const auto& d) { return d.second > 1; });
  ASSERT_NE(shared, first_digits.end());
  try {
    store.find_run(std::string(1, shared->first));
    FAIL() << "an ambiguous prefix must be refused";
  } catch (const mcompress::Error& e) {
    EXPECT_NE(std::string(e.what()).find("give more of the id"), std::string::npos) << e.what();
  }
  try {
    store.find_run("zzzz");
    FAIL() << "an unknown id must be refused";
  } catch (const mcompress::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no run with an id starting with 'zzzz'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(store.runs("exp").size(), 17u);
  EXPECT_THROW(store.runs("missing"), mcompress::Error);
}

// Files as MLflow itself writes them, old versions included: integer
// experiment ids, two-field metric lines, nested keys, deleted_time.
TEST(TrackingStore, ReadsRunsThatMlflowWrote) {
  TempDir tmp("tracking-foreign");
  const fs::path root = tmp.path() / "mlruns";
  const std::string id = "4f2a6c0e9b8d47e1a3c5b7d9f1e3a5c7";
  fs::create_directories(root / "0");
  write_text(root / "0" / "meta.yaml", "artifact_location: ./mlruns/0\nexperiment_id: 0\nname: Default\n");
  fs::create_directories(root / "0" / id / "metrics" / "train");
  fs::create_directories(root / "0" / id / "params");
  fs::create_directories(root / "0" / id / "tags");
  write_text(root / "0" / id / "meta.yaml",
             "artifact_uri: ./mlruns/0/" + id + "/artifacts\ndeleted_time: null\nend_time: null\n"
             "experiment_id: '0'\nlifecycle_stage: active\nrun_id: " + id + "\nrun_name: ''\nrun_uuid: " + id +
             "\nstart_time: 5\nstatus: 1\ntags: []\nuser_id: bob\n");
  write_text(root / "0" / id / "metrics" / "train" / "loss", "10 2.5\n20 1.5\n");
  write_text(root / "0" / id / "params" / "lr", "0.1");
  write_text(root / "0" / id / "tags" / "mlflow.runName", "python run");

  const auto runs = mcompress::TrackingStore(root).runs();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].experiment_name, "Default");
  EXPECT_EQ(runs[0].run_name, "python run");  // from the tag when meta.yaml has none
  EXPECT_EQ(runs[0].status, 1);
  EXPECT_FALSE(runs[0].end_time.has_value());
  EXPECT_EQ(runs[0].params.at("lr"), "0.1");
  ASSERT_EQ(runs[0].metrics.at("train/loss").size(), 2u);
  EXPECT_EQ(runs[0].latest("train/loss"), 1.5);  // same step: the later timestamp
  EXPECT_NE(mcompress::run_details(runs[0]).find("RUNNING"), std::string::npos);
}

TEST(TrackingStore, SkipsIncompleteAndDeletedEntriesAndRefusesADeletedExperimentsName) {
  TempDir tmp("tracking-skip");
  const fs::path root = tmp.path() / "mlruns";
  mcompress::TrackingStore store(root);
  const auto id = store.ensure_experiment("kept");
  store.log_run(id, mcompress::TrackedRun{});
  // A run that was being written (no meta.yaml yet), a deleted run, and an
  // experiment deleted by MLflow (moved to .trash).
  fs::create_directories(root / id / "0123456789abcdef0123456789abcdef" / "params");
  const auto deleted_run = store.log_run(id, mcompress::TrackedRun{});
  std::string meta = read_text(root / id / deleted_run / "meta.yaml");
  meta.replace(meta.find("lifecycle_stage: active"), 23, "lifecycle_stage: deleted");
  write_text(root / id / deleted_run / "meta.yaml", meta);
  const auto gone = store.ensure_experiment("gone");
  fs::rename(root / gone, root / ".trash" / gone);

  EXPECT_EQ(store.runs().size(), 1u);
  std::vector<std::string> names;
  for (const auto& e : store.experiments()) names.push_back(e.name);
  EXPECT_EQ(names, (std::vector<std::string>{"Default", "kept"}));
  try {
    store.ensure_experiment("gone");
    FAIL() << "a deleted experiment's name must be refused, as MLflow does";
  } catch (const mcompress::Error& e) {
    EXPECT_NE(std::string(e.what()).find("experiment 'gone' was deleted"), std::string::npos) << e.what();
  }
  EXPECT_EQ(store.ensure_experiment("new"), "3");  // the deleted experiment's id stays taken
}

TEST(TrackingStore, ConcurrentProcessesAndThreadsCreateOneExperimentPerName) {
  TempDir tmp("tracking-concurrent");
  const fs::path root = tmp.path() / "mlruns";
  constexpr int kProcesses = 6;
  constexpr int kThreads = 4;
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // Each process races its own threads too; every store object opens the lock on its own.
      int failures = 0;
      std::vector<std::thread> threads;
      std::mutex mutex;
      for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
          try {
            mcompress::TrackingStore store(root);
            mcompress::TrackedRun run;
            run.name = std::to_string(t);
            store.log_run(store.ensure_experiment(t % 2 ? "shared" : "also shared"), run);
          } catch (...) {
            std::lock_guard<std::mutex> lock(mutex);
            ++failures;
          }
        });
      }
      for (auto& thread : threads) thread.join();
      _exit(failures == 0 ? 0 : 1);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  mcompress::TrackingStore store(root);
  std::map<std::string, std::string> by_name;
  for (const auto& e : store.experiments()) {
    EXPECT_TRUE(by_name.emplace(e.name, e.id).second) << "two experiments named " << e.name;
  }
  EXPECT_EQ(by_name.size(), 3u);  // Default, "shared", "also shared"
  EXPECT_EQ(store.runs("shared").size(), static_cast<size_t>(kProcesses * kThreads / 2));
  EXPECT_EQ(store.runs("also shared").size(), static_cast<size_t>(kProcesses * kThreads / 2));
}

TEST(TrackingFormat, KeysAndNumbersAreWhatMlflowAccepts) {
  EXPECT_EQ(mcompress::mlflow_key("prune.sparsity"), "prune.sparsity");
  EXPECT_EQ(mcompress::mlflow_key("a/b:c"), "a_b_c");
  EXPECT_EQ(mcompress::mlflow_key("x..y"), "x_.y");
  EXPECT_EQ(mcompress::mlflow_number(3.0), "3.0");
  EXPECT_EQ(mcompress::mlflow_number(0.1), "0.1");
  EXPECT_EQ(mcompress::mlflow_number(1e-05), "1e-05");
  EXPECT_EQ(mcompress::mlflow_number(1e16), "1e+16");
  EXPECT_EQ(mcompress::mlflow_number(123456.5), "123456.5");
  EXPECT_EQ(mcompress::mlflow_number(std::nan("")), "nan");
  EXPECT_EQ(mcompress::mlflow_status("completed"), mcompress::MlflowRunStatus::Finished);
  EXPECT_EQ(mcompress::mlflow_status("stopped"), mcompress::MlflowRunStatus::Failed);
  EXPECT_EQ(mcompress::mlflow_status("crashed"), mcompress::MlflowRunStatus::Failed);
  EXPECT_EQ(mcompress::mlflow_status("timeout"), mcompress::MlflowRunStatus::Killed);
}

// A run directory as the runner leaves it when the last stage failed.
TEST(RunTracking, RunDirectoryBecomesParamsMetricsByStageTagsAndArtifacts) {
  TempDir tmp("tracking-mapping");
  const fs::path dir = tmp.path() / "run";
  fs::create_directories(dir / "stages" / "00_baseline");
  fs::create_directories(dir / "stages" / "01_train");
  fs::create_directories(dir / "stages" / "02_boom");
  const nlohmann::json recipe = {
      {"name", "mapping"},
      {"seed", 3},
      {"threads", 0},
      {"model", {{"zoo", "mlp"}, {"path", nullptr}, {"options", {{"width", 16}}}}},
      {"data", {{"dataset", "fashion_mnist"}, {"train_limit", 2000}}},
      {"teacher", nullptr},
      {"stages",
       {{{"name", "train"}, {"pass", "finetune"}, {"params", {{"lr", 0.05}, {"epochs", 1}, {"keep_best", true}}}},
        {{"name", "boom"}, {"pass", "test_explode"}, {"params", nlohmann::json::object()}, {"teacher", "original"}}}}};
  write_text(dir / "run.json",
             nlohmann::json{{"format", 1}, {"recipe_path", "/r/mapping.yaml"}, {"overrides", {"seed=3"}}, {"recipe", recipe}}
                 .dump());
  auto outcome = [](int index, const std::string& name, const std::string& status, double accuracy) {
    return nlohmann::json{{"index", index},       {"name", name},          {"status", status},
                          {"metrics", {{"accuracy", accuracy}, {"params", 100.0}}},
                          {"pass_seconds", 1.5}, {"probe_seconds", 0.25}};
  };
  const nlohmann::json stages = {outcome(0, "baseline", "baseline", 0.1), outcome(1, "train", "accepted", 0.8),
                                 outcome(2, "boom", "failed", 0.8)};
  write_text(dir / "report.json", nlohmann::json{{"recipe", "mapping"},
                                                 {"status", "failed"},
                                                 {"message", "stage 'boom' failed"},
                                                 {"final_stage", "train"},
                                                 {"stages", stages}}
                                      .dump());
  write_text(dir / "report.md", "| table |\n");
  const char* names[] = {"00_baseline", "01_train", "02_boom"};
  for (int i = 0; i < 3; ++i) {
    nlohmann::json record = {{"outcome", stages[i]}, {"threads", 1}};
    if (i > 0) record["plugin"] = {{"name", i == 1 ? "finetune" : "test_passes"}, {"version", "1.0.0"}};
    write_text(dir / "stages" / names[i] / "record.json", record.dump());
  }

  mcompress::RunLogRequest request;
  request.run_dir = dir;
  request.tags = {{"extra", "yes"}};
  const auto run = mcompress::tracked_run_from_directory(request);
  EXPECT_EQ(run.name, "run");
  EXPECT_EQ(run.status, mcompress::MlflowRunStatus::Failed);
  EXPECT_EQ(run.params, (std::map<std::string, std::string>{{"seed", "3"},
                                                              {"threads", "1"},  // really used, not the recipe's 0
                                                              {"model", "zoo:mlp"},
                                                              {"model.width", "16"},
                                                              {"data.dataset", "fashion_mnist"},
                                                              {"data.train_limit", "2000"},
                                                              {"train.pass", "finetune"},
                                                              {"train.lr", "0.05"},
                                                              {"train.epochs", "1"},
                                                              {"train.keep_best", "true"},
                                                              {"boom.pass", "test_explode"},
                                                              {"boom.teacher", "original"}}));
  // The failed stage measured nothing of its own: its step is absent.
  const auto& accuracy = run.metrics.at("accuracy");
  ASSERT_EQ(accuracy.size(), 2u);
  EXPECT_EQ(accuracy[0].step, 0);
  EXPECT_EQ(accuracy[0].value, 0.1);
  EXPECT_EQ(accuracy[1].step, 1);
  EXPECT_EQ(run.metrics.at("final.accuracy").size(), 1u);
  EXPECT_EQ(run.metrics.at("final.accuracy")[0].value, 0.8);
  EXPECT_EQ(run.metrics.at("pass_seconds")[1].value, 1.5);
  EXPECT_EQ(run.tags.at("mcompress.status"), "failed");
  EXPECT_EQ(run.tags.at("mcompress.message"), "stage 'boom' failed");
  EXPECT_EQ(run.tags.at("mcompress.final_stage"), "train");
  EXPECT_EQ(run.tags.at("mcompress.stages"), "baseline,train,boom");
  EXPECT_EQ(run.tags.at("mcompress.stage.boom"), "failed");
  EXPECT_EQ(run.tags.at("mcompress.plugin.finetune"), "1.0.0");
  EXPECT_EQ(run.tags.at("mcompress.plugin.test_passes"), "1.0.0");
  EXPECT_EQ(run.tags.at("mcompress.overrides"), "[\"seed=3\"]");
  EXPECT_EQ(run.tags.at("mcompress.recipe"), "mapping");
  EXPECT_EQ(run.tags.at("mlflow.source.name"), "/r/mapping.yaml");
  EXPECT_EQ(run.tags.at("mlflow.note.content"), "| table |\n");
  EXPECT_FALSE(run.tags.at("mcompress.version").empty());
  EXPECT_EQ(run.tags.at("extra"), "yes");
  std::set<std::string> artifacts;
  for (const auto& [name, source] : run.artifacts) artifacts.insert(name);
  EXPECT_EQ(artifacts, (std::set<std::string>{"report.md", "report.json", "run.json", "stages/00_baseline/record.json",
                                              "stages/01_train/record.json", "stages/02_boom/record.json"}));

  // A candidate that died before writing anything still becomes a run.
  mcompress::RunLogRequest crashed;
  crashed.run_dir = tmp.path() / "never-started";
  crashed.experiment = "sweep";
  crashed.run_name = "candidate";
  crashed.status = "crashed";
  crashed.error = "signal 9";
  mcompress::TrackingStore store(tmp.path() / "mlruns");
  const auto logged = mcompress::log_run_directory(store, crashed);
  const auto back = store.find_run(logged.run_id);
  EXPECT_EQ(back.status, 4);
  EXPECT_EQ(back.experiment_name, "sweep");
  EXPECT_EQ(back.tag("mcompress.message"), "signal 9");
  EXPECT_EQ(back.tag("mcompress.status"), "crashed");
}

// ---- through the CLI, on real (small) runs

const std::string kPlugins = std::string(" --plugin-dir ") + MCOMPRESS_TEST_PLUGIN_DIR + "/good";

std::string small_recipe(const std::string& stages) {
  return std::string(R"(mcompress: 1
name: tracked
seed: 3
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
)" + stages;
}

const std::string kTrainAndPrune = R"(  - name: train
    pass: finetune
    params: {epochs: 1, lr: 0.05}
  - name: prune
    pass: magnitude_prune
    params: {sparsity: 0.5}
)";

std::string cli() { return MCOMPRESS_CLI; }

TEST(TrackingCli, RunsAreLoggedAndListShowDiffQueryThem) {
  TempDir tmp("tracking-cli");
  write_text(tmp.path() / "recipe.yaml", small_recipe(kTrainAndPrune));
  const std::string mlruns = " --mlruns " + (tmp.path() / "mlruns").string();
  const std::string run = cli() + " run " + (tmp.path() / "recipe.yaml").string() + " --quiet" + kPlugins + mlruns;
  auto a = run_command(run + " --out " + (tmp.path() / "a").string());
  ASSERT_EQ(a.exit_code, 0) << a.output;
  auto b = run_command(run + " --out " + (tmp.path() / "b").string() + " --set stages.prune.params.sparsity=0.25");
  ASSERT_EQ(b.exit_code, 0) << b.output;

  auto list = run_command(cli() + " runs list --json" + mlruns);
  ASSERT_EQ(list.exit_code, 0) << list.output;
  const auto runs = nlohmann::json::parse(list.output);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].at("name"), "b");  // newest first
  EXPECT_EQ(runs[0].at("experiment"), "tracked");
  EXPECT_EQ(runs[0].at("status"), "FINISHED");
  EXPECT_EQ(runs[0].at("run_dir"), fs::absolute(tmp.path() / "b").lexically_normal().string());
  EXPECT_GT(runs[0].at("final_metrics").at("accuracy").get<double>(), 0.2);
  const std::string id_a = runs[1].at("run_id"), id_b = runs[0].at("run_id");

  // What MLflow would find on disk for run A.
  const fs::path dir_a = tmp.path() / "mlruns" / runs[1].at("experiment_id").get<std::string>() / id_a;
  EXPECT_EQ(read_text(dir_a / "params" / "prune.sparsity"), "0.5");
  EXPECT_EQ(read_text(dir_a / "params" / "train.pass"), "finetune");
  EXPECT_EQ(read_text(dir_a / "params" / "model"), "zoo:mlp");
  EXPECT_EQ(read_text(dir_a / "tags" / "mcompress.status"), "completed");
  EXPECT_EQ(read_text(dir_a / "tags" / "mcompress.plugin.magnitude_prune").empty(), false);
  const auto accuracy = lines_of(read_text(dir_a / "metrics" / "accuracy"));
  ASSERT_EQ(accuracy.size(), 3u);  // baseline, train, prune
  EXPECT_TRUE(std::regex_match(accuracy[2], std::regex("[0-9]{13} [0-9.e-]+ 2"))) << accuracy[2];
  EXPECT_TRUE(fs::exists(dir_a / "artifacts" / "report.md"));
  EXPECT_TRUE(fs::exists(dir_a / "artifacts" / "report.json"));
  EXPECT_TRUE(fs::exists(dir_a / "artifacts" / "stages" / "02_prune" / "record.json"));

  auto table = run_command(cli() + " runs list --experiment tracked" + mlruns);
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_NE(table.output.find(id_a.substr(0, 12)), std::string::npos) << table.output;
  EXPECT_NE(table.output.find("FINISHED"), std::string::npos) << table.output;

  auto show = run_command(cli() + " runs show " + id_a.substr(0, 8) + mlruns);
  ASSERT_EQ(show.exit_code, 0) << show.output;
  EXPECT_NE(show.output.find("run " + id_a), std::string::npos) << show.output;
  EXPECT_TRUE(std::regex_search(show.output, std::regex("prune\\.sparsity +0\\.5"))) << show.output;
  EXPECT_NE(show.output.find("0:baseline"), std::string::npos) << show.output;
  EXPECT_NE(show.output.find("2:prune"), std::string::npos) << show.output;
  EXPECT_NE(show.output.find("final.accuracy"), std::string::npos) << show.output;

  auto diff = run_command(cli() + " runs diff " + id_a + " " + id_b.substr(0, 10) + mlruns);
  ASSERT_EQ(diff.exit_code, 0) << diff.output;
  EXPECT_TRUE(std::regex_search(diff.output, std::regex("\\* +prune\\.sparsity +0\\.5 +0\\.25"))) << diff.output;
  EXPECT_TRUE(std::regex_search(diff.output, std::regex("\n  +train\\.lr +0\\.05 +0\\.05"))) << diff.output;
  EXPECT_TRUE(std::regex_search(diff.output, std::regex("\\* +params +[0-9]+ +[0-9]+ +[-+]"))) << diff.output;
  EXPECT_NE(diff.output.find("differ (marked *)"), std::string::npos) << diff.output;

  auto missing = run_command(cli() + " runs list --experiment nope" + mlruns);
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("no experiment named 'nope'"), std::string::npos) << missing.output;
  auto usage = run_command(cli() + " runs show" + mlruns);
  EXPECT_EQ(usage.exit_code, 2) << usage.output;
}

TEST(TrackingCli, FailedRunsAreLoggedTheEnvironmentPicksTheStoreAndNoTrackingLogsNothing) {
  TempDir tmp("tracking-env");
  write_text(tmp.path() / "recipe.yaml", small_recipe("  - name: boom\n    pass: test_explode\n"));
  const std::string run = cli() + " run " + (tmp.path() / "recipe.yaml").string() + " --quiet" + kPlugins;
  const std::string env = "MCOMPRESS_MLRUNS=" + (tmp.path() / "env-store").string() + " ";
  auto failed = run_command(env + run + " --out " + (tmp.path() / "failed").string());
  EXPECT_EQ(failed.exit_code, 1) << failed.output;
  auto none = run_command(env + run + " --out " + (tmp.path() / "untracked").string() + " --no-tracking");
  EXPECT_EQ(none.exit_code, 1) << none.output;

  mcompress::TrackingStore store(tmp.path() / "env-store");
  const auto runs = store.runs();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].status, 4);  // FAILED
  EXPECT_EQ(runs[0].tag("mcompress.status"), "failed");
  EXPECT_NE(runs[0].tag("mcompress.message").find("the test pass exploded on purpose"), std::string::npos);
  EXPECT_EQ(runs[0].tag("mcompress.stage.boom"), "failed");
  EXPECT_EQ(runs[0].tag("mcompress.run_dir"), fs::absolute(tmp.path() / "failed").lexically_normal().string());
}

TEST(TrackingCli, CompareLogsEveryCandidateOnceFromTheParent) {
  TempDir tmp("tracking-compare");
  write_text(tmp.path() / "base.yaml", small_recipe(kTrainAndPrune));
  write_text(tmp.path() / "sweep.yaml", R"(mcompress_sweep: 1
name: tracked_sweep
base: base.yaml
candidates:
  - name: crashes
    set: ["stages.prune.pass=test_crash", "stages.prune.params={}"]
grid:
  stages.prune.params.sparsity: [0.25, 0.5]
)");
  const fs::path mlruns = tmp.path() / "mlruns";
  auto r = run_command("MCOMPRESS_TEST_CRASH=1 " + cli() + " compare " + (tmp.path() / "sweep.yaml").string() +
                       " --quiet --jobs 2 --no-isolate" + kPlugins + " --out " + (tmp.path() / "out").string() + " --mlruns " +
                       mlruns.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;

  mcompress::TrackingStore store(mlruns);
  std::vector<std::string> experiments;
  for (const auto& e : store.experiments()) experiments.push_back(e.name);
  // Candidates did not log on their own (that would add the base recipe's experiment).
  EXPECT_EQ(experiments, (std::vector<std::string>{"Default", "tracked_sweep"}));
  std::map<std::string, mcompress::StoredRun> by_candidate;
  for (auto& run : store.runs("tracked_sweep")) by_candidate[run.tag("mcompress.candidate")] = run;
  ASSERT_EQ(by_candidate.size(), 3u);
  EXPECT_EQ(store.runs().size(), 3u);
  const auto& crashed = by_candidate.at("crashes");
  EXPECT_EQ(crashed.status, 4);
  EXPECT_EQ(crashed.tag("mcompress.status"), "crashed");
  EXPECT_NE(crashed.tag("mcompress.message").find("signal 9"), std::string::npos);
  EXPECT_EQ(crashed.tag("mcompress.sweep"), "tracked_sweep");
  EXPECT_TRUE(fs::exists(crashed.dir / "artifacts" / "output.log"));
  const auto& half = by_candidate.at("prune.sparsity=0.5");
  EXPECT_EQ(half.run_name, "prune.sparsity=0.5");
  EXPECT_EQ(half.status, 3);
  EXPECT_EQ(half.params.at("prune.sparsity"), "0.5");
  EXPECT_EQ(by_candidate.at("prune.sparsity=0.25").params.at("prune.sparsity"), "0.25");
  EXPECT_TRUE(half.latest("final.accuracy").has_value());
  EXPECT_EQ(half.tag("mcompress.candidate_index"), "2");
}

}  // namespace
