#include "mcompress/models/inference_optimization.h"

#include <torch/csrc/jit/api/module.h>

#include <fmt/format.h>

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

}  // namespace

torch::jit::Module optimize_for_cpu_inference(const torch::jit::Module& model, const InferenceOptions& options) {
  if (!model.find_method("forward")) throw Error("the model has no forward method to optimise");
  torch::jit::Module copy = deep_copy(model);
  copy.eval();
  if (options.onednn) {
    try {
      // oneDNN's blocked layout replaces channels-last, so no input conversion.
      torch::jit::Module optimized = torch::jit::freeze(copy, c10::nullopt, /*optimize_numerics=*/true);
      optimized = torch::jit::optimize_for_inference(optimized);
      std::string why_not;
      if (auto saveable = detail::saveable_onednn_module(optimized, why_not)) return *saveable;
    } catch (const c10::Error&) {
      // The plain frozen form below reports what is wrong with the model.
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
  return frozen;
}

}  // namespace mcompress
