#include "mcompress/models/inference_optimization.h"

#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <vector>

#include "mcompress/sdk/error.h"
#include "mcompress/models/module_copy.h"
#include "saveable_onednn_module.h"

namespace mcompress {
namespace {

// Weights stored channels-last match channels-last activations, so oneDNN
// reorders neither per call; strides survive saving and loading.
void convert_constants_to_channels_last(torch::jit::Block* block) {
  for (torch::jit::Node* node : block->nodes()) {
    for (torch::jit::Block* inner : node->blocks()) convert_constants_to_channels_last(inner);
    if (node->kind() != c10::prim::Constant || node->output()->type()->kind() != c10::TypeKind::TensorType) continue;
    const at::Tensor value = node->t(c10::attr::value);
    if (value.dim() == 4 && value.is_floating_point()) {
      node->t_(c10::attr::value, value.contiguous(at::MemoryFormat::ChannelsLast));
    }
  }
}

// PyTorch runs a small convolution at batch 1 (at most 20480 input values,
// 1x1 or 3x3, ungrouped) in its native path, im2col and a BLAS product, whose
// speed then depends on BLAS threading (Debian's OpenBLAS spins its own
// threads beside OpenMP's). Calling oneDNN's convolution directly sends
// every convolution with a constant weight through oneDNN whatever its size.
void run_convolutions_in_onednn(torch::jit::Block* block) {
  for (torch::jit::Node* node : block->nodes()) {
    for (torch::jit::Block* inner : node->blocks()) run_convolutions_in_onednn(inner);
    // Padding given as numbers (not "same"/"valid"), a constant float 4-D weight.
    if (node->kind() != c10::aten::conv2d || node->inputs().size() != 7 || !node->input(4)->type()->cast<c10::ListType>())
      continue;
    auto weight = torch::jit::toIValue(node->input(1));
    if (node->input(1)->node()->kind() != c10::prim::Constant || !weight || !weight->isTensor() ||
        weight->toTensor().dim() != 4 || weight->toTensor().scalar_type() != at::kFloat)
      continue;
    // conv2d(input, weight, bias, stride, padding, dilation, groups) ->
    // mkldnn_convolution(input, weight, bias, padding, stride, dilation, groups)
    torch::jit::WithInsertPoint insert_here(node);
    torch::jit::Value* onednn = node->owningGraph()->insert(
        c10::aten::mkldnn_convolution,
        {node->input(0), node->input(1), node->input(2), node->input(4), node->input(3), node->input(5), node->input(6)});
    node->output()->replaceAllUsesWith(onednn);
  }
}

// Median milliseconds per call of each model on `input`: warm-up calls, then
// alternating rounds so a slow moment of a shared machine falls on both.
std::vector<double> median_ms(std::vector<torch::jit::Module> models, const torch::Tensor& input) {
  torch::NoGradGuard no_grad;
  using Clock = std::chrono::steady_clock;
  std::vector<std::vector<double>> times(models.size());
  for (auto& model : models)
    for (int i = 0; i < 3; ++i) model.forward({input});
  for (int round = 0; round < 7; ++round) {
    for (size_t m = 0; m < models.size(); ++m) {
      // At least 3 calls and about 20 ms a round.
      const auto round_start = Clock::now();
      for (int call = 0; call < 3 || Clock::now() - round_start < std::chrono::milliseconds(20); ++call) {
        const auto start = Clock::now();
        models[m].forward({input});
        times[m].push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      }
    }
  }
  std::vector<double> medians;
  for (auto& t : times) {
    std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
    medians.push_back(t[t.size() / 2]);
  }
  return medians;
}

}  // namespace

torch::jit::Module optimize_for_cpu_inference(const torch::jit::Module& model, const InferenceOptions& options,
                                              InferenceFormTiming* timing) {
  if (!model.find_method("forward")) throw Error("the model has no forward method to optimise");
  torch::jit::Module copy = deep_copy(model);
  copy.eval();
  if (options.onednn) {
    std::optional<torch::jit::Module> saveable;
    try {
      // oneDNN's blocked layout replaces channels-last, so no input conversion.
      torch::jit::Module optimized = torch::jit::freeze(copy, c10::nullopt, /*optimize_numerics=*/true);
      optimized = torch::jit::optimize_for_inference(optimized);
      std::string why_not;
      saveable = detail::saveable_onednn_module(optimized, why_not);
    } catch (const c10::Error&) {
      // The plain frozen form below reports what is wrong with the model.
    }
    if (saveable && !options.timing_input.defined()) return *saveable;
    if (saveable) {
      try {
        InferenceOptions plain = options;
        plain.onednn = false;
        plain.without_blas = true;  // neither form's speed then depends on BLAS threading
        torch::jit::Module channels_last = optimize_for_cpu_inference(model, plain);
        const auto ms = median_ms({*saveable, channels_last}, options.timing_input);
        const bool onednn_faster = ms[0] <= ms[1];
        if (timing) *timing = {onednn_faster ? "onednn" : "channels_last", ms[0], ms[1]};
        return onednn_faster ? *saveable : channels_last;
      } catch (const std::exception&) {
        return *saveable;  // the other form, or the timing input, does not run: nothing to choose
      }
    }
  }
  torch::jit::Module target = copy;
  if (options.channels_last) {
    // A wrapper converts the input, so callers keep passing ordinary tensors.
    torch::jit::Module wrapper(c10::QualifiedName("__torch__.mcompress.ChannelsLastModel"),
                               std::make_shared<torch::jit::CompilationUnit>(), /*shouldMangle=*/true);
    wrapper.register_attribute("training", c10::BoolType::get(), false);
    wrapper.register_module("model", copy);
    wrapper.define(R"(
def forward(self, x):
    if x.dim() == 4:
        x = x.contiguous(memory_format=2)  # torch.channels_last
    return self.model.forward(x)
)");
    target = wrapper;
  }
  torch::jit::Module frozen;
  try {
    frozen = torch::jit::freeze(target, c10::nullopt, /*optimize_numerics=*/true);
  } catch (const c10::Error& error) {
    throw Error(fmt::format("the model cannot be frozen for inference: {}", error.what_without_backtrace()));
  }
  if (options.channels_last) {
    auto graph = frozen.get_method("forward").graph();
    convert_constants_to_channels_last(graph->block());
  }
  if (options.without_blas) {
    try {
      torch::jit::Module direct = frozen.clone();
      auto graph = direct.get_method("forward").graph();
      run_convolutions_in_onednn(graph->block());
      torch::jit::EliminateDeadCode(graph);
      std::string why_not;  // then without the oneDNN classifier
      if (auto routed = detail::saveable_onednn_module(direct, why_not)) return *routed;
      return direct;
    } catch (const std::exception&) {
      // A graph these rewrites do not fit stays as frozen.
    }
  }
  return frozen;
}

}  // namespace mcompress
