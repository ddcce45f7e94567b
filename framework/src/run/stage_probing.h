#pragma once
// Measuring a stage's model: the recipe's built-in probes, then the probes
// plugins added, and for language models a generated text sample.
#include <torch/script.h>

#include <nlohmann/json.hpp>

#include "mcompress/framework/loader/plugin_host.h"
#include "mcompress/framework/probes/probes.h"
#include "mcompress/framework/recipe/recipe.h"
#include "mcompress/sdk/progress.h"
#include "run/run_inputs.h"

namespace mcompress {

class StageProber {
 public:
  StageProber(const Recipe& recipe, const PluginHost& plugins, const RunData& data,
              const torch::Tensor& example, Logger& log, Progress& progress)
      : recipe_(recipe), plugins_(plugins), data_(data), example_(example), log_(log), progress_(progress) {}

  // Every enabled probe's metrics for `model`; `reference` is the original
  // model. A probe that throws anything makes this throw mcompress::Error
  // naming the probe (and its plugin) and what it threw: the stage fails.
  Metrics measure(const torch::jit::Module& model, const torch::jit::Module& reference,
                  double& seconds) const;

  // With the `text_sample` probe on text data: what `model` writes from the
  // start of the held-out text, kept in `record` and shown in the log.
  void add_text_sample(const torch::jit::Module& model, nlohmann::json& record) const;

 private:
  const Recipe& recipe_;
  const PluginHost& plugins_;
  const RunData& data_;
  const torch::Tensor& example_;
  Logger& log_;
  Progress& progress_;
};

}  // namespace mcompress
