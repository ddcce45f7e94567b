// kd_standard: Hinton knowledge distillation. The student learns the frozen
// teacher's temperature-softened class probabilities next to the labels:
//   loss = α · T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − α) · CE(z_s, y).
// The loss is the only thing here; the loop and the divergence are the SDK's.
#include <fmt/format.h>

#include "mcompress/training/distillation.h"
#include "mcompress/models/model_stats.h"
#include "mcompress/sdk/plugin.h"
#include "mcompress/training/trainer.h"

namespace {

using mcompress::ParamSpec;

class KdStandardPass final : public mcompress::Pass {
 public:
  KdStandardPass() {
    info_.name = "kd_standard";
    info_.summary = "Hinton knowledge distillation: match the teacher's softened outputs plus "
                    "cross-entropy on the labels";
    info_.kind = mcompress::PassKind::Distill;
    info_.needs.train_data = true;
    info_.needs.teacher = true;
    info_.params = {
        ParamSpec::Float("temperature", 4.0, 0.1, 100.0,
                         "softmax temperature T of both models' logits (higher: softer)"),
        ParamSpec::Float("alpha", 0.9, 0.0, 1.0,
                         "weight of the distillation term; 1 - alpha weighs cross-entropy"),
    };
    for (auto& spec : mcompress::training_param_specs()) info_.params.push_back(std::move(spec));
  }

  const mcompress::PassInfo& info() const override { return info_; }

  mcompress::PassResult run(mcompress::PassContext& ctx) const override {
    const double temperature = ctx.params->get_float("temperature");
    const double alpha = ctx.params->get_float("alpha");
    const auto options = mcompress::training_options_from(*ctx.params, ctx.seed);
    const auto loss = [=](const mcompress::Batch& batch, const torch::Tensor& student,
                          const torch::Tensor& teacher) {
      return mcompress::hinton_kd_loss(student, teacher, batch.targets, temperature, alpha);
    };
    const auto summary = mcompress::distill_model(ctx.model, *ctx.teacher, *ctx.train,
                                                  ctx.validation.get(), options, loss,
                                                  *ctx.progress, *ctx.log);
    const int64_t student_params = mcompress::count_parameters(ctx.model);
    const int64_t teacher_params = mcompress::count_parameters(*ctx.teacher);
    return mcompress::training_result(
        summary,
        fmt::format("{} steps at T={} alpha={}, final loss {:.4f}, {:.0f} samples/s; student has "
                    "{:.3g}x the teacher's parameters",
                    summary.steps, temperature, alpha, summary.final_loss,
                    summary.samples_per_second, double(student_params) / double(teacher_params)),
        {{"student_params", student_params}, {"teacher_params", teacher_params}});
  }

 private:
  mcompress::PassInfo info_;
};

void register_passes(mcompress::PassRegistry& registry) {
  registry.add(std::make_unique<KdStandardPass>());
}

}  // namespace

MCOMPRESS_PLUGIN("kd_standard", "1.0.0", register_passes)
