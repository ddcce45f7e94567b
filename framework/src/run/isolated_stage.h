#pragma once
// `--isolate`, the host's half: the stage's pass runs in `mcompress stage-exec`
// on copies of the models the host resolved (stage_isolation.h has the
// process and the exchanged files; run_isolated_stage in runner.h is the
// child's half). Both halves run the pass with execute_pass.
#include <cstddef>
#include <filesystem>

#include "mcompress/framework/recipe/recipe.h"
#include "mcompress/framework/run/runner.h"
#include "run/pass_execution.h"

namespace mcompress {

// Runs stage `index` (`stage`) of `recipe` in a child process on ctx.model
// (and ctx.teacher), the original model being the file `original_model`.
// The child's model replaces ctx.model; a pass that threw, or a child that
// crashed, leaked past its limit or hung, is the execution's error.
PassExecution execute_pass_isolated(const Recipe& recipe, const RunOptions& options, size_t index,
                                    const StageSpec& stage, PassContext& ctx,
                                    const std::filesystem::path& stage_dir,
                                    const std::filesystem::path& original_model);

}  // namespace mcompress
