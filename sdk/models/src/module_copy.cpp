#include "mcompress/models/module_copy.h"

namespace mcompress {

torch::jit::Module deep_copy(const torch::jit::Module& module) {
  torch::jit::Module copy;
  {
    torch::NoGradGuard no_grad;
    copy = module.deepcopy();
  }
  auto source = module.named_parameters().begin();
  for (const auto& p : copy.named_parameters()) {
    p.value.requires_grad_((*source).value.requires_grad());
    ++source;
  }
  return copy;
}

}  // namespace mcompress
