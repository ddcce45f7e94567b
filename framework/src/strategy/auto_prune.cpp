#include "mcompress/framework/strategy/auto_prune.h"

#include <fmt/format.h>

#include <chrono>

#include "mcompress/framework/loader/plugin_host.h"
#include "mcompress/sdk/error.h"
#include "mcompress/models/evaluate.h"
#include "mcompress/models/fidelity.h"
#include "mcompress/models/module_copy.h"
#include "mcompress/sdk/pass.h"
#include "mcompress/pruning/structured_pruning.h"

namespace mcompress {
namespace {

struct ProbeResult {
  std::string pass;
  double accuracy = 0.0;
  double agreement = 0.0;
  double seconds = 0.0;
  std::string skipped;  // why the criterion could not be probed
};

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

  std::vector<ProbeResult> probes;
  const Pass* best = nullptr;
  double best_score = -1.0;
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
    } catch (const std::exception& e) {
      probe.skipped = e.what();
    }
    probe.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    ctx.log->info(probe.skipped.empty()
                      ? fmt::format("  probe {}: accuracy {:.2f}%, agreement {:.2f}% ({:.1f} s)", probe.pass,
                                    probe.accuracy * 100, probe.agreement * 100, probe.seconds)
                      : fmt::format("  probe {}: failed ({})", probe.pass, probe.skipped));
    const double score = by_accuracy ? probe.accuracy : probe.agreement;
    if (probe.skipped.empty() && score > best_score) {
      best_score = score;
      best = pass;
    }
    probes.push_back(probe);
  }
  if (!best) throw Error("every pruning criterion failed while probing; see the log");

  const Params params = params_for(*best, mine);
  PassContext full = ctx;
  full.params = &params;
  PassResult result = best->run(full);
  ctx.model = full.model;

  nlohmann::json table = nlohmann::json::array();
  std::vector<std::string> others;
  for (const auto& p : probes) {
    table.push_back({{"pass", p.pass}, {"accuracy", p.accuracy}, {"agreement", p.agreement},
                     {"seconds", p.seconds}, {"failed", p.skipped}});
    if (p.pass != best->info().name && p.skipped.empty()) {
      others.push_back(fmt::format("{} {:.2f}%", p.pass, (by_accuracy ? p.accuracy : p.agreement) * 100));
    }
  }
  const std::string why = fmt::format(
      "{} had the highest held-out {} after pruning without fine-tuning ({:.2f}% on {} samples{}{})",
      best->info().name, by_accuracy ? "accuracy" : "agreement with the unpruned model", best_score * 100,
      scoring->size(), others.empty() ? "" : "; ", fmt::join(others, ", "));
  PassResult out;
  out.summary = fmt::format("chose {}: {}", best->info().name, result.summary);
  out.stats = {{"chosen", best->info().name}, {"why", why}, {"probes", table}, {"result", result.stats}};
  ctx.log->info("  " + why);
  return out;
}

}  // namespace

std::unique_ptr<Pass> make_auto_prune_pass(const PluginHost& plugins) {
  return std::make_unique<AutoPrunePass>(plugins);
}

void register_builtin_passes(PluginHost& plugins) { plugins.add_builtin_pass(make_auto_prune_pass(plugins)); }

}  // namespace mcompress
