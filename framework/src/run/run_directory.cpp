#include "run/run_directory.h"

#include <ATen/Parallel.h>

#include <fmt/format.h>

#include "mcompress/formats/hf_model.h"
#include "mcompress/framework/probes/resource_probes.h"
#include "mcompress/framework/support/atomic_file.h"
#include "mcompress/framework/support/file_reading.h"
#include "mcompress/sdk/error.h"

namespace mcompress {
namespace fs = std::filesystem;
namespace {

constexpr int kRunFormatVersion = 1;

// A run directory's own JSON that does not parse was damaged after the fact.
nlohmann::json read_run_json(const fs::path& path) {
  try {
    return read_json_file(path);
  } catch (const Error& e) {
    throw Error(fmt::format("{}; the run directory is damaged", e.what()));
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

}  // namespace

torch::jit::Module load_model(const std::string& path, const std::string& what, const std::string& dtype) {
  if (fs::is_directory(path)) {
    try {
      return load_hf_model(path, dtype);
    } catch (const Error& e) {
      throw Error(fmt::format("cannot load {}: {}", what, e.what()));  // the message names the checkpoint
    }
  }
  try {
    return torch::jit::load(path);
  } catch (const c10::Error& e) {
    throw Error(fmt::format("cannot load {} {} as TorchScript: {}", what, path,
                            e.what_without_backtrace()));
  }
}

void save_model(const torch::jit::Module& model, const fs::path& path, const fs::path& companion_dir) {
  if (path.extension() != ".pt") {
    // In the parameters' dtype: a stage's model reads back exactly as it was
    // (a bfloat16 checkpoint trained in float32 stays float32).
    const auto parameters = model.parameters();
    const c10::ScalarType dtype =
        parameters.begin() != parameters.end() ? (*parameters.begin()).scalar_type() : c10::ScalarType::Undefined;
    save_hf_model(model, path, companion_dir, dtype);  // writes through a temporary directory itself
    return;
  }
  write_via_temp_path(path, [&](const fs::path& temp) { model.save(temp.string()); });
}

fs::path model_path_in(const fs::path& dir, const torch::jit::Module& model) {
  return dir / (writable_as_checkpoint(model) ? "model" : "model.pt");
}

std::optional<fs::path> saved_model_in(const fs::path& dir) {
  if (fs::is_directory(dir / "model")) return dir / "model";
  if (fs::exists(dir / "model.pt")) return dir / "model.pt";
  return std::nullopt;
}

void complete_checkpoint_artifacts(const fs::path& artifacts, const fs::path& companion_dir) {
  if (companion_dir.empty() || !fs::is_directory(companion_dir) || !fs::is_directory(artifacts)) return;
  for (const auto& entry : fs::directory_iterator(artifacts)) {
    const fs::path& dir = entry.path();
    if (!entry.is_directory() || !fs::is_regular_file(dir / "config.json") ||
        !fs::is_regular_file(dir / "model.safetensors.index.json"))
      continue;
    for (const auto& name : hf_companion_files())
      if (fs::is_regular_file(companion_dir / name) && !fs::exists(dir / name))
        fs::copy_file(companion_dir / name, dir / name);
  }
}

RunDirectory::RunDirectory(const Recipe& recipe, const RunOptions& options, const PluginHost& plugins)
    : recipe_(recipe), options_(options), plugins_(plugins) {}

fs::path RunDirectory::stage_dir(size_t index, const std::string& name) const {
  return options_.out_dir / "stages" / fmt::format("{:02}_{}", index, name);
}

void RunDirectory::prepare() {
  const fs::path run_file = options_.out_dir / "run.json";
  if (options_.resume) {
    if (!fs::exists(run_file)) {
      throw Error(fmt::format("{} holds no mcompress run (no run.json); start a new run with --out",
                              options_.out_dir.string()));
    }
    const auto previous = read_run_json(run_file);
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
  write_file_atomically(options_.out_dir / "recipe.yaml", read_text_file(recipe_.source_path));
  nlohmann::json run = {{"format", kRunFormatVersion},
                        {"recipe_path", recipe_.source_path},
                        {"overrides", options_.overrides},
                        {"recipe", recipe_json()}};
  write_file_atomically(run_file, run.dump(2) + "\n");
}

std::optional<StageOutcome> RunDirectory::finished_stage(size_t index, const std::string& name) const {
  const fs::path record = stage_dir(index, name) / "record.json";
  if (!options_.resume || !fs::exists(record)) return std::nullopt;
  return stage_outcome_from_json(read_run_json(record).at("outcome"));
}

void RunDirectory::write_record(const fs::path& dir, const StageOutcome& outcome,
                                const nlohmann::json& extra) const {
  nlohmann::json record = extra;
  record["outcome"] = to_json(outcome);
  record["recipe"] = recipe_json();
  record["threads"] = at::get_num_threads();
  record["device"] = device_info();
  record["libraries"] = libraries_json(plugins_);
  write_file_atomically(dir / "record.json", record.dump(2) + "\n");
}

void RunDirectory::write_report(RunResult& result, const std::vector<StageOutcome>& outcomes,
                                size_t last_accepted) const {
  result.stages = outcomes;
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& o : outcomes) stages.push_back(to_json(o));
  const char* status = result.status == RunStatus::Completed       ? "completed"
                       : result.status == RunStatus::StoppedByGate ? "stopped"
                                                                   : "failed";
  result.report = {{"recipe", recipe_.name},
                   {"run_dir", fs::absolute(options_.out_dir).string()},
                   {"status", status},
                   {"message", result.message},
                   {"final_model", result.final_model.string()},
                   {"final_stage", outcomes.empty() ? "" : outcomes[last_accepted].name},
                   {"stages", stages}};
  write_file_atomically(options_.out_dir / "report.json", result.report.dump(2) + "\n");
  write_file_atomically(options_.out_dir / "report.md",
                        summary_markdown(fmt::format("mcompress run: {}", recipe_.name), outcomes));
}

ResumeSource read_resume_source(const fs::path& run_dir) {
  const fs::path run_file = run_dir / "run.json";
  if (!fs::exists(run_file)) {
    throw Error(fmt::format("{} holds no mcompress run (no run.json)", run_dir.string()));
  }
  const auto run = read_run_json(run_file);
  if (run.value("format", 0) != kRunFormatVersion) {
    throw Error(fmt::format("{} was written by another mcompress run format ({}); this host reads "
                            "format {}",
                            run_file.string(), run.value("format", 0), kRunFormatVersion));
  }
  return {run.at("recipe_path").get<std::string>(),
          run.value("overrides", std::vector<std::string>{})};
}

}  // namespace mcompress
