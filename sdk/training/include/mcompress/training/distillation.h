#pragma once
// Distillation on top of the trainer: a frozen teacher whose output the loss
// sees next to the student's, and the divergences distillation passes share.
// Logits are [N, classes] or, for sequence models, [N, T, classes]; every
// divergence is averaged over all predictions (samples, or positions).
#include <torch/script.h>

#include <functional>

#include "mcompress/sdk/data.h"
#include "mcompress/sdk/export.h"
#include "mcompress/sdk/progress.h"
#include "mcompress/training/trainer.h"

namespace mcompress {

// The teacher's output for `inputs`, computed in eval mode and without
// gradients, so the teacher is never updated and its normalisation statistics
// never move. The teacher is shared, not copied: each submodule's training
// flag is restored afterwards.
MCOMPRESS_SDK_API torch::Tensor teacher_output(const torch::jit::Module& teacher,
                                               const torch::Tensor& inputs);

// The loss of one batch given the student's output (with gradients) and the
// teacher's (a constant).
using DistillationLoss = std::function<torch::Tensor(
    const Batch& batch, const torch::Tensor& student_output, const torch::Tensor& teacher_output)>;

// Trains `student` in place with the shared training loop, calling `loss` with
// the frozen `teacher`'s output on every batch. `teacher` is only read.
MCOMPRESS_SDK_API TrainSummary distill_model(torch::jit::Module& student,
                                             const torch::jit::Module& teacher,
                                             const Dataset& train, const Dataset* eval,
                                             const TrainOptions& options,
                                             const DistillationLoss& loss, Progress& progress,
                                             Logger& log);

// T² · KL(softmax(teacher/T) ‖ softmax(student/T)) (Hinton et al. 2015). The
// T² factor keeps its gradients on the scale of the cross-entropy's when T
// changes. Throws mcompress::Error when the shapes differ.
MCOMPRESS_SDK_API torch::Tensor kd_kl_divergence(const torch::Tensor& student_logits,
                                                 const torch::Tensor& teacher_logits,
                                                 double temperature);

// α · T² · KL(p_teacher ‖ p_student at temperature T) + (1 − α) · cross-entropy
// against `targets`.
MCOMPRESS_SDK_API torch::Tensor hinton_kd_loss(const torch::Tensor& student_logits,
                                               const torch::Tensor& teacher_logits,
                                               const torch::Tensor& targets, double temperature,
                                               double alpha);

// Forward KL(p_teacher ‖ q_student): mass-covering, the usual KD objective.
MCOMPRESS_SDK_API torch::Tensor forward_kl(const torch::Tensor& student_logits,
                                           const torch::Tensor& teacher_logits);

// Reverse KL(q_student ‖ p_teacher): mode-seeking; a small student spends its
// capacity on what the teacher finds likely instead of spreading mass over
// everything the teacher allows (MiniLLM, Gu et al. 2024).
MCOMPRESS_SDK_API torch::Tensor reverse_kl(const torch::Tensor& student_logits,
                                           const torch::Tensor& teacher_logits);

}  // namespace mcompress
