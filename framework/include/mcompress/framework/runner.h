#pragma once
// Runs a validated recipe: baseline probes, then each stage on a copy of the
// model, probes, quality gate, and an atomic checkpoint (model + JSON record)
// after every stage, so a run killed at any point can be resumed.
//
// Run directory:
//   run.json                    how to resume: recipe path, overrides, resolved recipe
//   recipe.yaml                 copy of the recipe as it was read
//   stages/NN_<name>/model.pt   the stage's model (NN = 00 for the baseline)
//   stages/NN_<name>/record.json  recipe, resolved parameters, plugin, seed,
//                               metrics, timings, status (written last)
//   stages/NN_<name>/artifacts/ whatever the pass wrote
//   model.pt                    the final accepted model
//   report.md, report.json      the summary table (rewritten after every stage)
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mcompress/framework/plugin_host.h"
#include "mcompress/framework/recipe.h"
#include "mcompress/framework/report.h"
#include "mcompress/sdk/progress.h"

namespace mcompress {

struct RunOptions {
  std::filesystem::path out_dir;
  std::vector<std::string> overrides;  // the --set values, kept for --resume
  bool resume = false;                 // continue the run already in out_dir
};

enum class RunStatus { Completed, StoppedByGate, Failed };

struct RunResult {
  RunStatus status = RunStatus::Completed;
  std::string message;  // why it stopped or failed
  std::vector<StageOutcome> stages;
  std::filesystem::path final_model;
  nlohmann::json report;
};

RunResult run_recipe(const Recipe& recipe, const PluginHost& plugins, const RunOptions& options,
                     Logger& log, Progress& progress);

// What `mcompress run --resume DIR` needs to reload the recipe: its path and
// the overrides of the interrupted run. Throws mcompress::Error when DIR holds no run.
struct ResumeSource {
  std::string recipe_path;
  std::vector<std::string> overrides;
};
ResumeSource read_resume_source(const std::filesystem::path& run_dir);

}  // namespace mcompress
