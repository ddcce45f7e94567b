// magnitude_prune: structured pruning that keeps the channels with the largest
// weight norms. The criterion is the only thing here; analysis, allocation,
// slicing and reporting are the SDK's (structured_pruning.h).
#include <mcompress/pruning/channel_pruning.h>
#include <mcompress/sdk/plugin.h>
#include <mcompress/pruning/structured_pruning.h>

#include <memory>

namespace {

mcompress::PassInfo make_info() {
  mcompress::PassInfo info;
  info.name = "magnitude_prune";
  info.summary = "Structured pruning: removes the channels with the smallest weight norms";
  info.kind = mcompress::PassKind::Prune;
  info.params = mcompress::pruning_param_specs();
  info.params.push_back(mcompress::ParamSpec::Choice(
      "norm", "l2", {"l1", "l2"}, "norm of a channel's coupled weights used as its importance"));
  return info;
}

class MagnitudePrune final : public mcompress::Pass {
 public:
  const mcompress::PassInfo& info() const override {
    static const mcompress::PassInfo pass_info = make_info();
    return pass_info;
  }

  mcompress::PassResult run(mcompress::PassContext& context) const override {
    const auto norm = context.params->get_string("norm") == "l1" ? mcompress::ImportanceNorm::L1
                                                                 : mcompress::ImportanceNorm::L2;
    auto result = mcompress::run_structured_pruning(
        context, [norm](const torch::jit::Module& model, const mcompress::DependencyGraph&) {
          return [norm, &model](const mcompress::ChannelGroup& group) {
            return mcompress::group_importance(model, group, norm);
          };
        });
    result.stats["criterion"] = norm == mcompress::ImportanceNorm::L1 ? "l1" : "l2";
    return result;
  }
};

void register_passes(mcompress::PassRegistry& registry) {
  registry.add(std::make_unique<MagnitudePrune>());
}

}  // namespace

MCOMPRESS_PLUGIN("magnitude_prune", "1.1.0", register_passes)
