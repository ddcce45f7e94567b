// Turning an mcompress run directory into a tracked MLflow run.
#include "mcompress/framework/support/file_reading.h"
#include "mcompress/framework/tracking/run_tracking.h"

#include <sys/stat.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "mcompress/sdk/error.h"

#ifndef MCOMPRESS_VERSION
#error "MCOMPRESS_VERSION must be defined by the build (framework/CMakeLists.txt)"
#endif

namespace mcompress {
namespace fs = std::filesystem;
namespace {

std::optional<int64_t> modified_ms(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
}

// A JSON value as an MLflow param value (a string).
std::string param_text(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_float()) return mlflow_number(value.get<double>());
  return value.dump();  // integers, booleans, lists
}

void add_scalars(std::map<std::string, std::string>& params, const std::string& prefix, const nlohmann::json& object) {
  if (!object.is_object()) return;
  for (const auto& [key, value] : object.items()) {
    if (value.is_null() || value.is_object()) continue;
    params[prefix + key] = param_text(value);
  }
}

void add_recipe_params(std::map<std::string, std::string>& params, const nlohmann::json& recipe) {
  if (recipe.contains("seed")) params["seed"] = param_text(recipe.at("seed"));
  if (recipe.contains("threads")) params["threads"] = param_text(recipe.at("threads"));
  if (const auto model = recipe.value("model", nlohmann::json()); model.is_object()) {
    if (const auto zoo = model.value("zoo", nlohmann::json()); zoo.is_string()) {
      params["model"] = "zoo:" + zoo.get<std::string>();
    } else if (const auto path = model.value("path", nlohmann::json()); path.is_string()) {
      params["model"] = path.get<std::string>();
    }
    add_scalars(params, "model.", model.value("options", nlohmann::json()));
  }
  add_scalars(params, "data.", recipe.value("data", nlohmann::json()));
  if (const auto teacher = recipe.value("teacher", nlohmann::json()); teacher.is_string()) params["teacher"] = teacher;
  for (const auto& stage : recipe.value("stages", nlohmann::json::array())) {
    const std::string prefix = stage.value("name", "stage") + ".";
    params[prefix + "pass"] = stage.value("pass", "");
    add_scalars(params, prefix, stage.value("params", nlohmann::json()));
    if (const auto teacher = stage.value("teacher", nlohmann::json()); teacher.is_string()) {
      params[prefix + "teacher"] = teacher;
    }
  }
}

// stages/NN_<name>/record.json of every stage that wrote one, by stage index.
std::map<int, std::pair<fs::path, nlohmann::json>> stage_records(const fs::path& run_dir) {
  std::map<int, std::pair<fs::path, nlohmann::json>> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(run_dir / "stages", ec)) {
    const auto record = read_json_file_if_present(entry.path() / "record.json");
    if (!record || !record->contains("outcome")) continue;
    out[record->at("outcome").value("index", 0)] = {entry.path(), *record};
  }
  return out;
}

}  // namespace

MlflowRunStatus mlflow_status(const std::string& status) {
  if (status == "completed") return MlflowRunStatus::Finished;
  if (status == "timeout") return MlflowRunStatus::Killed;
  return MlflowRunStatus::Failed;
}

TrackedRun tracked_run_from_directory(const RunLogRequest& request) {
  const fs::path dir = fs::absolute(request.run_dir).lexically_normal();
  const auto run_json = read_json_file_if_present(dir / "run.json");
  const auto report = read_json_file_if_present(dir / "report.json");
  const auto records = stage_records(dir);
  const nlohmann::json recipe = run_json ? run_json->value("recipe", nlohmann::json::object()) : nlohmann::json::object();

  TrackedRun run;
  run.name = request.run_name.empty() ? dir.filename().string() : request.run_name;
  run.end_time_ms = request.end_time_ms > 0 ? request.end_time_ms : now_ms();
  run.start_time_ms = request.start_time_ms > 0 ? request.start_time_ms
                                                : modified_ms(dir / "run.json").value_or(run.end_time_ms);

  std::string status = request.status;
  if (status.empty()) status = report ? report->value("status", "failed") : "failed";
  run.status = mlflow_status(status);

  add_recipe_params(run.params, recipe);
  // The thread count really used (a recipe's 0 means "the machine's cores").
  if (!records.empty() && records.begin()->second.second.contains("threads")) {
    run.params["threads"] = param_text(records.begin()->second.second.at("threads"));
  }

  // Stage outcomes: report.json has them all; records cover a run that died
  // before rewriting its report.
  std::map<int, nlohmann::json> outcomes;
  for (const auto& [index, entry] : records) outcomes[index] = entry.second.at("outcome");
  if (report) {
    for (const auto& stage : report->value("stages", nlohmann::json::array())) outcomes[stage.value("index", 0)] = stage;
  }
  const std::string final_stage = report ? report->value("final_stage", "") : "";
  std::vector<std::string> stage_names;  // by step, so readers can label steps
  for (const auto& [index, outcome] : outcomes) {
    const std::string stage_status = outcome.value("status", "");
    const std::string name = outcome.value("name", "");
    stage_names.resize(std::max<size_t>(stage_names.size(), index + 1));
    stage_names[index] = name;
    run.tags["mcompress.stage." + name] = stage_status;
    // A failed stage carries the metrics of the model before it; they were
    // not measured on anything the stage produced.
    if (stage_status == "failed") continue;
    const auto record = records.find(index);
    const int64_t when = record != records.end()
                             ? modified_ms(record->second.first / "record.json").value_or(run.end_time_ms)
                             : run.end_time_ms;
    const auto metrics = outcome.value("metrics", std::map<std::string, double>{});
    for (const auto& [key, value] : metrics) run.metrics[key].push_back({when, value, index});
    for (const char* key : {"pass_seconds", "probe_seconds"}) {
      if (outcome.contains(key)) run.metrics[key].push_back({when, outcome.at(key).get<double>(), index});
    }
    if (name == final_stage) {
      for (const auto& [key, value] : metrics) run.metrics["final." + key].push_back({when, value, index});
    }
  }

  if (!stage_names.empty()) run.tags["mcompress.stages"] = fmt::format("{}", fmt::join(stage_names, ","));
  for (const auto& [index, entry] : records) {
    if (const auto plugin = entry.second.value("plugin", nlohmann::json()); plugin.is_object()) {
      run.tags["mcompress.plugin." + plugin.value("name", "unknown")] = plugin.value("version", "");
    }
  }
  run.tags["mlflow.source.type"] = "LOCAL";
  if (run_json) run.tags["mlflow.source.name"] = run_json->value("recipe_path", "");
  if (const std::string note = read_text_file_if_present(dir / "report.md").value_or(""); !note.empty()) {
    run.tags["mlflow.note.content"] = note;  // the MLflow UI shows it as the run's description
  }
  const std::string recipe_name = recipe.value("name", report ? report->value("recipe", "") : std::string());
  run.tags["mcompress.recipe"] = recipe_name;
  run.tags["mcompress.status"] = status;
  std::string message = request.error;
  if (message.empty() && report) message = report->value("message", "");
  if (!message.empty()) run.tags["mcompress.message"] = message;
  run.tags["mcompress.run_dir"] = dir.string();
  run.tags["mcompress.version"] = MCOMPRESS_VERSION;
  if (!final_stage.empty()) run.tags["mcompress.final_stage"] = final_stage;
  if (run_json) run.tags["mcompress.overrides"] = run_json->value("overrides", nlohmann::json::array()).dump();
  for (const auto& [key, value] : request.tags) run.tags[key] = value;

  for (const char* file : {"report.md", "report.json", "recipe.yaml", "run.json"}) {
    if (fs::is_regular_file(dir / file)) run.artifacts[file] = dir / file;
  }
  for (const auto& [index, entry] : records) {
    run.artifacts["stages/" + entry.first.filename().string() + "/record.json"] = entry.first / "record.json";
  }
  for (const auto& [name, file] : request.artifacts) {
    if (fs::is_regular_file(file)) run.artifacts[name] = file;
  }
  return run;
}

LoggedRun log_run_directory(TrackingStore& store, const RunLogRequest& request) {
  std::string experiment = request.experiment;
  if (experiment.empty()) {
    const auto run_json = read_json_file_if_present(request.run_dir / "run.json");
    if (run_json) experiment = run_json->value("recipe", nlohmann::json::object()).value("name", "");
  }
  if (experiment.empty()) {
    throw Error(fmt::format("{} holds no run.json to name the run's experiment after its recipe",
                            request.run_dir.string()));
  }
  const TrackedRun run = tracked_run_from_directory(request);
  LoggedRun logged;
  logged.experiment_id = store.ensure_experiment(experiment);
  logged.run_id = store.log_run(logged.experiment_id, run);
  logged.dir = store.root() / logged.experiment_id / logged.run_id;
  return logged;
}

fs::path tracking_root(const std::string& option) {
  if (!option.empty()) return option;
  if (const char* env = std::getenv("MCOMPRESS_MLRUNS"); env && *env) return env;
  return "mlruns";
}

}  // namespace mcompress
