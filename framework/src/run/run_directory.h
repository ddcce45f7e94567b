#pragma once
// The run directory (layout in runner.h): creating it, resuming it, and the
// records and reports written into it, each atomically.
#include <torch/script.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mcompress/framework/loader/plugin_host.h"
#include "mcompress/framework/recipe/recipe.h"
#include "mcompress/framework/run/report.h"
#include "mcompress/framework/run/runner.h"

namespace mcompress {

// Models in and out. A path ending in ".pt" is a TorchScript file; any other
// path is a Hugging Face checkpoint directory (hf_model.h), which is what a
// run writes for checkpoint language models (model_path_in). load_model
// throws mcompress::Error naming `what` and the file; checkpoints are built
// computing in `dtype` (hf_model.h), by default the dtype they were saved in.
// save_model writes via a temporary file or directory; a checkpoint gets the
// tokenizer and generation files of `companion_dir`.
torch::jit::Module load_model(const std::string& path, const std::string& what,
                              const std::string& dtype = "checkpoint");
void save_model(const torch::jit::Module& model, const std::filesystem::path& path,
                const std::filesystem::path& companion_dir = {});
// Where `model` is saved in the stage directory `dir`: dir/model for a
// checkpoint language model, dir/model.pt otherwise.
std::filesystem::path model_path_in(const std::filesystem::path& dir, const torch::jit::Module& model);
// The model a stage left in `dir`, if it left one.
std::optional<std::filesystem::path> saved_model_in(const std::filesystem::path& dir);
// Passes do not know where the run's tokenizer lives: a checkpoint directory
// a pass wrote among its artifacts (config.json and model.safetensors.index.json,
// e.g. mlx_quant's mlx-lm export) gets the tokenizer and generation files of
// `companion_dir` it lacks.
void complete_checkpoint_artifacts(const std::filesystem::path& artifacts, const std::filesystem::path& companion_dir);

class RunDirectory {
 public:
  RunDirectory(const Recipe& recipe, const RunOptions& options, const PluginHost& plugins);

  const std::filesystem::path& root() const { return options_.out_dir; }
  // stages/NN_<name>; the baseline is stage 0.
  std::filesystem::path stage_dir(size_t index, const std::string& name) const;

  // A new run: refuses a directory that holds one, writes run.json and a copy
  // of the recipe. A resumed run: refuses a directory whose run had another
  // recipe and removes the temporary files of interrupted writes.
  void prepare();

  // The record of a stage that finished in an earlier attempt (records are
  // written last), when resuming; nullopt otherwise.
  std::optional<StageOutcome> finished_stage(size_t index, const std::string& name) const;

  // stages/NN_<name>/record.json: `extra` plus the outcome, the recipe, the
  // threads, the device and every library the process runs.
  void write_record(const std::filesystem::path& stage_dir, const StageOutcome& outcome,
                    const nlohmann::json& extra) const;

  // report.json and report.md, from the outcomes so far.
  void write_report(RunResult& result, const std::vector<StageOutcome>& outcomes,
                    size_t last_accepted) const;

 private:
  nlohmann::json recipe_json() const { return to_json(recipe_); }

  const Recipe& recipe_;
  const RunOptions& options_;
  const PluginHost& plugins_;
};

}  // namespace mcompress
