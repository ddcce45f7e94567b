#include "mcompress/framework/run/runner.h"

#include <torch/script.h>

#include <fmt/format.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>

#include "mcompress/framework/sources/zoo.h"
#include "mcompress/models/module_copy.h"
#include "mcompress/sdk/error.h"
#include "mcompress/sdk/pass.h"
#include "mcompress/sdk/pass_extensions.h"
#include "run/gates.h"
#include "run/isolated_stage.h"
#include "run/pass_execution.h"
#include "run/run_directory.h"
#include "run/run_inputs.h"
#include "run/stage_probing.h"

namespace mcompress {
namespace fs = std::filesystem;
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Everything the stage loop carries from one stage to the next.
struct RunState {
  torch::jit::Module original;
  torch::jit::Module current;
  std::vector<StageOutcome> outcomes;
  std::map<std::string, fs::path> stage_models;  // stage name -> its model file
  size_t last_accepted = 0;                      // index into outcomes
};

// The stage loop: baseline, then each stage on a copy of the current model,
// probed and gated, its record written whatever happens.
class Runner {
 public:
  Runner(const Recipe& recipe, const PluginHost& plugins, const RunOptions& options, Logger& log,
         Progress& progress)
      : recipe_(recipe),
        plugins_(plugins),
        options_(options),
        log_(log),
        progress_(progress),
        directory_(recipe, options, plugins),
        prober_(recipe, plugins, data_, example_, log, progress) {}

  RunResult run();

 private:
  bool restore_stage(size_t index, const std::string& name);
  // Each returns false when the run must end (its probes failed, a gate
  // stopped it, the stage failed).
  bool run_baseline(RunResult& result);
  bool run_stage(size_t index, const StageSpec& stage, RunResult& result);
  std::optional<torch::jit::Module> resolve_teacher(const StageSpec& stage) const;
  std::optional<torch::jit::Module> resolve_student(const StageSpec& stage, uint64_t seed) const;
  bool may_change_output_shape(const std::string& pass) const;
  const StageOutcome& gate_reference(const GateSpec& gate) const;
  void write_report(RunResult& result) {
    directory_.write_report(result, state_.outcomes, state_.last_accepted);
  }

  const Recipe& recipe_;
  const PluginHost& plugins_;
  const RunOptions& options_;
  Logger& log_;
  Progress& progress_;
  RunDirectory directory_;
  RunData data_;
  torch::Tensor example_;
  StageProber prober_;
  std::optional<torch::jit::Module> initial_model_;  // loaded and checked before the directory is made
  // Tokenizer and generation files a checkpoint model's saved stages carry.
  fs::path companion_dir_;
  RunState state_;
};

// A stage whose record exists finished before (records are written last).
bool Runner::restore_stage(size_t index, const std::string& name) {
  std::optional<StageOutcome> outcome = directory_.finished_stage(index, name);
  if (!outcome || outcome->status == "failed") return false;  // (re)run it
  const fs::path dir = directory_.stage_dir(index, name);
  const std::optional<fs::path> saved = saved_model_in(dir);
  if (saved) state_.stage_models[name] = *saved;
  if (outcome->status == "accepted" || outcome->status == "baseline") {
    if (!saved) throw Error(fmt::format("{} holds no model; the run directory is damaged", dir.string()));
    state_.current = load_model(saved->string(), "checkpoint");
    if (index == 0) state_.original = deep_copy(state_.current);
    state_.last_accepted = state_.outcomes.size();
  }
  log_.info(fmt::format("[{}] {}: already done ({}), skipped", index, name, outcome->status));
  state_.outcomes.push_back(std::move(*outcome));
  return true;
}

bool Runner::run_baseline(RunResult& result) {
  if (restore_stage(0, "baseline")) return true;
  state_.original = initial_model_ ? *initial_model_ : load_initial_model(recipe_, data_);
  state_.original.eval();
  state_.current = deep_copy(state_.original);
  StageOutcome outcome;
  outcome.name = "baseline";
  outcome.status = "baseline";
  const fs::path dir = directory_.stage_dir(0, "baseline");
  fs::create_directories(dir);
  nlohmann::json extra = {{"seed", recipe_.seed}, {"model", to_json(recipe_).at("model")}};
  log_.info("[0] baseline: probing");
  try {
    outcome.metrics = prober_.measure(state_.current, state_.original, outcome.probe_seconds);
  } catch (const Error& e) {
    outcome.status = "failed";
    outcome.error = fmt::format("the baseline could not be measured: {}", e.what());
    directory_.write_record(dir, outcome, extra);
    state_.outcomes.push_back(outcome);
    result.status = RunStatus::Failed;
    result.message = outcome.error;
    return false;
  }
  state_.stage_models["baseline"] = model_path_in(dir, state_.current);
  save_model(state_.current, state_.stage_models["baseline"], companion_dir_);
  prober_.add_text_sample(state_.current, extra);
  directory_.write_record(dir, outcome, extra);
  state_.outcomes.push_back(outcome);
  state_.last_accepted = 0;
  return true;
}

std::optional<torch::jit::Module> Runner::resolve_teacher(const StageSpec& stage) const {
  // The validator already gave every stage that needs a teacher the recipe's
  // default one; stages that do not need one get none. Models the host keeps
  // are handed over as copies, so no pass can change them for later stages.
  const auto& spec = stage.teacher;
  if (!spec) return std::nullopt;
  torch::jit::Module teacher;
  if (*spec == "original" || *spec == "baseline") {
    teacher = deep_copy(state_.original);
  } else if (*spec == "previous") {
    teacher = deep_copy(state_.current);  // the model the stage starts from
  } else if (auto it = state_.stage_models.find(*spec); it != state_.stage_models.end()) {
    teacher = load_model(it->second.string(), "teacher (stage " + *spec + ")");
  } else {
    teacher = load_model(*spec, "teacher", recipe_.model.dtype);
  }
  teacher.eval();
  return teacher;
}

// A fresh zoo model, a file, or a copy of an earlier stage's model that the
// stage trains instead of the current model.
std::optional<torch::jit::Module> Runner::resolve_student(const StageSpec& stage,
                                                          uint64_t seed) const {
  if (!stage.student) return std::nullopt;
  const StudentSpec& spec = *stage.student;
  if (!spec.zoo.empty())
    return build_zoo_model(spec.zoo, spec.options, zoo_classes(recipe_, data_), seed);
  if (!spec.path.empty()) return load_model(spec.path, "student", recipe_.model.dtype);
  if (spec.stage == "original" || spec.stage == "baseline") return deep_copy(state_.original);
  auto it = state_.stage_models.find(spec.stage);
  if (it == state_.stage_models.end()) {
    throw Error(fmt::format("the student of stage '{}' is stage '{}', which left no model (it "
                            "failed or has not run)",
                            stage.name, spec.stage));
  }
  return load_model(it->second.string(), "student (stage " + spec.stage + ")");
}

bool Runner::may_change_output_shape(const std::string& pass) const {
  const auto* policy =
      static_cast<const PassOutputPolicy*>(plugins_.pass_extension(pass, kPassOutputPolicyId));
  // The plugin's struct may predate a field: read only what it has.
  return policy &&
         policy->struct_size >= offsetof(PassOutputPolicy, may_change_output_shape) + sizeof(bool) &&
         policy->may_change_output_shape;
}

const StageOutcome& Runner::gate_reference(const GateSpec& gate) const {
  if (gate.reference == "baseline") return state_.outcomes.front();
  if (gate.reference == "previous") return state_.outcomes[state_.last_accepted];
  for (const auto& o : state_.outcomes) {
    if (o.name == gate.reference) return o;
  }
  throw Error(fmt::format("gate reference '{}' names no earlier stage", gate.reference));
}

bool Runner::run_stage(size_t index, const StageSpec& stage, RunResult& result) {
  if (restore_stage(index, stage.name)) {
    const auto& status = state_.outcomes.back().status;
    if (status == "stopped") {
      result.status = RunStatus::StoppedByGate;
      result.message = fmt::format("stage '{}' did not pass its quality gate", stage.name);
      return false;
    }
    return true;
  }
  const Pass* pass = plugins_.find_pass(stage.pass);
  const PluginRecord* plugin = plugins_.plugin_of(stage.pass);
  if (!pass || !plugin) throw Error(fmt::format("pass '{}' is not loaded", stage.pass));

  const fs::path dir = directory_.stage_dir(index, stage.name);
  fs::create_directories(dir / "artifacts");
  const uint64_t seed = recipe_.seed + index;

  PassContext ctx = pass_context(data_, example_, stage, seed, dir, log_, progress_);
  ctx.model = deep_copy(state_.current);
  ctx.original = deep_copy(state_.original);

  StageOutcome outcome;
  outcome.index = static_cast<int>(index);
  outcome.name = stage.name;
  outcome.pass = stage.pass;
  nlohmann::json params_json = nlohmann::json::object();
  for (const auto& [key, value] : stage.params.values()) {
    params_json[key] = std::visit([](const auto& v) { return nlohmann::json(v); }, value);
  }
  nlohmann::json extra = {
      {"seed", seed},
      {"pass", stage.pass},
      {"params", params_json},
      {"plugin", {{"name", plugin->name}, {"version", plugin->version}, {"path", plugin->path}}}};

  // Whatever goes wrong from here fails the stage with its record written and
  // keeps the previous model.
  const auto fail = [&](const std::string& why) {
    outcome.status = "failed";
    outcome.error = fmt::format("stage '{}' (pass '{}' from plugin '{}' {}) failed: {}", stage.name,
                                stage.pass, plugin->name, plugin->version, why);
    outcome.metrics = state_.outcomes[state_.last_accepted].metrics;
    directory_.write_record(dir, outcome, extra);
    state_.outcomes.push_back(outcome);
    result.status = RunStatus::Failed;
    result.message = outcome.error;
    return false;
  };

  log_.info(fmt::format("[{}] {}: running {}", index, stage.name, stage.pass));
  const auto started = std::chrono::steady_clock::now();
  PassExecution execution;
  try {
    ctx.teacher = resolve_teacher(stage);
    if (auto student = resolve_student(stage, seed)) {
      ctx.model = std::move(*student);
      extra["student"] = to_json(recipe_).at("stages").at(index - 1).at("student");
    }
    execution = options_.isolation ? execute_pass_isolated(recipe_, options_, index, stage, ctx, dir,
                                                           state_.stage_models.at("baseline"))
                                   : execute_pass(*pass, ctx);
  } catch (...) {
    execution.error = current_exception_message();
  }
  outcome.pass_seconds = seconds_since(started);
  if (execution.error) return fail(*execution.error);

  // The returned model must be one the run can go on with.
  std::string unusable;
  try {
    unusable = unusable_result(ctx.model, example_, output_shape_of(state_.current, example_),
                               may_change_output_shape(stage.pass));
  } catch (...) {
    unusable = "its model could not be checked: " + current_exception_message();
  }
  if (!unusable.empty()) return fail(unusable);

  const PassResult& pass_result = execution.result;
  outcome.summary = pass_result.summary;
  extra["stats"] = pass_result.stats;
  if (!pass_result.summary.empty()) log_.info("  " + pass_result.summary);

  try {
    outcome.metrics = prober_.measure(ctx.model, state_.original, outcome.probe_seconds);
    prober_.add_text_sample(ctx.model, extra);
  } catch (...) {
    return fail(current_exception_message());
  }
  state_.stage_models[stage.name] = model_path_in(dir, ctx.model);
  save_model(ctx.model, state_.stage_models[stage.name], companion_dir_);
  complete_checkpoint_artifacts(dir / "artifacts", companion_dir_);

  const GateVerdict verdict = check_gate(stage.gate, outcome.metrics, gate_reference(stage.gate));
  outcome.status = verdict.status;
  outcome.gate_note = verdict.note;
  if (!verdict.record.is_null()) extra["gate"] = verdict.record;
  if (outcome.status != "accepted") {
    log_.warn(fmt::format("stage '{}': {}; {}", stage.name, outcome.gate_note,
                          outcome.status == "stopped" ? "stopping the run"
                                                      : "rolling back to the previous model"));
  }
  directory_.write_record(dir, outcome, extra);
  state_.outcomes.push_back(outcome);
  if (outcome.status == "accepted") {
    state_.current = ctx.model;
    state_.last_accepted = state_.outcomes.size() - 1;
  }
  if (outcome.status == "stopped") {
    result.status = RunStatus::StoppedByGate;
    result.message = fmt::format("stage '{}' did not pass its quality gate: {}", stage.name,
                                 outcome.gate_note);
    return false;
  }
  return true;
}

RunResult Runner::run() {
  set_threads(recipe_.threads);
  // Inputs are checked before a new run directory is made, so a bad model or
  // bad data leaves nothing behind.
  if (options_.resume) directory_.prepare();
  data_ = load_run_data(recipe_, log_);
  example_ = example_input(recipe_, data_);
  if (!options_.resume) {
    initial_model_ = checked_initial_model(recipe_, data_, example_);
    directory_.prepare();
  }
  companion_dir_ = checkpoint_companions(recipe_, data_, directory_.root());
  RunResult result;
  const bool baseline_measured = run_baseline(result);
  write_report(result);
  if (!baseline_measured) return result;
  for (size_t i = 0; i < recipe_.stages.size(); ++i) {
    const bool go_on = run_stage(i + 1, recipe_.stages[i], result);
    write_report(result);
    if (!go_on) break;
  }
  if (result.status == RunStatus::Completed) {
    result.final_model = model_path_in(directory_.root(), state_.current);
    save_model(state_.current, result.final_model, companion_dir_);
    write_report(result);
  }
  return result;
}

}  // namespace

RunResult run_recipe(const Recipe& recipe, const PluginHost& plugins, const RunOptions& options,
                     Logger& log, Progress& progress) {
  Runner runner(recipe, plugins, options, log, progress);
  return runner.run();
}

}  // namespace mcompress
