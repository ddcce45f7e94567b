#pragma once
#include <torch/script.h>

#include "mcompress/sdk/export.h"

namespace mcompress {

// An independent copy of `module` (weights included) whose parameters are
// autograd leaves with the original's requires_grad, so it can be trained.
// (Module::deepcopy alone clones parameters through autograd, which makes
// them non-leaf tensors that optimizers refuse.)
MCOMPRESS_SDK_API torch::jit::Module deep_copy(const torch::jit::Module& module);

}  // namespace mcompress
