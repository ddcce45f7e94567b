#include "run/pass_execution.h"

#include <ATen/Parallel.h>

#include <fmt/format.h>

#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

std::string output_shape(const c10::IValue& output) {
  if (output.isTensor()) return fmt::format("[{}]", fmt::join(output.toTensor().sizes().vec(), ", "));
  std::vector<std::string> parts;
  if (output.isTuple()) {
    for (const auto& element : output.toTupleRef().elements()) parts.push_back(output_shape(element));
  } else if (output.isList()) {
    for (const auto& element : output.toListRef()) parts.push_back(output_shape(element));
  } else {
    return output.tagKind();
  }
  return fmt::format("({})", fmt::join(parts, ", "));
}

}  // namespace

PassContext pass_context(const RunData& data, const torch::Tensor& example, const StageSpec& stage,
                         uint64_t seed, const std::filesystem::path& stage_dir, Logger& log,
                         Progress& progress) {
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

PassExecution execute_pass(const Pass& pass, PassContext& context) {
  PassExecution execution;
  try {
    torch::manual_seed(context.seed);
    execution.result = pass.run(context);
    context.model.eval();
  } catch (...) {
    execution.error = current_exception_message();
  }
  return execution;
}

std::string output_shape_of(const torch::jit::Module& model, const torch::Tensor& example) {
  try {
    torch::NoGradGuard no_grad;
    return output_shape(const_cast<torch::jit::Module&>(model).forward({example}));
  } catch (...) {
    std::string why = current_exception_message();
    // The interpreter's traceback follows the first lines; the cause is enough here.
    if (why.size() > 600) why = why.substr(0, 600) + " ...";
    throw Error(why);
  }
}

std::string unusable_result(const torch::jit::Module& model, const torch::Tensor& example,
                            const std::string& expected_shape, bool may_change_shape) {
  std::string shape;
  try {
    shape = output_shape_of(model, example);
  } catch (const Error& e) {
    return fmt::format("the model it returned does not run on the example input: {}", e.what());
  }
  if (!may_change_shape && shape != expected_shape) {
    return fmt::format("the model it returned gives an output of shape {} where the previous model's "
                       "was {}; a pass that changes the output on purpose declares it "
                       "(PassOutputPolicy, mcompress/sdk/pass_extensions.h)",
                       shape, expected_shape);
  }
  return {};
}

}  // namespace mcompress
