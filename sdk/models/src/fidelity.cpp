#include "mcompress/models/fidelity.h"

#include <fmt/format.h>

#include "mcompress/sdk/error.h"
#include "mcompress/models/evaluate.h"

namespace mcompress {

Fidelity evaluate_fidelity(const torch::jit::Module& model, const torch::jit::Module& reference,
                           const Dataset& data, int64_t batch_size, Progress& progress) {
  torch::NoGradGuard no_grad;
  EvalModeGuard model_eval(model);
  EvalModeGuard reference_eval(reference);
  BatchIterator batches(data, batch_size, /*shuffle=*/false, 0);
  progress.start("fidelity " + data.name, batches.batches_per_epoch());
  double agree = 0.0, kl = 0.0;
  int64_t predictions = 0, done = 0;
  Batch batch;
  while (batches.next(batch)) {
    auto out = forward_tensor(model, batch.inputs);
    auto ref = forward_tensor(reference, batch.inputs);
    if (out.sizes() != ref.sizes()) {
      throw Error(fmt::format("the model's output shape {} differs from the reference's {}",
                              fmt::join(out.sizes(), "x"), fmt::join(ref.sizes(), "x")));
    }
    const int64_t classes = out.size(-1);
    auto log_p = torch::log_softmax(out.reshape({-1, classes}).to(torch::kDouble), -1);
    auto log_q = torch::log_softmax(ref.reshape({-1, classes}).to(torch::kDouble), -1);
    agree += log_p.argmax(-1).eq(log_q.argmax(-1)).sum().item<double>();
    kl += (log_q.exp() * (log_q - log_p)).sum().item<double>();
    predictions += log_p.size(0);
    progress.update(++done, "");
  }
  progress.finish(fmt::format("agreement {:.4f}", predictions ? agree / predictions : 0.0));
  if (predictions == 0) throw Error("fidelity needs at least one sample");
  return {agree / predictions, kl / predictions};
}

}  // namespace mcompress
