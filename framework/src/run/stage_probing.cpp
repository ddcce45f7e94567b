#include "run/stage_probing.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "mcompress/framework/probes/generation_probes.h"
#include "mcompress/sdk/error.h"
#include "mcompress/sdk/probe.h"

namespace mcompress {

Metrics StageProber::measure(const torch::jit::Module& model, const torch::jit::Module& reference,
                             double& seconds) const {
  const auto start = std::chrono::steady_clock::now();
  Metrics metrics;
  try {
    metrics = run_probes(model, data_.eval.get(), example_, recipe_.probes, progress_, &reference);
  } catch (...) {
    throw Error(fmt::format("the built-in probes failed: {}", current_exception_message()));
  }
  for (const auto& name : recipe_.probes.enabled) {
    const Probe* plugin_probe = plugins_.find_probe(name);
    if (!plugin_probe) continue;
    ProbeContext context;
    context.model = &model;
    context.reference = &reference;
    context.eval = data_.eval.get();
    context.example_input = example_;
    context.progress = &progress_;
    context.log = &log_;
    try {
      for (const auto& [key, value] : plugin_probe->measure(context)) metrics[key] = value;
    } catch (...) {
      const PluginRecord* plugin = plugins_.plugin_of_probe(name);
      throw Error(fmt::format("probe '{}' (plugin '{}' {}) failed: {}", name, plugin->name,
                              plugin->version, current_exception_message()));
    }
  }
  seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return metrics;
}

void StageProber::add_text_sample(const torch::jit::Module& model, nlohmann::json& record) const {
  const auto& enabled = recipe_.probes.enabled;
  if (!data_.eval || std::find(enabled.begin(), enabled.end(), "text_sample") == enabled.end())
    return;
  const TextSample sample =
      data_.tokenizer
          ? causal_lm_text_sample(model, *data_.eval, *data_.tokenizer, recipe_.probes.sample_length, recipe_.seed)
          : text_sample(model, *data_.eval, recipe_.probes.sample_length, recipe_.seed);
  record["text_sample"] = {{"prompt", sample.prompt}, {"continuation", sample.continuation}};
  std::string shown = sample.continuation.substr(0, 72);
  std::replace(shown.begin(), shown.end(), '\n', '|');
  log_.info(fmt::format("  sample: {}", shown));
}

}  // namespace mcompress
