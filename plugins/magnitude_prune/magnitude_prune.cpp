// magnitude_prune: structured pruning that keeps the channels with the largest
// weight norms. The criterion is the only thing here; group discovery and
// slicing are the SDK's (dependency_graph.h, channel_pruning.h).
#include <mcompress/sdk/channel_pruning.h>
#include <mcompress/sdk/dependency_graph.h>
#include <mcompress/sdk/error.h>
#include <mcompress/sdk/model_stats.h>
#include <mcompress/sdk/plugin.h>

#include <cstdio>
#include <memory>
#include <string>

namespace {

using mcompress::ParamSpec;

// 11689512 -> "11.7M": summaries are read by people.
std::string human_count(int64_t value) {
  const char* suffixes[] = {"", "K", "M", "G", "T"};
  double scaled = static_cast<double>(value);
  int index = 0;
  while (scaled >= 1000.0 && index < 4) {
    scaled /= 1000.0;
    ++index;
  }
  char text[32];
  std::snprintf(text, sizeof text, index == 0 ? "%.0f%s" : "%.3g%s", scaled, suffixes[index]);
  return text;
}

mcompress::PassInfo make_info() {
  mcompress::PassInfo info;
  info.name = "magnitude_prune";
  info.summary = "Structured pruning: removes the channels with the smallest weight norms";
  info.kind = mcompress::PassKind::Prune;
  info.params = {
      ParamSpec::Float("sparsity", 0.5, 0.0, 0.95,
                       "fraction of the channels of every prunable channel group to remove"),
      ParamSpec::Choice("norm", "l2", {"l1", "l2"},
                        "norm of a channel's coupled weights used as its importance"),
      ParamSpec::Int("round_to", 1, 1, 1024,
                     "keep a multiple of this many channels per group (e.g. 8 for SIMD-friendly"
                     " shapes)"),
  };
  return info;
}

struct ModelSize {
  int64_t params = 0;
  int64_t macs = 0;
};

ModelSize measure(const torch::jit::Module& model, const torch::Tensor& input) {
  return {mcompress::count_parameters(model), mcompress::count_macs(model, input)};
}

nlohmann::json frozen_groups_json(const mcompress::DependencyGraph& graph, mcompress::Logger& log) {
  auto frozen = nlohmann::json::array();
  for (const auto* group : graph.frozen_groups()) {
    log.info("kept group " + group->name + " (" + std::to_string(group->size) +
             " channels): " + group->frozen_reason);
    frozen.push_back({{"group", group->name}, {"channels", group->size}, {"reason", group->frozen_reason}});
  }
  return frozen;
}

struct ChannelTotals {
  int64_t before = 0;
  int64_t after = 0;
  int64_t groups_changed = 0;
};

nlohmann::json layers_json(const std::vector<mcompress::GroupPruneResult>& results, ChannelTotals& totals) {
  auto layers = nlohmann::json::array();
  for (const auto& result : results) {
    totals.before += result.channels_before;
    totals.after += result.channels_after;
    if (result.channels_after != result.channels_before) ++totals.groups_changed;
    for (const auto& layer : result.layers) {
      layers.push_back({{"layer", layer},
                        {"group", result.name},
                        {"channels_before", result.channels_before},
                        {"channels_after", result.channels_after}});
    }
  }
  return layers;
}

class MagnitudePrune final : public mcompress::Pass {
 public:
  const mcompress::PassInfo& info() const override {
    static const mcompress::PassInfo pass_info = make_info();
    return pass_info;
  }

  mcompress::PassResult run(mcompress::PassContext& context) const override {
    if (!context.example_input.defined()) {
      throw mcompress::Error("magnitude_prune needs an example input to trace the model's shapes");
    }
    mcompress::PruneOptions options;
    options.sparsity = context.params->get_float("sparsity");
    options.round_to = context.params->get_int("round_to");
    const auto norm = context.params->get_string("norm") == "l1" ? mcompress::ImportanceNorm::L1
                                                                 : mcompress::ImportanceNorm::L2;
    torch::jit::Module& model = context.model;
    const torch::Tensor& input = context.example_input;

    const ModelSize before = measure(model, input);
    const auto graph = mcompress::analyze_dependencies(model, input);
    auto frozen = frozen_groups_json(graph, *context.log);
    const auto results = mcompress::prune_groups(
        model, graph, options,
        [&](const mcompress::ChannelGroup& group) { return mcompress::group_importance(model, group, norm); });
    const ModelSize after = measure_pruned(model, input);

    ChannelTotals totals;
    mcompress::PassResult result;
    result.stats["layers"] = layers_json(results, totals);
    result.stats["frozen_groups"] = std::move(frozen);
    result.stats["params_before"] = before.params;
    result.stats["params_after"] = after.params;
    result.stats["macs_before"] = before.macs;
    result.stats["macs_after"] = after.macs;
    result.stats["channels_before"] = totals.before;
    result.stats["channels_after"] = totals.after;
    result.stats["groups_pruned"] = totals.groups_changed;
    result.stats["groups_total"] = graph.groups.size();
    result.summary = "pruned " + std::to_string(totals.before - totals.after) + " of " +
                     std::to_string(totals.before) + " channels in " +
                     std::to_string(totals.groups_changed) + " groups; params " +
                     human_count(before.params) + "->" + human_count(after.params) + ", MACs " +
                     human_count(before.macs) + "->" + human_count(after.macs);
    return result;
  }

 private:
  // Measuring runs the pruned model; if it no longer runs, that is a bug in
  // the dependency analysis, and the host must keep the previous model.
  static ModelSize measure_pruned(const torch::jit::Module& model, const torch::Tensor& input) {
    try {
      return measure(model, input);
    } catch (const std::exception& error) {
      throw mcompress::Error(std::string("the pruned model no longer runs (please report this as a"
                                         " dependency-analysis bug): ") + error.what());
    }
  }
};

void register_passes(mcompress::PassRegistry& registry) {
  registry.add(std::make_unique<MagnitudePrune>());
}

}  // namespace

MCOMPRESS_PLUGIN("magnitude_prune", "1.0.0", register_passes)
