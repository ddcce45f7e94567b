// activation_prune: structured pruning by activation statistics of each
// channel on calibration data - mean |activation| or APoZ (average
// percentage of zeros) - collected from the running model
// (pruning_criteria.h). The rest is the SDK's (structured_pruning.h).
#include <mcompress/sdk/error.h>
#include <mcompress/sdk/plugin.h>
#include <mcompress/pruning/pruning_criteria.h>
#include <mcompress/pruning/structured_pruning.h>

#include <memory>

namespace {

mcompress::PassInfo make_info() {
  mcompress::PassInfo info;
  info.name = "activation_prune";
  info.summary = "Structured pruning: removes the channels with the weakest activations on calibration data";
  info.kind = mcompress::PassKind::Prune;
  info.needs.calibration_data = true;
  info.params = mcompress::pruning_param_specs();
  info.params.push_back(mcompress::ParamSpec::Choice(
      "statistic", "mean_abs", {"mean_abs", "apoz"},
      "mean_abs: mean |activation|; apoz: fewest zero activations (average percentage of zeros) kept"));
  for (auto& spec : mcompress::calibration_param_specs("the statistics are collected")) info.params.push_back(spec);
  return info;
}

class ActivationPrune final : public mcompress::Pass {
 public:
  const mcompress::PassInfo& info() const override {
    static const mcompress::PassInfo pass_info = make_info();
    return pass_info;
  }

  mcompress::PassResult run(mcompress::PassContext& context) const override {
    const auto calibration = mcompress::calibration_options_from(context, "activation_prune");
    const bool apoz = context.params->get_string("statistic") == "apoz";
    const auto statistic = apoz ? mcompress::ActivationStatistic::NonZero : mcompress::ActivationStatistic::MeanAbsolute;
    const mcompress::Dataset& data = *context.calibration;
    auto result = mcompress::run_structured_pruning(
        context, [&](const torch::jit::Module& model, const mcompress::DependencyGraph& graph) {
          auto scores = std::make_shared<std::vector<torch::Tensor>>(
              mcompress::activation_importance(model, graph, data, statistic, calibration));
          return [scores](const mcompress::ChannelGroup& group) { return (*scores)[group.id]; };
        });
    result.stats["criterion"] = apoz ? "apoz" : "mean_abs";
    return result;
  }
};

void register_passes(mcompress::PassRegistry& registry) {
  registry.add(std::make_unique<ActivationPrune>());
}

}  // namespace

MCOMPRESS_PLUGIN("activation_prune", "1.0.0", register_passes)
