#include "mcompress/models/evaluate.h"

#include <fmt/format.h>

#include "mcompress/sdk/error.h"

namespace mcompress {

EvalModeGuard::EvalModeGuard(const torch::jit::Module& model) {
  for (torch::jit::Module module : model.modules()) {
    // Module::train() asserts on modules without the flag; skip them instead
    // so exotic scripted models still evaluate.
    auto slot = module.type()->findAttributeSlot("training");
    if (!slot) continue;
    saved_.emplace_back(module, module._ivalue()->getSlot(*slot).toBool());
    module._ivalue()->setSlot(*slot, false);
  }
}

EvalModeGuard::~EvalModeGuard() {
  for (auto& [module, training] : saved_) module.setattr("training", training);
}

torch::Tensor forward_tensor(const torch::jit::Module& model, const torch::Tensor& inputs) {
  torch::jit::Module handle = model;  // forward() is non-const; the handle shares the model
  c10::IValue output = handle.forward({inputs});
  if (!output.isTensor()) {
    throw Error(fmt::format("the model's forward returned {}, but a Tensor was expected",
                            output.type()->str()));
  }
  return output.toTensor();
}

namespace {

// Correct top-1 predictions in one batch and how many were made: one per
// sample for a classifier ([N, classes] with targets [N]), one per position for
// a sequence model ([N, T, classes] with targets [N, T]).
std::pair<int64_t, int64_t> count_correct(const torch::Tensor& logits, const Batch& batch) {
  const bool classifier = logits.dim() == 2 && batch.targets.dim() == 1;
  const bool sequence = logits.dim() == 3 && batch.targets.dim() == 2 &&
                        logits.size(1) == batch.targets.size(1);
  if ((!classifier && !sequence) || logits.size(0) != batch.inputs.size(0)) {
    throw Error(fmt::format(
        "accuracy needs model outputs of shape [batch, classes] (or [batch, positions, classes] "
        "for sequence targets); got {} for a batch of {}",
        fmt::join(logits.sizes(), "x"), batch.inputs.size(0)));
  }
  // Negative targets mark positions an earlier sliding window scored (data.h).
  const auto scored = batch.targets.ge(0);
  return {logits.argmax(-1).eq(batch.targets).logical_and(scored).sum().item<int64_t>(),
          scored.sum().item<int64_t>()};
}

}  // namespace

double evaluate_accuracy(const torch::jit::Module& model, const Dataset& data, int64_t batch_size,
                         Progress& progress) {
  torch::NoGradGuard no_grad;
  EvalModeGuard eval_mode(model);
  BatchIterator batches(data, batch_size, /*shuffle=*/false, /*seed=*/0);
  progress.start("evaluate " + data.name, batches.batches_per_epoch());
  int64_t correct = 0;
  int64_t seen = 0;
  int64_t done = 0;
  Batch batch;
  while (batches.next(batch)) {
    const auto [right, made] = count_correct(forward_tensor(model, batch.inputs), batch);
    correct += right;
    seen += made;
    progress.update(++done, fmt::format("accuracy {:.4f}", double(correct) / double(seen)));
  }
  const double accuracy = double(correct) / double(seen);
  progress.finish(fmt::format("accuracy {:.4f}", accuracy));
  return accuracy;
}

}  // namespace mcompress
