#pragma once
// Evaluation shared by probes, the trainer and passes.
#include <torch/script.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "mcompress/sdk/data.h"
#include "mcompress/sdk/export.h"
#include "mcompress/sdk/progress.h"

namespace mcompress {

// Top-1 accuracy (fraction in [0,1]) of `model` on `data`, computed in eval
// mode without gradients; the model's training flag is restored afterwards.
// For a sequence model (outputs [N, T, classes], targets [N, T]) it is the
// fraction of positions whose next token is predicted right.
MCOMPRESS_SDK_API double evaluate_accuracy(const torch::jit::Module& model, const Dataset& data,
                                           int64_t batch_size, Progress& progress);

// Calls model.forward(inputs) and returns the output tensor; throws
// mcompress::Error if the model returns something else.
MCOMPRESS_SDK_API torch::Tensor forward_tensor(const torch::jit::Module& model,
                                               const torch::Tensor& inputs);

// Puts `model` and every submodule in eval mode for the guard's lifetime and
// then restores each module's own training flag (a frozen BN stays frozen).
// Module handles share the underlying object, so this changes the caller's
// model; the guard keeps its own handles, so the objects stay alive.
class MCOMPRESS_SDK_API EvalModeGuard {
 public:
  explicit EvalModeGuard(const torch::jit::Module& model);
  ~EvalModeGuard();
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  std::vector<std::pair<torch::jit::Module, bool>> saved_;
};

}  // namespace mcompress
