#pragma once
// The host's side of `mcompress run --isolate`: a stage's pass runs in a
// child process (`mcompress stage-exec DIR`), so a plugin that segfaults,
// aborts, leaks memory without bound or hangs fails only its stage. Host and
// child exchange files in the stage's `isolated/` folder; every file is
// written atomically, so a killed host or child never leaves half a file.
#include <filesystem>

#include <nlohmann/json.hpp>

#include "mcompress/framework/recipe/recipe.h"
#include "mcompress/framework/run/runner.h"

namespace mcompress {

// The files of one isolated stage.
struct StageExchange {
  explicit StageExchange(const std::filesystem::path& stage_dir)
      : dir(stage_dir / "isolated"), log(stage_dir / "stage.log") {}
  std::filesystem::path dir;  // removed when the stage ends
  std::filesystem::path log;  // the child's output, kept with the stage
  // Written by the host: what to run (recipe, stage, seed, models).
  std::filesystem::path request() const { return dir / "request.json"; }
  std::filesystem::path input_model() const { return dir / "input.pt"; }
  std::filesystem::path teacher_model() const { return dir / "teacher.pt"; }
  // Written by the child: the pass's model, and its summary and stats or error.
  std::filesystem::path output_model() const { return dir / "output.pt"; }
  std::filesystem::path result() const { return dir / "result.json"; }
};

// The memory limit in MiB that `limits` stand for (0 means three quarters
// of the machine's memory).
double effective_memory_limit_mb(const IsolationSpec& limits);

// Starts the stage process on `exchange` (whose request and input models the
// caller wrote), waits for it under `limits` and returns its result.json.
// When the process wrote no result, throws mcompress::Error saying how it
// ended: "died of signal 11 (Segmentation fault)", "exceeded memory limit
// N MB", "exceeded time limit N s" or its exit code, with its last lines of
// output.
nlohmann::json run_stage_process(const StageExchange& exchange, const IsolationSpec& limits,
                                 const IsolationOptions& options);

}  // namespace mcompress
