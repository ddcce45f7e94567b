// gradient_prune: structured pruning by first-order Taylor importance,
// |w * dL/dw| per channel over calibration batches (pruning_criteria.h). The
// criterion is the only thing here; the rest is the SDK's (structured_pruning.h).
#include <mcompress/sdk/error.h>
#include <mcompress/sdk/plugin.h>
#include <mcompress/pruning/pruning_criteria.h>
#include <mcompress/pruning/structured_pruning.h>

#include <memory>

namespace {

mcompress::PassInfo make_info() {
  mcompress::PassInfo info;
  info.name = "gradient_prune";
  info.summary =
      "Structured pruning: removes the channels whose loss change |w * dL/dw| on calibration data is smallest";
  info.kind = mcompress::PassKind::Prune;
  info.needs.calibration_data = true;
  info.params = mcompress::pruning_param_specs();
  for (auto& spec : mcompress::calibration_param_specs("the gradients are accumulated")) info.params.push_back(spec);
  return info;
}

class GradientPrune final : public mcompress::Pass {
 public:
  const mcompress::PassInfo& info() const override {
    static const mcompress::PassInfo pass_info = make_info();
    return pass_info;
  }

  mcompress::PassResult run(mcompress::PassContext& context) const override {
    const auto calibration = mcompress::calibration_options_from(context, "gradient_prune");
    const mcompress::Dataset& data = *context.calibration;
    auto result = mcompress::run_structured_pruning(
        context, [&](const torch::jit::Module& model, const mcompress::DependencyGraph& graph) {
          auto scores = std::make_shared<std::vector<torch::Tensor>>(
              mcompress::taylor_importance(model, graph, data, calibration));
          return [scores](const mcompress::ChannelGroup& group) { return (*scores)[group.id]; };
        });
    result.stats["criterion"] = "taylor";
    return result;
  }
};

void register_passes(mcompress::PassRegistry& registry) {
  registry.add(std::make_unique<GradientPrune>());
}

}  // namespace

MCOMPRESS_PLUGIN("gradient_prune", "1.0.0", register_passes)
