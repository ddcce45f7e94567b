#pragma once
// Running one pass, the one way both the host and an isolated stage's process
// do it, and checking that what it returned is a model the run can go on with.
#include <torch/script.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "mcompress/framework/recipe/recipe.h"
#include "mcompress/sdk/pass.h"
#include "run/run_inputs.h"

namespace mcompress {

// Everything a pass sees except its models.
PassContext pass_context(const RunData& data, const torch::Tensor& example, const StageSpec& stage,
                         uint64_t seed, const std::filesystem::path& stage_dir, Logger& log,
                         Progress& progress);

// What a pass returned, or the message of what it threw.
struct PassExecution {
  PassResult result;
  std::optional<std::string> error;
};

// Seeds LibTorch with the context's seed, runs the pass, puts the model it
// left in `context.model` in eval mode. Whatever it throws (`throw 42`
// included) becomes `error`; nothing escapes.
PassExecution execute_pass(const Pass& pass, PassContext& context);

// Runs `model` once on `example` (no gradients) and returns its output's
// shape, "[1, 10]" (tuples and lists as "([1, 10], [1])"); throws
// mcompress::Error with what the model threw.
std::string output_shape_of(const torch::jit::Module& model, const torch::Tensor& example);

// Why the model a pass returned cannot replace the previous one, whose output
// had `expected_shape`: it does not run on `example`, or (unless
// `may_change_shape`) its output has another shape. Empty when it can.
std::string unusable_result(const torch::jit::Module& model, const torch::Tensor& example,
                            const std::string& expected_shape, bool may_change_shape);

}  // namespace mcompress
