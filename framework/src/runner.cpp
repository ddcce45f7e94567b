#include "mcompress/framework/runner.h"

#include <unistd.h>

#include <ATen/Parallel.h>
#include <torch/script.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "mcompress/framework/atomic_file.h"
#include "mcompress/framework/fashion_mnist.h"
#include "mcompress/framework/input_error.h"
#include "mcompress/framework/probes.h"
#include "mcompress/framework/resource_probes.h"
#include "mcompress/framework/stage_isolation.h"
#include "mcompress/framework/text_corpus.h"
#include "mcompress/framework/zoo.h"
#include "mcompress/sdk/error.h"
#include "mcompress/sdk/module_copy.h"
#include "mcompress/sdk/pass.h"

namespace mcompress {
namespace fs = std::filesystem;
namespace {

constexpr int kRunFormatVersion = 1;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot read {}", path.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

nlohmann::json read_json(const fs::path& path) {
  try {
    return nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{} is not valid JSON ({}); the run directory is damaged", path.string(),
                            e.what()));
  }
}

void save_model(const torch::jit::Module& model, const fs::path& path) {
  write_via_temp_path(path, [&](const fs::path& temp) { model.save(temp.string()); });
}

torch::jit::Module load_model(const std::string& path, const std::string& what) {
  try {
    return torch::jit::load(path);
  } catch (const c10::Error& e) {
    throw Error(fmt::format("cannot load {} {} as TorchScript: {}", what, path,
                            e.what_without_backtrace()));
  }
}

// Which code produced a record: each library by absolute path and SHA-256.
nlohmann::json libraries_json(const PluginHost& plugins) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& library : plugins.library_files()) {
    list.push_back({{"role", library.role}, {"path", library.path}, {"sha256", library.sha256}});
  }
  return list;
}

struct RunData {
  DatasetPtr train, validation, calibration, eval;
};

// Character windows of a text file; limits and sizes count windows.
RunData load_text_data(const DataSpec& spec, Logger& log) {
  RunData data;
  const TextCorpus corpus = load_text_corpus(spec.path, spec.context, spec.test_fraction);
  const Dataset train_split =
      spec.train_limit > 0 ? corpus.train->slice(0, spec.train_limit) : *corpus.train;
  const int64_t held_out = std::min<int64_t>(spec.validation_size, train_split.size() / 5);
  const int64_t train_size = train_split.size() - held_out;
  data.train = std::make_shared<Dataset>(train_split.slice(0, train_size));
  if (held_out > 0) data.validation = std::make_shared<Dataset>(train_split.slice(train_size, held_out));
  data.calibration = std::make_shared<Dataset>(train_split.slice(0, spec.calibration_size));
  data.eval = spec.eval_limit > 0 ? std::make_shared<Dataset>(corpus.test->slice(0, spec.eval_limit))
                                  : corpus.test;
  log.info(fmt::format("data: {} characters of vocabulary {}, windows of {}: {} train, {} "
                       "validation, {} calibration, {} eval",
                       spec.path, corpus.vocabulary.size(), spec.context, data.train->size(),
                       held_out, data.calibration->size(), data.eval->size()));
  return data;
}

RunData load_data(const std::optional<DataSpec>& spec, Logger& log) {
  RunData data;
  if (!spec) return data;
  if (spec->is_text()) return load_text_data(*spec, log);
  auto full_train = load_fashion_mnist(spec->path, Split::Train, spec->train_limit);
  const int64_t held_out = std::min<int64_t>(spec->validation_size, full_train->size() / 5);
  const int64_t train_size = full_train->size() - held_out;
  data.train = std::make_shared<Dataset>(full_train->slice(0, train_size));
  if (held_out > 0) data.validation = std::make_shared<Dataset>(full_train->slice(train_size, held_out));
  data.calibration = std::make_shared<Dataset>(full_train->slice(0, spec->calibration_size));
  data.eval = load_fashion_mnist(spec->path, Split::Test, spec->eval_limit);
  log.info(fmt::format("data: {} train, {} validation, {} calibration, {} eval samples",
                       data.train->size(), held_out, data.calibration->size(), data.eval->size()));
  return data;
}

// A language model's classes are the data's vocabulary, which only the data knows.
int64_t zoo_classes(const Recipe& recipe, const RunData& data) {
  if (data.train && data.train->is_token_sequence()) return data.train->num_classes;
  return recipe.model.num_classes;
}

torch::jit::Module load_initial_model(const Recipe& recipe, const RunData& data) {
  if (!recipe.model.zoo.empty()) {
    return build_zoo_model(recipe.model.zoo, recipe.model.options, zoo_classes(recipe, data),
                           recipe.seed);
  }
  return load_model(recipe.model.path, "model");
}

// Data that cannot be read is the user's input problem, reported before the
// run directory exists.
RunData load_checked_data(const std::optional<DataSpec>& spec, Logger& log) {
  try {
    return load_data(spec, log);
  } catch (const c10::Error& e) {
    throw InputError(fmt::format("cannot load the data in {}: {}", spec->path, e.what_without_backtrace()));
  } catch (const Error& e) {
    throw InputError(e.what());
  }
}

torch::Tensor example_input(const Recipe& recipe, const RunData& data) {
  if (data.eval && data.eval->size() > 0) return data.eval->inputs.slice(0, 0, 1).clone();
  std::vector<int64_t> shape{1};
  shape.insert(shape.end(), recipe.model.input_shape.begin(), recipe.model.input_shape.end());
  auto generator = at::make_generator<at::CPUGeneratorImpl>(recipe.seed);
  return torch::randn(shape, generator);
}

std::string shape_text(const torch::Tensor& t) {
  return fmt::format("[{}]", fmt::join(t.sizes().vec(), ", "));
}

// The model the run starts from, loaded and fed one example before anything
// is written: a file that is not TorchScript or a model that does not accept
// the data's inputs is the user's input problem, not a failed run.
torch::jit::Module checked_initial_model(const Recipe& recipe, const RunData& data,
                                         const torch::Tensor& example) {
  const std::string source = recipe.model.zoo.empty() ? fmt::format("model file {}", recipe.model.path)
                                                      : fmt::format("zoo model `{}`", recipe.model.zoo);
  torch::jit::Module model;
  try {
    model = load_initial_model(recipe, data);
  } catch (const c10::Error& e) {
    throw InputError(fmt::format("cannot build {}: {}", source, e.what_without_backtrace()));
  } catch (const Error& e) {
    throw InputError(e.what());
  }
  model.eval();
  try {
    torch::NoGradGuard no_grad;
    model.forward({example});
  } catch (const std::exception& e) {
    const auto* c10 = dynamic_cast<const c10::Error*>(&e);
    std::string why = c10 ? c10->what_without_backtrace() : e.what();
    // The interpreter's traceback follows the first lines; the cause is enough here.
    if (why.size() > 600) why = why.substr(0, 600) + " ...";
    throw InputError(fmt::format("{} does not accept the data's inputs (a batch of shape {}): {}; "
                                 "check that the model was exported for this data (`model.input_shape`, "
                                 "`data`)",
                                 source, shape_text(example), why));
  }
  return model;
}

// Everything a pass sees except its models; the same in the host and in an
// isolated stage's process, so both run the pass alike.
PassContext pass_context(const RunData& data, const torch::Tensor& example, const StageSpec& stage,
                         uint64_t seed, const fs::path& stage_dir, Logger& log, Progress& progress) {
  PassContext ctx;
  ctx.example_input = example;
  ctx.train = data.train;
  ctx.validation = data.validation;
  ctx.calibration = data.calibration;
  ctx.eval = data.eval;
  ctx.params = &stage.params;
  ctx.seed = seed;
  ctx.threads = at::get_num_threads();
  ctx.log = &log;
  ctx.progress = &progress;
  ctx.artifact_dir = stage_dir / "artifacts";
  ctx.stage_name = stage.name;
  return ctx;
}

void set_threads(int threads) {
  const int n = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  at::set_num_threads(std::max(1, n));
}

// Everything the stage loop carries from one stage to the next.
struct RunState {
  torch::jit::Module original;
  torch::jit::Module current;
  std::vector<StageOutcome> outcomes;
  std::map<std::string, fs::path> stage_models;  // stage name -> its model file
  size_t last_accepted = 0;                      // index into outcomes
};

class Runner {
 public:
  Runner(const Recipe& recipe, const PluginHost& plugins, const RunOptions& options, Logger& log,
         Progress& progress)
      : recipe_(recipe), plugins_(plugins), options_(options), log_(log), progress_(progress) {}

  RunResult run();

 private:
  fs::path stage_dir(size_t index, const std::string& name) const {
    return options_.out_dir / "stages" / fmt::format("{:02}_{}", index, name);
  }
  nlohmann::json recipe_json() const { return to_json(recipe_); }
  void prepare_directory();
  bool restore_stage(size_t index, const std::string& name);
  void run_baseline();
  // Returns false when the run must end (gate stop or failure).
  bool run_stage(size_t index, const StageSpec& stage, RunResult& result);
  std::optional<torch::jit::Module> resolve_teacher(const StageSpec& stage) const;
  std::optional<torch::jit::Module> resolve_student(const StageSpec& stage, uint64_t seed) const;
  PassResult run_pass_isolated(size_t index, const StageSpec& stage, PassContext& ctx,
                               const fs::path& dir);
  void add_text_sample(const torch::jit::Module& model, nlohmann::json& record);
  const StageOutcome& gate_reference(const GateSpec& gate) const;
  void write_record(const fs::path& dir, const StageOutcome& outcome, const nlohmann::json& extra);
  void write_report(RunResult& result);
  Metrics probe(const torch::jit::Module& model, double& seconds);

  const Recipe& recipe_;
  const PluginHost& plugins_;
  const RunOptions& options_;
  Logger& log_;
  Progress& progress_;
  RunData data_;
  torch::Tensor example_;
  std::optional<torch::jit::Module> initial_model_;  // loaded and checked before the directory is made
  RunState state_;
};

void Runner::prepare_directory() {
  const fs::path run_file = options_.out_dir / "run.json";
  if (options_.resume) {
    if (!fs::exists(run_file)) {
      throw Error(fmt::format("{} holds no mcompress run (no run.json); start a new run with --out",
                              options_.out_dir.string()));
    }
    const auto previous = read_json(run_file);
    if (previous.value("recipe", nlohmann::json()) != recipe_json()) {
      throw Error(fmt::format(
          "the recipe {} (with its --set values) differs from the one run in {}; resuming would "
          "mix two experiments. Restore the recipe, or start a new run with another --out",
          recipe_.source_path, options_.out_dir.string()));
    }
    remove_interrupted_writes(options_.out_dir);  // what a killed run was writing
    return;
  }
  if (fs::exists(run_file)) {
    throw Error(fmt::format("{} already holds a run; continue it with `mcompress run --resume {}` "
                            "or choose another --out directory",
                            options_.out_dir.string(), options_.out_dir.string()));
  }
  fs::create_directories(options_.out_dir / "stages");
  write_file_atomically(options_.out_dir / "recipe.yaml", read_file(recipe_.source_path));
  nlohmann::json run = {{"format", kRunFormatVersion},
                        {"recipe_path", recipe_.source_path},
                        {"overrides", options_.overrides},
                        {"recipe", recipe_json()}};
  write_file_atomically(run_file, run.dump(2) + "\n");
}

Metrics Runner::probe(const torch::jit::Module& model, double& seconds) {
  const auto start = std::chrono::steady_clock::now();
  Metrics metrics = run_probes(model, data_.eval.get(), example_, recipe_.probes, progress_, &state_.original);
  for (const auto& name : recipe_.probes.enabled) {
    const Probe* plugin_probe = plugins_.find_probe(name);
    if (!plugin_probe) continue;
    ProbeContext context;
    context.model = &model;
    context.reference = &state_.original;
    context.eval = data_.eval.get();
    context.example_input = example_;
    context.progress = &progress_;
    context.log = &log_;
    try {
      for (const auto& [key, value] : plugin_probe->measure(context)) metrics[key] = value;
    } catch (const std::exception& e) {
      log_.warn(fmt::format("probe '{}' (plugin '{}') failed: {}", name, plugins_.plugin_of_probe(name)->name, e.what()));
    }
  }
  seconds = seconds_since(start);
  return metrics;
}

// A stage whose record exists finished before (records are written last).
bool Runner::restore_stage(size_t index, const std::string& name) {
  const fs::path dir = stage_dir(index, name);
  if (!options_.resume || !fs::exists(dir / "record.json")) return false;
  StageOutcome outcome = stage_outcome_from_json(read_json(dir / "record.json").at("outcome"));
  if (outcome.status == "failed") return false;  // run it again
  if (fs::exists(dir / "model.pt")) state_.stage_models[name] = dir / "model.pt";
  if (outcome.status == "accepted" || outcome.status == "baseline") {
    state_.current = load_model((dir / "model.pt").string(), "checkpoint");
    if (index == 0) state_.original = deep_copy(state_.current);
    state_.last_accepted = state_.outcomes.size();
  }
  log_.info(fmt::format("[{}] {}: already done ({}), skipped", index, name, outcome.status));
  state_.outcomes.push_back(std::move(outcome));
  return true;
}

void Runner::write_record(const fs::path& dir, const StageOutcome& outcome,
                          const nlohmann::json& extra) {
  nlohmann::json record = extra;
  record["outcome"] = to_json(outcome);
  record["recipe"] = recipe_json();
  record["threads"] = at::get_num_threads();
  record["device"] = device_info();
  record["libraries"] = libraries_json(plugins_);
  write_file_atomically(dir / "record.json", record.dump(2) + "\n");
}

void Runner::run_baseline() {
  if (restore_stage(0, "baseline")) return;
  state_.original = initial_model_ ? *initial_model_ : load_initial_model(recipe_, data_);
  state_.original.eval();
  state_.current = deep_copy(state_.original);
  StageOutcome outcome;
  outcome.name = "baseline";
  outcome.status = "baseline";
  log_.info("[0] baseline: probing");
  outcome.metrics = probe(state_.current, outcome.probe_seconds);
  const fs::path dir = stage_dir(0, "baseline");
  fs::create_directories(dir);
  save_model(state_.current, dir / "model.pt");
  state_.stage_models["baseline"] = dir / "model.pt";
  nlohmann::json extra = {{"seed", recipe_.seed}, {"model", recipe_json().at("model")}};
  add_text_sample(state_.current, extra);
  write_record(dir, outcome, extra);
  state_.outcomes.push_back(outcome);
  state_.last_accepted = 0;
}

std::optional<torch::jit::Module> Runner::resolve_teacher(const StageSpec& stage) const {
  // The validator already gave every stage that needs a teacher the recipe's
  // default one; stages that do not need one get none.
  const auto& spec = stage.teacher;
  if (!spec) return std::nullopt;
  torch::jit::Module teacher;
  if (*spec == "original" || *spec == "baseline") {
    teacher = state_.original;
  } else if (*spec == "previous") {
    teacher = state_.current;  // the model the stage starts from; never modified by the pass
  } else if (auto it = state_.stage_models.find(*spec); it != state_.stage_models.end()) {
    teacher = load_model(it->second.string(), "teacher (stage " + *spec + ")");
  } else {
    teacher = load_model(*spec, "teacher");
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
  if (!spec.path.empty()) return load_model(spec.path, "student");
  if (spec.stage == "original" || spec.stage == "baseline") return deep_copy(state_.original);
  auto it = state_.stage_models.find(spec.stage);
  if (it == state_.stage_models.end()) {
    throw Error(fmt::format("the student of stage '{}' is stage '{}', which left no model (it "
                            "failed or has not run)",
                            stage.name, spec.stage));
  }
  return load_model(it->second.string(), "student (stage " + spec.stage + ")");
}

// --isolate: the pass runs in `mcompress stage-exec` on copies of the models
// the host resolved; its result comes back through files (stage_isolation.h).
PassResult Runner::run_pass_isolated(size_t index, const StageSpec& stage, PassContext& ctx,
                                     const fs::path& dir) {
  const StageExchange exchange(dir);
  fs::remove_all(exchange.dir);  // what an interrupted earlier attempt left
  fs::create_directories(exchange.dir);
  struct RemoveWhenDone {
    fs::path dir;
    ~RemoveWhenDone() {
      std::error_code ignored;
      fs::remove_all(dir, ignored);
    }
  } remove_when_done{exchange.dir};
  save_model(ctx.model, exchange.input_model());
  if (ctx.teacher) save_model(*ctx.teacher, exchange.teacher_model());
  const nlohmann::json request = {
      {"host_pid", static_cast<int64_t>(getpid())},
      {"recipe_path", recipe_.source_path},
      {"overrides", options_.overrides},
      {"recipe", recipe_json()},
      {"stage", index},
      {"seed", ctx.seed},
      {"stage_dir", fs::absolute(dir).string()},
      {"original_model", fs::absolute(state_.stage_models.at("baseline")).string()},
      {"teacher", ctx.teacher.has_value()}};
  write_file_atomically(exchange.request(), request.dump(2) + "\n");
  const nlohmann::json result = run_stage_process(exchange, stage.isolation, *options_.isolation);
  if (result.contains("error")) throw Error(result.at("error").get<std::string>());
  ctx.model = load_model(exchange.output_model().string(), "the stage process's model");
  return {result.value("summary", ""), result.value("stats", nlohmann::json::object())};
}

// What a language model writes from the start of the held-out text, so a
// reader of the record sees what bits per character mean in practice.
void Runner::add_text_sample(const torch::jit::Module& model, nlohmann::json& record) {
  const auto& enabled = recipe_.probes.enabled;
  if (!data_.eval || std::find(enabled.begin(), enabled.end(), "text_sample") == enabled.end())
    return;
  const TextSample sample = text_sample(model, *data_.eval, recipe_.probes.sample_length, recipe_.seed);
  record["text_sample"] = {{"prompt", sample.prompt}, {"continuation", sample.continuation}};
  std::string shown = sample.continuation.substr(0, 72);
  std::replace(shown.begin(), shown.end(), '\n', '|');
  log_.info(fmt::format("  sample: {}", shown));
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

  const fs::path dir = stage_dir(index, stage.name);
  fs::create_directories(dir / "artifacts");
  const uint64_t seed = recipe_.seed + index;
  torch::manual_seed(seed);

  PassContext ctx = pass_context(data_, example_, stage, seed, dir, log_, progress_);
  ctx.model = deep_copy(state_.current);
  ctx.original = state_.original;

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

  log_.info(fmt::format("[{}] {}: running {}", index, stage.name, stage.pass));
  PassResult pass_result;
  const auto started = std::chrono::steady_clock::now();
  try {
    ctx.teacher = resolve_teacher(stage);
    if (auto student = resolve_student(stage, seed)) {
      ctx.model = std::move(*student);
      extra["student"] = to_json(recipe_).at("stages").at(index - 1).at("student");
    }
    pass_result = options_.isolation ? run_pass_isolated(index, stage, ctx, dir) : pass->run(ctx);
    ctx.model.eval();
  } catch (const std::exception& e) {
    const char* what = e.what();
    if (auto c10 = dynamic_cast<const c10::Error*>(&e)) what = c10->what_without_backtrace();
    outcome.status = "failed";
    outcome.pass_seconds = seconds_since(started);
    outcome.error = fmt::format("stage '{}' (pass '{}' from plugin '{}' {}) failed: {}", stage.name,
                                stage.pass, plugin->name, plugin->version, what);
    outcome.metrics = state_.outcomes[state_.last_accepted].metrics;
    write_record(dir, outcome, extra);
    state_.outcomes.push_back(outcome);
    result.status = RunStatus::Failed;
    result.message = outcome.error;
    return false;
  }
  outcome.pass_seconds = seconds_since(started);
  outcome.summary = pass_result.summary;
  extra["stats"] = pass_result.stats;
  if (!pass_result.summary.empty()) log_.info("  " + pass_result.summary);

  outcome.metrics = probe(ctx.model, outcome.probe_seconds);
  add_text_sample(ctx.model, extra);
  save_model(ctx.model, dir / "model.pt");
  state_.stage_models[stage.name] = dir / "model.pt";

  outcome.status = "accepted";
  const auto& reference = gate_reference(stage.gate);
  const auto acc = outcome.metrics.find("accuracy");
  const auto ref_acc = reference.metrics.find("accuracy");
  if (stage.gate.max_accuracy_drop && acc != outcome.metrics.end() &&
      ref_acc != reference.metrics.end()) {
    const double drop = ref_acc->second - acc->second;
    extra["gate"] = {{"reference", reference.name},
                     {"max_accuracy_drop", *stage.gate.max_accuracy_drop},
                     {"accuracy_drop", drop}};
    if (drop > *stage.gate.max_accuracy_drop) {
      outcome.gate_note = fmt::format("accuracy {:.2f}% is {:.2f} pt below '{}' ({:.2f}%), more than "
                                      "the allowed {:.2f} pt",
                                      acc->second * 100, drop * 100, reference.name,
                                      ref_acc->second * 100, *stage.gate.max_accuracy_drop * 100);
      outcome.status = stage.gate.on_fail == OnGateFail::Stop ? "stopped" : "rolled_back";
      log_.warn(fmt::format("stage '{}': {}; {}", stage.name, outcome.gate_note,
                            outcome.status == "stopped" ? "stopping the run"
                                                        : "rolling back to the previous model"));
    }
  }
  write_record(dir, outcome, extra);
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

void Runner::write_report(RunResult& result) {
  result.stages = state_.outcomes;
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& o : state_.outcomes) stages.push_back(to_json(o));
  const char* status = result.status == RunStatus::Completed       ? "completed"
                       : result.status == RunStatus::StoppedByGate ? "stopped"
                                                                   : "failed";
  result.report = {{"recipe", recipe_.name},
                   {"run_dir", fs::absolute(options_.out_dir).string()},
                   {"status", status},
                   {"message", result.message},
                   {"final_model", result.final_model.string()},
                   {"final_stage", state_.outcomes.empty() ? "" : state_.outcomes[state_.last_accepted].name},
                   {"stages", stages}};
  write_file_atomically(options_.out_dir / "report.json", result.report.dump(2) + "\n");
  write_file_atomically(options_.out_dir / "report.md",
                        summary_markdown(fmt::format("mcompress run: {}", recipe_.name), state_.outcomes));
}

RunResult Runner::run() {
  set_threads(recipe_.threads);
  // Inputs are checked before a new run directory is made, so a bad model or
  // bad data leaves nothing behind.
  if (options_.resume) prepare_directory();
  data_ = load_checked_data(recipe_.data, log_);
  example_ = example_input(recipe_, data_);
  if (!options_.resume) {
    initial_model_ = checked_initial_model(recipe_, data_, example_);
    prepare_directory();
  }
  RunResult result;
  run_baseline();
  write_report(result);
  for (size_t i = 0; i < recipe_.stages.size(); ++i) {
    const bool go_on = run_stage(i + 1, recipe_.stages[i], result);
    write_report(result);
    if (!go_on) break;
  }
  if (result.status == RunStatus::Completed) {
    result.final_model = options_.out_dir / "model.pt";
    save_model(state_.current, result.final_model);
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

void run_isolated_stage(const fs::path& exchange_dir, const PluginHost& plugins, Logger& log,
                        Progress& progress) {
  const nlohmann::json request = read_json(exchange_dir / "request.json");
  const StageExchange exchange(request.at("stage_dir").get<std::string>());
  const Recipe recipe = load_recipe(request.at("recipe_path").get<std::string>(),
                                    request.at("overrides").get<std::vector<std::string>>(), plugins);
  if (to_json(recipe) != request.at("recipe")) {
    throw Error(fmt::format("the recipe {} changed while the run was going on; restore it",
                            recipe.source_path));
  }
  const size_t index = request.at("stage").get<size_t>();
  const StageSpec& stage = recipe.stages.at(index - 1);
  const Pass* pass = plugins.find_pass(stage.pass);
  if (!pass) throw Error(fmt::format("pass '{}' is not loaded", stage.pass));
  set_threads(recipe.threads);
  const RunData data = load_checked_data(recipe.data, log);
  const uint64_t seed = request.at("seed").get<uint64_t>();
  PassContext ctx = pass_context(data, example_input(recipe, data), stage, seed,
                                 request.at("stage_dir").get<std::string>(), log, progress);
  ctx.model = load_model(exchange.input_model().string(), "the stage's input model");
  ctx.original = load_model(request.at("original_model").get<std::string>(), "the original model");
  ctx.original.eval();
  if (request.at("teacher").get<bool>()) {
    ctx.teacher = load_model(exchange.teacher_model().string(), "the stage's teacher");
    ctx.teacher->eval();
  }
  nlohmann::json result;
  try {
    torch::manual_seed(seed);
    const PassResult pass_result = pass->run(ctx);
    ctx.model.eval();
    save_model(ctx.model, exchange.output_model());
    result = {{"summary", pass_result.summary}, {"stats", pass_result.stats}};
  } catch (const std::exception& e) {
    const auto* c10 = dynamic_cast<const c10::Error*>(&e);
    result = {{"error", c10 ? c10->what_without_backtrace() : e.what()}};
  }
  write_file_atomically(exchange.result(), result.dump(2) + "\n");
}

ResumeSource read_resume_source(const fs::path& run_dir) {
  const fs::path run_file = run_dir / "run.json";
  if (!fs::exists(run_file)) {
    throw Error(fmt::format("{} holds no mcompress run (no run.json)", run_dir.string()));
  }
  const auto run = read_json(run_file);
  if (run.value("format", 0) != kRunFormatVersion) {
    throw Error(fmt::format("{} was written by another mcompress run format ({}); this host reads "
                            "format {}",
                            run_file.string(), run.value("format", 0), kRunFormatVersion));
  }
  return {run.at("recipe_path").get<std::string>(),
          run.value("overrides", std::vector<std::string>{})};
}

}  // namespace mcompress
