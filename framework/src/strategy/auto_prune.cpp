#include "mcompress/framework/strategy/auto_prune.h"

#include <fmt/format.h>

#include <chrono>

#include "mcompress/framework/loader/plugin_host.h"
#include "mcompress/framework/probes/latency_timing.h"
#include "mcompress/sdk/error.h"
#include "mcompress/models/evaluate.h"
#include "mcompress/models/fidelity.h"
#include "mcompress/models/module_copy.h"
#include "mcompress/sdk/pass.h"
#include "mcompress/pruning/structured_pruning.h"
#include "strategy/criterion_choice.h"

namespace mcompress {
namespace {

struct ProbeResult {
  std::string pass;
  double accuracy = 0.0;
  double agreement = 0.0;
  std::optional<LatencySummary> latency;  // batch 1, when timed
  double seconds = 0.0;
  std::string skipped;  // why the criterion could not be probed
};

// Batch-1 latency of a probed copy, timed as the latency probe times it.
LatencySummary batch1_latency(const torch::jit::Module& model, const Dataset& samples, int runs) {
  torch::NoGradGuard no_grad;
  EvalModeGuard eval(model);
  const auto input = samples.inputs.slice(0, 0, 1).contiguous();
  WarmupPolicy warmup;
  warmup.min_runs = 3;
  NullProgress quiet;
  return time_latency([&] { forward_tensor(model, input); }, runs, warmup, quiet, "auto_prune latency");
}

class AutoPrunePass final : public Pass {
 public:
  explicit AutoPrunePass(const PluginHost& plugins) : plugins_(plugins) {
    info_.name = "auto_prune";
    info_.summary = "ranks the loaded pruning criteria on this model with cheap probes and runs the best";
    info_.kind = PassKind::Prune;
    info_.needs.calibration_data = true;
    info_.params = pruning_param_specs();
    info_.params.push_back(ParamSpec::StringList(
        "candidates", {}, "pruning passes to choose from (empty: every loaded prune pass)"));
    info_.params.push_back(ParamSpec::Int("probe_calibration", 128, 1, 1000000,
                                          "calibration samples each criterion sees while probing"));
    info_.params.push_back(ParamSpec::Int("probe_samples", 1000, 1, 1000000,
                                          "held-out samples the probed copies are scored on"));
    info_.params.push_back(ParamSpec::Choice("score", "accuracy", {"accuracy", "agreement"},
                                             "rank by held-out accuracy or by top-1 agreement with the unpruned model"));
    info_.params.push_back(ParamSpec::Int("probe_latency_runs", 20, 0, 100000,
                                          "timed batch-1 runs of each probed copy; criteria whose scores tie "
                                          "within their 95% intervals are ranked by this latency (0: not timed)"));
  }

  const PassInfo& info() const override { return info_; }
  PassResult run(PassContext& ctx) const override;

 private:
  std::vector<const Pass*> candidates(const Params& params) const;
  Params params_for(const Pass& pass, const Params& mine) const;

  const PluginHost& plugins_;
  PassInfo info_;
};

std::vector<const Pass*> AutoPrunePass::candidates(const Params& params) const {
  std::vector<std::string> names = params.get_strings("candidates");
  if (names.empty()) {
    for (const auto& name : plugins_.names()) {
      const auto* info = plugins_.find(name);
      if (info->kind == PassKind::Prune && name != info_.name) names.push_back(name);
    }
  }
  std::vector<const Pass*> passes;
  for (const auto& name : names) {
    const Pass* pass = plugins_.find_pass(name);
    if (!pass || pass->info().kind != PassKind::Prune || name == info_.name) {
      throw Error(fmt::format("auto_prune candidate '{}' is not a loaded pruning pass", name));
    }
    passes.push_back(pass);
  }
  if (passes.empty()) throw Error("auto_prune found no pruning passes to choose from");
  return passes;
}

// The candidate's defaults, with every parameter auto_prune shares with it
// (the common pruning options) taken from auto_prune's own.
Params AutoPrunePass::params_for(const Pass& pass, const Params& mine) const {
  Params params;
  for (const auto& spec : pass.info().params) {
    if (mine.has(spec.name)) {
      params.set(spec.name, mine.values().at(spec.name));
    } else if (spec.default_value) {
      params.set(spec.name, *spec.default_value);
    } else {
      throw Error(fmt::format("'{}' has a required parameter '{}' that auto_prune cannot fill", pass.info().name,
                              spec.name));
    }
  }
  return params;
}

PassResult AutoPrunePass::run(PassContext& ctx) const {
  const Params& mine = *ctx.params;
  const auto held_out = ctx.validation ? ctx.validation : ctx.calibration;
  if (!held_out || !ctx.calibration) throw Error("auto_prune needs data: add a `data:` section to the recipe");
  const auto scoring = std::make_shared<Dataset>(held_out->slice(0, mine.get_int("probe_samples")));
  const auto small_calibration = std::make_shared<Dataset>(ctx.calibration->slice(0, mine.get_int("probe_calibration")));
  const bool by_accuracy = mine.get_string("score") == "accuracy";
  NullLogger quiet_log;
  NullProgress quiet;

  const int latency_runs = int(mine.get_int("probe_latency_runs"));
  std::vector<ProbeResult> probes;
  std::vector<const Pass*> probed_passes;
  for (const Pass* pass : candidates(mine)) {
    ProbeResult probe;
    probe.pass = pass->info().name;
    const auto started = std::chrono::steady_clock::now();
    try {
      const Params params = params_for(*pass, mine);
      PassContext trial = ctx;
      trial.model = deep_copy(ctx.model);
      trial.calibration = small_calibration;
      trial.params = &params;
      trial.log = &quiet_log;
      trial.progress = &quiet;
      pass->run(trial);
      probe.accuracy = evaluate_accuracy(trial.model, *scoring, 256, quiet);
      probe.agreement = evaluate_fidelity(trial.model, ctx.model, *scoring, 256, quiet).top1_agreement;
      if (latency_runs > 0) probe.latency = batch1_latency(trial.model, *scoring, latency_runs);
    } catch (const std::exception& e) {
      probe.skipped = e.what();
    }
    probe.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const std::string latency =
        probe.latency ? ", batch-1 latency " +
                            latency_with_spread(probe.latency->median_ms, probe.latency->p25_ms, probe.latency->p75_ms) +
                            " ms"
                      : "";
    ctx.log->info(probe.skipped.empty()
                      ? fmt::format("  probe {}: accuracy {:.2f}%, agreement {:.2f}%{} ({:.1f} s)", probe.pass,
                                    probe.accuracy * 100, probe.agreement * 100, latency, probe.seconds)
                      : fmt::format("  probe {}: failed ({})", probe.pass, probe.skipped));
    probes.push_back(probe);
    probed_passes.push_back(pass);
  }

  std::vector<ProbedCriterion> usable;
  std::vector<const Pass*> usable_passes;
  for (size_t i = 0; i < probes.size(); ++i) {
    const auto& p = probes[i];
    if (!p.skipped.empty()) continue;
    ProbedCriterion criterion{p.pass, by_accuracy ? p.accuracy : p.agreement, scoring->size(), std::nullopt};
    if (p.latency) criterion.latency_ms = Measurement::within(p.latency->median_ms, p.latency->p25_ms, p.latency->p75_ms);
    usable.push_back(criterion);
    usable_passes.push_back(probed_passes[i]);
  }
  if (usable.empty()) throw Error("every pruning criterion failed while probing; see the log");
  const CriterionChoice choice =
      choose_criterion(usable, by_accuracy ? "held-out accuracy" : "held-out agreement with the unpruned model");
  const Pass* best = usable_passes[choice.chosen];

  const Params params = params_for(*best, mine);
  PassContext full = ctx;
  full.params = &params;
  PassResult result = best->run(full);
  ctx.model = full.model;

  nlohmann::json table = nlohmann::json::array();
  for (const auto& p : probes) {
    nlohmann::json row = {{"pass", p.pass}, {"accuracy", p.accuracy}, {"agreement", p.agreement},
                          {"seconds", p.seconds}, {"failed", p.skipped}};
    if (p.skipped.empty()) {
      const auto interval = fraction_interval(by_accuracy ? p.accuracy : p.agreement, scoring->size());
      row["score_interval"] = {interval.low, interval.high};
    }
    if (p.latency) {
      row["latency_b1_median_ms"] = p.latency->median_ms;
      row["latency_b1_p25_ms"] = p.latency->p25_ms;
      row["latency_b1_p75_ms"] = p.latency->p75_ms;
    }
    table.push_back(row);
  }
  const std::string& why = choice.why;
  PassResult out;
  out.summary = fmt::format("chose {}: {}", best->info().name, result.summary);
  out.stats = {{"chosen", best->info().name}, {"why", why},       {"ties", choice.ties},
               {"probes", table},               {"result", result.stats}};
  ctx.log->info("  " + why);
  return out;
}

}  // namespace

std::unique_ptr<Pass> make_auto_prune_pass(const PluginHost& plugins) {
  return std::make_unique<AutoPrunePass>(plugins);
}

void register_builtin_passes(PluginHost& plugins) { plugins.add_builtin_pass(make_auto_prune_pass(plugins)); }

}  // namespace mcompress
