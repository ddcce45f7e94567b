#include "mcompress/training/distillation.h"

#include <torch/nn/functional/activation.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "mcompress/sdk/error.h"
#include "mcompress/models/evaluate.h"

namespace mcompress {
namespace {

// Both logits as [predictions, classes] after checking they describe the same predictions.
std::pair<torch::Tensor, torch::Tensor> as_rows(const torch::Tensor& student,
                                                const torch::Tensor& teacher) {
  if (student.sizes() != teacher.sizes() || student.dim() < 2) {
    throw Error(fmt::format(
        "the student's output [{}] and the teacher's [{}] must have the same shape [N, classes] "
        "or [N, T, classes]: the student must predict the same classes as the teacher",
        fmt::join(student.sizes(), ", "), fmt::join(teacher.sizes(), ", ")));
  }
  const int64_t classes = student.size(-1);
  return {student.reshape({-1, classes}), teacher.reshape({-1, classes})};
}

// KL(p ‖ q) per row from log-probabilities, averaged over rows.
torch::Tensor kl_rows(const torch::Tensor& log_p, const torch::Tensor& log_q) {
  return (log_p.exp() * (log_p - log_q)).sum(1).mean();
}

}  // namespace

torch::Tensor teacher_output(const torch::jit::Module& teacher, const torch::Tensor& inputs) {
  torch::NoGradGuard no_grad;
  EvalModeGuard eval_mode(teacher);
  return forward_tensor(teacher, inputs);
}

TrainSummary distill_model(torch::jit::Module& student, const torch::jit::Module& teacher,
                           const Dataset& train, const Dataset* eval, const TrainOptions& options,
                           const DistillationLoss& loss, Progress& progress, Logger& log) {
  const ModelLoss with_teacher = [&](torch::jit::Module& model, const Batch& batch) {
    const auto target = teacher_output(teacher, batch.inputs);
    return loss(batch, model.forward({batch.inputs}).toTensor(), target);
  };
  return train_model(student, train, eval, options, with_teacher, progress, log);
}

torch::Tensor kd_kl_divergence(const torch::Tensor& student_logits,
                               const torch::Tensor& teacher_logits, double temperature) {
  if (!(temperature > 0)) throw Error(fmt::format("temperature must be positive, got {}", temperature));
  auto [s, t] = as_rows(student_logits, teacher_logits);
  const auto log_p_teacher = torch::log_softmax(t / temperature, 1);
  const auto log_p_student = torch::log_softmax(s / temperature, 1);
  return temperature * temperature * kl_rows(log_p_teacher, log_p_student);
}

torch::Tensor hinton_kd_loss(const torch::Tensor& student_logits,
                             const torch::Tensor& teacher_logits, const torch::Tensor& targets,
                             double temperature, double alpha) {
  auto loss = alpha * kd_kl_divergence(student_logits, teacher_logits, temperature);
  if (alpha < 1.0) loss = loss + (1.0 - alpha) * cross_entropy(student_logits, targets);
  return loss;
}

torch::Tensor forward_kl(const torch::Tensor& student_logits,
                         const torch::Tensor& teacher_logits) {
  auto [s, t] = as_rows(student_logits, teacher_logits);
  return kl_rows(torch::log_softmax(t, 1), torch::log_softmax(s, 1));
}

torch::Tensor reverse_kl(const torch::Tensor& student_logits,
                         const torch::Tensor& teacher_logits) {
  auto [s, t] = as_rows(student_logits, teacher_logits);
  return kl_rows(torch::log_softmax(s, 1), torch::log_softmax(t, 1));
}

}  // namespace mcompress
