#include "mcompress/pruning/structured_pruning.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>

#include <fmt/format.h>

#include "mcompress/pruning/channel_count_rewrite.h"
#include "mcompress/pruning/dependency_graph.h"
#include "mcompress/sdk/error.h"
#include "mcompress/models/evaluate.h"
#include "mcompress/models/model_stats.h"
#include "mcompress/training/trainer.h"

namespace mcompress {

std::vector<ParamSpec> calibration_param_specs(const std::string& collected) {
  return {ParamSpec::Int("calibration_batches", 8, 1, 100000, fmt::format("calibration batches {} over", collected)),
          ParamSpec::Int("calibration_batch_size", 32, 1, 65536, "samples per calibration batch")};
}

CalibrationOptions calibration_options_from(const PassContext& ctx, const std::string& pass) {
  if (!ctx.calibration) throw Error(fmt::format("{} needs calibration data (add a data: section)", pass));
  CalibrationOptions options;
  options.batches = ctx.params->get_int("calibration_batches");
  options.batch_size = ctx.params->get_int("calibration_batch_size");
  options.seed = ctx.seed;
  return options;
}

std::vector<ParamSpec> pruning_param_specs() {
  return {
      ParamSpec::Float("sparsity", 0.5, 0.0, 0.95,
                       "fraction to remove: of the prunable channels, or of the MACs (see target)"),
      ParamSpec::Choice("target", "channels", {"channels", "macs"},
                        "what sparsity is a fraction of: channels, or multiply-accumulates"),
      ParamSpec::Choice("allocation", "uniform", {"uniform", "global"},
                        "uniform: every group loses the same fraction; global: one importance"
                        " threshold across groups (scores normalised per group)"),
      ParamSpec::Int("round_to", 1, 1, 1024,
                     "keep a multiple of this many channels per group (e.g. 8 for SIMD-friendly shapes)"),
      ParamSpec::Int("min_channels", 1, 1, 65536, "never keep fewer channels than this in a group"),
      ParamSpec::Float("max_group_sparsity", 0.9, 0.05, 0.99,
                       "global allocation and MAC targets never remove more of one group than this"),
      ParamSpec::StringList("overrides", {},
                            "PATTERN=SPARSITY entries (e.g. 'layer4.*=0.7'): groups whose layers match"
                            " get this sparsity of their channels; the first match wins"),
      ParamSpec::StringList("targets", {},
                            "prune only groups with a layer matching one of these patterns (empty: all)"),
      ParamSpec::StringList("ignore", {}, "never prune groups with a layer matching one of these patterns"),
      ParamSpec::Int("steps", 1, 1, 100,
                     "prune in this many steps, fine-tuning on the training data between steps"),
      ParamSpec::Int("finetune_epochs", 1, 0, 1000, "fine-tuning epochs between steps (steps > 1)"),
      ParamSpec::Float("finetune_lr", 0.001, 0.0, 10.0, "fine-tuning learning rate between steps"),
      ParamSpec::Int("finetune_batch_size", 64, 1, 65536, "fine-tuning batch size between steps"),
      ParamSpec::Choice("finetune_optimizer", "adam", {"sgd", "adam", "adamw"},
                        "fine-tuning optimizer between steps"),
  };
}

PruneOptions prune_options_from(const Params& params) {
  PruneOptions options;
  options.sparsity = params.get_float("sparsity");
  options.target = params.get_string("target") == "macs" ? SparsityTarget::Macs : SparsityTarget::Channels;
  options.allocation = params.get_string("allocation") == "global" ? Allocation::Global : Allocation::Uniform;
  options.round_to = params.get_int("round_to");
  options.min_channels = params.get_int("min_channels");
  options.max_group_sparsity = params.get_float("max_group_sparsity");
  for (const auto& text : params.get_strings("overrides")) options.overrides.push_back(parse_sparsity_override(text));
  options.targets = params.get_strings("targets");
  options.ignore = params.get_strings("ignore");
  check_prune_options(options);
  return options;
}

double step_sparsity(double sparsity, int64_t step, int64_t steps) {
  const double before = 1.0 - sparsity * static_cast<double>(step - 1) / steps;
  const double after = 1.0 - sparsity * static_cast<double>(step) / steps;
  return before <= 0.0 ? 0.0 : std::max(0.0, 1.0 - after / before);
}

namespace {

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

struct LayerTotals {
  int64_t out_channels = 0, macs = 0, params = 0;
};

// Per layer (module path), in execution order; a layer used twice adds up.
std::vector<std::pair<std::string, LayerTotals>> per_layer(const std::vector<LayerCost>& costs) {
  std::vector<std::pair<std::string, LayerTotals>> layers;
  std::map<std::string, size_t> index;
  for (const auto& cost : costs) {
    const std::string name = cost.module_path.empty() ? "(" + cost.op + ")" : cost.module_path;
    auto [it, inserted] = index.emplace(name, layers.size());
    if (inserted) layers.push_back({name, LayerTotals{cost.out_channels, 0, cost.params}});
    layers[it->second].second.macs += cost.macs;
  }
  return layers;
}

// Glob-escaped, so a layer path matches only itself.
std::string exact_pattern(const std::string& path) {
  std::string pattern;
  for (char c : path) {
    if (c == '*' || c == '?' || c == '[') pattern += std::string("[") + c + "]";
    else pattern += c;
  }
  return pattern;
}

// The options of one step of an iterative schedule. Uniform channel targets
// are set per group from the group's size before the first step, so that
// rounding in one step does not carry into the next.
PruneOptions options_for_step(const PruneOptions& options, int64_t step, int64_t steps, int64_t macs_now,
                              int64_t macs_original, const DependencyGraph& graph,
                              const std::map<std::string, int64_t>& original_sizes) {
  PruneOptions result = options;
  if (steps == 1) return result;
  if (options.target == SparsityTarget::Channels && options.allocation == Allocation::Uniform) {
    result.overrides.clear();
    for (const auto& group : graph.groups) {
      const auto layers = group.producer_layers();
      if (group.frozen || layers.empty() || !is_selected(group, options)) continue;
      auto original = original_sizes.find(layers.front());
      if (original == original_sizes.end()) continue;
      double sparsity = options.sparsity;
      for (const auto& o : options.overrides) {
        if (std::any_of(layers.begin(), layers.end(), [&](const std::string& l) { return matches_pattern(o.pattern, l); })) {
          sparsity = o.sparsity;
          break;
        }
      }
      const int64_t goal = keep_count(original->second, sparsity * static_cast<double>(step) / steps,
                                      std::lcm(options.round_to, group.parts), options.min_channels);
      const double now = 1.0 - static_cast<double>(std::min(goal, group.size)) / group.size;
      result.overrides.push_back({exact_pattern(layers.front()), std::clamp(now, 0.0, 0.999)});
    }
    return result;
  }
  if (options.target == SparsityTarget::Macs) {
    const double goal = (1.0 - options.sparsity * static_cast<double>(step) / steps) * macs_original;
    result.sparsity = std::clamp(1.0 - goal / std::max<double>(macs_now, 1.0), 0.0, 0.95);
  } else {
    result.sparsity = step_sparsity(options.sparsity, step, steps);
  }
  for (auto& o : result.overrides) o.sparsity = step_sparsity(o.sparsity, step, steps);
  return result;
}

void fine_tune_between_steps(PassContext& ctx, torch::jit::Module& model, int64_t step) {
  TrainOptions train;
  train.epochs = ctx.params->get_int("finetune_epochs");
  if (train.epochs == 0) return;
  train.batch_size = ctx.params->get_int("finetune_batch_size");
  train.learning_rate = ctx.params->get_float("finetune_lr");
  train.optimizer = ctx.params->get_string("finetune_optimizer");
  train.seed = ctx.seed + static_cast<uint64_t>(step);
  train.keep_best = ctx.validation != nullptr;
  ctx.log->info(fmt::format("  fine-tuning after step {} ({} epochs)", step, train.epochs));
  train_model(model, *ctx.train, ctx.validation.get(), train, cross_entropy_loss(), *ctx.progress, *ctx.log);
}

}  // namespace

PassResult run_structured_pruning(PassContext& ctx, const PruningCriterion& criterion) {
  if (!ctx.example_input.defined()) {
    throw Error("structured pruning needs an example input to trace the model's shapes");
  }
  const PruneOptions options = prune_options_from(*ctx.params);
  const int64_t steps = ctx.params->get_int("steps");
  if (steps > 1 && ctx.params->get_int("finetune_epochs") > 0 && !ctx.train) {
    throw Error(fmt::format("steps: {} fine-tunes between steps and needs training data; add a data:"
                            " section, or set finetune_epochs: 0", steps));
  }
  const torch::Tensor& input = ctx.example_input;
  std::vector<std::string> rewrites;
  torch::jit::Module model = with_channel_counts_following_weights(ctx.model, &rewrites);
  if (!rewrites.empty()) {
    ctx.log->info(fmt::format("  {} channel counts fixed in the model's code now follow the weights"
                              " (e.g. {})", rewrites.size(), rewrites.front()));
  }

  const auto costs_before = layer_costs(model, input);
  const int64_t params_before = count_parameters(model);
  int64_t macs_before = 0;
  for (const auto& cost : costs_before) macs_before += cost.macs;

  nlohmann::json groups_json = nlohmann::json::array();
  nlohmann::json frozen_json = nlohmann::json::array();
  int64_t channels_before = 0, channels_after = 0, groups_changed = 0, groups_total = 0;
  double analysis_seconds = 0.0, pruning_seconds = 0.0;
  int64_t macs_now = macs_before;
  std::map<std::string, int64_t> original_sizes;  // producer layer -> its group's size before step 1
  for (int64_t step = 1; step <= steps; ++step) {
    const auto started = std::chrono::steady_clock::now();
    const auto graph = analyze_dependencies(model, input);
    const auto analysed = std::chrono::steady_clock::now();
    analysis_seconds += std::chrono::duration<double>(analysed - started).count();
    if (step == 1) {
      groups_total = static_cast<int64_t>(graph.groups.size());
      for (const auto* group : graph.frozen_groups()) {
        ctx.log->info(fmt::format("kept group {} ({} channels): {}", group->name, group->size,
                                  group->frozen_reason));
        frozen_json.push_back({{"group", group->name}, {"channels", group->size}, {"reason", group->frozen_reason}});
      }
    }
    if (step == 1) {
      for (const auto& group : graph.groups) {
        for (const auto& layer : group.producer_layers()) original_sizes.emplace(layer, group.size);
      }
    }
    const PruneOptions step_options =
        options_for_step(options, step, steps, macs_now, macs_before, graph, original_sizes);
    const auto results = prune_groups(model, graph, step_options, criterion(model, graph), input);
    pruning_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - analysed).count();
    if (step == 1) {
      for (const auto& r : results) channels_before += r.channels_before;
    }
    if (step == steps) {
      for (const auto& r : results) {
        channels_after += r.channels_after;
        groups_json.push_back({{"group", r.name},
                               {"layers", r.layers},
                               {"channels_before", r.channels_before},
                               {"channels_after", r.channels_after},
                               {"allocation", r.allocation}});
      }
    }
    for (const auto& r : results) groups_changed += (step == 1 && r.channels_after != r.channels_before);
    try {
      macs_now = count_macs(model, input);
    } catch (const std::exception& error) {
      throw Error(std::string("the pruned model no longer runs (please report this as a"
                              " dependency-analysis bug): ") + error.what());
    }
    if (step < steps && ctx.train) fine_tune_between_steps(ctx, model, step);
  }

  const auto costs_after = layer_costs(model, input);
  const int64_t params_after = count_parameters(model);
  {
    // The output shape must not change, whatever was pruned.
    torch::NoGradGuard no_grad;
    EvalModeGuard eval_mode(model);
    EvalModeGuard eval_original(ctx.model);
    const auto before = forward_tensor(ctx.model, input).sizes().vec();
    const auto after = forward_tensor(model, input).sizes().vec();
    if (before != after) {
      throw Error(fmt::format("pruning changed the output shape from {} to {} (please report this as"
                              " a dependency-analysis bug)", c10::str(before), c10::str(after)));
    }
  }
  nlohmann::json layers = nlohmann::json::array();
  {
    auto after = per_layer(costs_after);
    std::map<std::string, LayerTotals> after_by_name(after.begin(), after.end());
    for (const auto& [name, totals] : per_layer(costs_before)) {
      const LayerTotals now = after_by_name.count(name) ? after_by_name[name] : LayerTotals{};
      layers.push_back({{"layer", name},
                        {"channels_before", totals.out_channels},
                        {"channels_after", now.out_channels},
                        {"macs_before", totals.macs},
                        {"macs_after", now.macs},
                        {"params_before", totals.params},
                        {"params_after", now.params}});
    }
  }
  int64_t macs_after = 0;
  for (const auto& cost : costs_after) macs_after += cost.macs;
  ctx.model = model;

  PassResult result;
  result.stats["layers"] = std::move(layers);
  result.stats["groups"] = std::move(groups_json);
  result.stats["frozen_groups"] = std::move(frozen_json);
  result.stats["code_rewrites"] = rewrites;
  result.stats["params_before"] = params_before;
  result.stats["params_after"] = params_after;
  result.stats["macs_before"] = macs_before;
  result.stats["macs_after"] = macs_after;
  result.stats["channels_before"] = channels_before;
  result.stats["channels_after"] = channels_after;
  result.stats["groups_pruned"] = groups_changed;
  result.stats["groups_total"] = groups_total;
  result.stats["steps"] = steps;
  result.stats["analysis_seconds"] = analysis_seconds;
  result.stats["pruning_seconds"] = pruning_seconds;
  result.summary = fmt::format("pruned {} of {} channels in {} groups{}; params {}->{}, MACs {}->{}",
                               channels_before - channels_after, channels_before, groups_changed,
                               steps > 1 ? fmt::format(" in {} steps", steps) : "",
                               human_count(params_before), human_count(params_after),
                               human_count(macs_before), human_count(macs_after));
  return result;
}

}  // namespace mcompress
