// reverse_kld: distillation for generative language models with the reverse
// KL divergence KL(q_student ‖ p_teacher) at every position (MiniLLM, Gu et
// al. 2024). Forward KL makes a small student cover everything the teacher
// finds possible; reverse KL lets it concentrate on what the teacher finds
// likely. The divergence is taken on teacher-forced training text and, on a
// chosen fraction of steps, on sequences the student writes itself (or a
// teacher/student mixture writes), so it also learns to continue its own
// text; forward KL is selectable as the baseline.
#include <ATen/CPUGeneratorImpl.h>

#include <fmt/format.h>

#include "mcompress/training/distillation.h"
#include "mcompress/sdk/error.h"
#include "mcompress/models/language_model.h"
#include "mcompress/sdk/plugin.h"
#include "mcompress/training/trainer.h"

namespace {

using mcompress::Error;
using mcompress::ParamSpec;

class ReverseKldPass final : public mcompress::Pass {
 public:
  ReverseKldPass() {
    info_.name = "reverse_kld";
    info_.summary = "language-model distillation with per-token reverse KL(student || teacher), "
                    "on training text and on sequences the student samples";
    info_.kind = mcompress::PassKind::Distill;
    info_.needs.train_data = true;
    info_.needs.teacher = true;
    info_.params = {
        ParamSpec::Choice("divergence", "reverse_kl", {"reverse_kl", "forward_kl"},
                          "reverse_kl: KL(q_student || p_teacher); forward_kl: KL(p_teacher || "
                          "q_student), the usual KD baseline"),
        ParamSpec::Float("on_policy", 0.0, 0.0, 1.0,
                         "fraction of steps whose sequences are sampled instead of taken from "
                         "the training text"),
        ParamSpec::Choice("sampler", "mixture", {"student", "mixture"},
                          "who writes sampled sequences: the student, or a mixture of teacher and "
                          "student"),
        ParamSpec::Float("mix_alpha", 0.2, 0.0, 1.0,
                         "teacher weight in the mixture: p = mix_alpha p_teacher + (1 - "
                         "mix_alpha) q_student"),
        ParamSpec::Int("prompt_length", 16, 1, 4096,
                       "tokens of training text that start each sampled sequence"),
        ParamSpec::Float("sample_temperature", 1.0, 0.05, 10.0, "temperature of sampling"),
        ParamSpec::Float("ce_weight", 0.0, 0.0, 1.0,
                         "weight of cross-entropy on the training text (teacher-forced steps); "
                         "1 - ce_weight weighs the divergence"),
    };
    for (auto& spec : mcompress::training_param_specs()) info_.params.push_back(std::move(spec));
  }

  const mcompress::PassInfo& info() const override { return info_; }

  mcompress::PassResult run(mcompress::PassContext& ctx) const override {
    if (!ctx.train->is_token_sequence()) {
      throw Error("reverse_kld distills language models and needs text data (`data: {dataset: "
                  "tiny_shakespeare, path: FILE}`); use kd_standard for classifiers");
    }
    const bool reverse = ctx.params->get_string("divergence") == "reverse_kl";
    const double on_policy = ctx.params->get_float("on_policy");
    const bool mixture = ctx.params->get_string("sampler") == "mixture";
    const double mix_alpha = ctx.params->get_float("mix_alpha");
    const int64_t prompt_length = ctx.params->get_int("prompt_length");
    const double temperature = ctx.params->get_float("sample_temperature");
    const double ce_weight = ctx.params->get_float("ce_weight");
    const int64_t context = ctx.train->inputs.size(1);
    if (on_policy > 0 && prompt_length >= context) {
      throw Error(fmt::format("prompt_length {} leaves nothing to sample in windows of {} tokens; "
                              "use a prompt shorter than data.context",
                              prompt_length, context));
    }
    const torch::jit::Module& teacher = *ctx.teacher;
    auto generator = at::make_generator<at::CPUGeneratorImpl>(ctx.seed);
    int64_t sampled_steps = 0;
    int64_t steps = 0;

    const mcompress::ModelLoss loss = [&](torch::jit::Module& student,
                                          const mcompress::Batch& batch) {
      ++steps;
      torch::Tensor tokens = batch.inputs;
      const bool sample = on_policy > 0 && torch::rand({1}, generator).item<double>() < on_policy;
      if (sample) {
        mcompress::SamplingOptions sampling;
        sampling.new_tokens = context - prompt_length;
        sampling.temperature = temperature;
        if (mixture) {
          sampling.teacher = &teacher;
          sampling.teacher_weight = mix_alpha;
        }
        tokens = mcompress::sample_tokens(student, batch.inputs.slice(1, 0, prompt_length),
                                          sampling, generator);
        ++sampled_steps;
      }
      const auto target = mcompress::teacher_output(teacher, tokens);
      const auto output = student.forward({tokens}).toTensor();
      auto value = reverse ? mcompress::reverse_kl(output, target)
                           : mcompress::forward_kl(output, target);
      // Sampled text has no reference continuation, so cross-entropy only
      // applies to the training text.
      if (!sample && ce_weight > 0) {
        value = (1.0 - ce_weight) * value + ce_weight * mcompress::cross_entropy(output, batch.targets);
      }
      return value;
    };
    const auto options = mcompress::training_options_from(*ctx.params, ctx.seed);
    const auto summary = mcompress::train_model(ctx.model, *ctx.train, ctx.validation.get(),
                                                options, loss, *ctx.progress, *ctx.log);

    return mcompress::training_result(
        summary,
        fmt::format("{} steps of {} ({} on sampled sequences), final loss {:.4f}, {:.0f} "
                    "sequences/s",
                    summary.steps, reverse ? "reverse KL" : "forward KL", sampled_steps,
                    summary.final_loss, summary.samples_per_second),
        {{"divergence", reverse ? "reverse_kl" : "forward_kl"},
         {"sampled_steps", sampled_steps},
         {"loss_calls", steps}});
  }

 private:
  mcompress::PassInfo info_;
};

void register_passes(mcompress::PassRegistry& registry) {
  registry.add(std::make_unique<ReverseKldPass>());
}

}  // namespace

MCOMPRESS_PLUGIN("reverse_kld", "1.0.0", register_passes)
