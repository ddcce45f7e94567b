// finetune: plain supervised training with the SDK trainer, so a recipe can
// train a model from scratch or recover accuracy after compression.
#include <fmt/format.h>

#include "mcompress/sdk/error.h"
#include "mcompress/sdk/plugin.h"
#include "mcompress/training/trainer.h"

namespace {

class FinetunePass final : public mcompress::Pass {
 public:
  FinetunePass() {
    info_.name = "finetune";
    info_.summary = "supervised training with cross-entropy on the recipe's training data";
    info_.kind = mcompress::PassKind::Train;
    info_.needs.train_data = true;
    info_.params = mcompress::training_param_specs();
  }

  const mcompress::PassInfo& info() const override { return info_; }

  mcompress::PassResult run(mcompress::PassContext& ctx) const override {
    const auto options = mcompress::training_options_from(*ctx.params, ctx.seed);
    const auto summary =
        mcompress::train_model(ctx.model, *ctx.train, ctx.validation.get(), options,
                               mcompress::cross_entropy_loss(), *ctx.progress, *ctx.log);
    return mcompress::training_result(
        summary, fmt::format("{} steps, final loss {:.4f}, {:.0f} samples/s", summary.steps,
                             summary.final_loss, summary.samples_per_second));
  }

 private:
  mcompress::PassInfo info_;
};

void register_passes(mcompress::PassRegistry& registry) {
  registry.add(std::make_unique<FinetunePass>());
}

}  // namespace

MCOMPRESS_PLUGIN("finetune", "1.0.0", register_passes)
