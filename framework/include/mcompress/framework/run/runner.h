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
//                               metrics, timings, status, every loaded library
//                               with its SHA-256 (written last)
//   stages/NN_<name>/artifacts/ whatever the pass wrote
//   stages/NN_<name>/stage.log  --isolate: the stage process's output
//   stages/NN_<name>/isolated/  --isolate: the files exchanged with the stage
//                               process (removed when the stage ends)
//   model.pt                    the final accepted model
//   report.md, report.json      the summary table (rewritten after every stage)
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mcompress/framework/loader/plugin_host.h"
#include "mcompress/framework/recipe/recipe.h"
#include "mcompress/framework/run/report.h"
#include "mcompress/sdk/progress.h"

namespace mcompress {

// How `--isolate` runs each stage's pass: in a child process
// (`EXECUTABLE stage-exec DIR`) that loads the same plugins.
struct IsolationOptions {
  std::string executable;                // the mcompress binary (/proc/self/exe)
  std::vector<std::string> plugin_dirs;  // the host's --plugin-dir values
  bool show_output = true;               // copy the child's log lines to stderr as they come
};

struct RunOptions {
  std::filesystem::path out_dir;
  std::vector<std::string> overrides;  // the --set values, kept for --resume
  bool resume = false;                 // continue the run already in out_dir
  // Set: every pass runs in a process of its own under the recipe's
  // `isolation` limits; a pass that crashes, leaks or hangs fails its stage.
  std::optional<IsolationOptions> isolation;
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

// The child's side of --isolate (`mcompress stage-exec DIR`): reads the
// request the host wrote to DIR (stage_isolation.h), runs that one pass with
// `plugins` and writes its model and result to DIR. A pass that throws is a
// result too (its message); returns normally unless the request itself
// cannot be served.
void run_isolated_stage(const std::filesystem::path& exchange_dir, const PluginHost& plugins, Logger& log,
                        Progress& progress);

}  // namespace mcompress
