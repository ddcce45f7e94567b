#include "mcompress/framework/strategy/compression_search.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>

#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

// int8 stores a byte per weight plus a scale per output channel: a little
// under 4x smaller than float32.
constexpr double kInt8Ratio = 3.8;

// The first layer (few inputs) and the classifier (fixed outputs) shrink on
// one side only, and the file has a fixed part: aiming 25% beyond the ratio
// lands near it (the zoo CNN: sparsity 0.5 for 4x gave 3.65x).
constexpr double kSizeMargin = 1.25;

YAML::Node flow_map() {
  YAML::Node node(YAML::NodeType::Map);
  node.SetStyle(YAML::EmitterStyle::Flow);
  return node;
}

YAML::Node stage(const std::string& name, const std::string& pass, const YAML::Node& params) {
  YAML::Node node = flow_map();
  node["name"] = name;
  node["pass"] = pass;
  node["params"] = params;
  return node;
}

YAML::Node prune_stage(const std::string& criterion, double sparsity) {
  YAML::Node params = flow_map();
  params["sparsity"] = std::round(sparsity * 100.0) / 100.0;
  return stage("prune", criterion + "_prune", params);
}

// Recovery trains as `mcompress run`'s default pipeline recovers: Adam at a
// low rate, from the original model's labels or its outputs (kd_standard).
YAML::Node recover_stage(const std::string& pass, int epochs) {
  YAML::Node params = flow_map();
  params["epochs"] = epochs;
  params["batch_size"] = 128;
  params["optimizer"] = "adam";
  params["lr"] = 0.001;
  return stage("recover", pass, params);
}

YAML::Node int8_stage() { return stage("quantize", "int8_quant", flow_map()); }

std::string emit(const YAML::Node& node) {
  YAML::Emitter out;
  out.SetDoublePrecision(6);
  out << node;
  return std::string(out.c_str()) + "\n";
}

}  // namespace

double sparsity_for_size_ratio(double ratio) {
  return std::clamp(1.0 - 1.0 / std::sqrt(kSizeMargin * std::max(1.0, ratio)), 0.1, 0.9);
}

double parse_fraction(const std::string& text, const std::string& option) {
  std::string number = text;
  double scale = 1.0;
  if (!number.empty() && number.back() == '%') {
    number.pop_back();
    scale = 0.01;
  }
  size_t used = 0;
  double value = 0.0;
  try {
    value = std::stod(number, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (number.empty() || used != number.size() || !std::isfinite(value)) {
    throw Error(fmt::format("{} must be a fraction (0.01) or a percentage (1%), got '{}'", option, text));
  }
  return value * scale;
}

CompressionPlan plan_compression(const CompressionRequest& request, uint64_t model_bytes) {
  if (!(request.target_ratio > 1.0)) {
    throw Error(fmt::format("the target ratio must be above 1 (original size / compressed size), got {}",
                            request.target_ratio));
  }
  if (!(request.max_accuracy_loss >= 0.0 && request.max_accuracy_loss < 1.0)) {
    throw Error(fmt::format("the accuracy loss allowed must be a fraction in [0, 1) (0.01 = one point), got {}",
                            request.max_accuracy_loss));
  }
  CompressionPlan plan;
  plan.max_size_mb = double(model_bytes) / request.target_ratio / double(1 << 20);

  YAML::Node recipe;
  recipe["mcompress"] = 1;
  recipe["name"] = "compress_" + request.model.stem().string();
  recipe["seed"] = 1;
  if (request.threads > 0) recipe["threads"] = request.threads;
  recipe["model"]["path"] = request.model.string();
  YAML::Node data;
  data["dataset"] = request.dataset;
  data["path"] = request.data_path.string();
  data["train_limit"] = request.train_limit;
  data["validation_size"] = 2000;
  data["calibration_size"] = 512;
  recipe["data"] = data;
  recipe["teacher"] = "original";  // distillation learns from the model as given
  YAML::Node probes;
  for (const char* probe : {"accuracy", "latency", "params", "macs", "size"}) probes["enabled"].push_back(probe);
  probes["enabled"].SetStyle(YAML::EmitterStyle::Flow);
  probes["latency_batch_sizes"].push_back(1);
  probes["latency_batch_sizes"].SetStyle(YAML::EmitterStyle::Flow);
  probes["latency_runs"] = 30;
  recipe["probes"] = probes;
  // The base's own stages: the first float candidate (a sweep candidate replaces them).
  recipe["stages"].push_back(prune_stage("magnitude", sparsity_for_size_ratio(request.target_ratio)));
  recipe["stages"].push_back(recover_stage("finetune", request.recovery_epochs));
  plan.recipe_yaml = fmt::format(
      "# The base recipe of `mcompress compress {}`: the model, the data and the probes\n"
      "# every candidate shares (sweep.yaml lists the candidates).\n{}",
      request.model.filename().string(), emit(recipe));

  YAML::Node sweep;
  sweep["mcompress_sweep"] = 1;
  sweep["name"] = recipe["name"].as<std::string>();
  sweep["base"] = "recipe.yaml";
  const auto add = [&](const std::string& name, const std::vector<YAML::Node>& stages) {
    YAML::Node candidate;
    candidate["name"] = name;
    for (const auto& s : stages) candidate["stages"].push_back(s);
    sweep["candidates"].push_back(candidate);
    plan.candidates.push_back(name);
  };
  const std::vector<std::string> criteria = request.thorough
                                                ? std::vector<std::string>{"magnitude", "activation", "gradient"}
                                                : std::vector<std::string>{"magnitude", "activation"};
  const std::vector<std::pair<std::string, std::string>> recoveries{{"finetune", "finetune"},
                                                                    {"kd_standard", "kd"}};
  std::vector<double> sparsities{sparsity_for_size_ratio(request.target_ratio)};
  // Pruning removes fewer weights than (1 - s)^2 suggests where the first and
  // last layers shrink on one side only: a stronger step as well.
  if (request.thorough) sparsities.push_back(std::min(0.9, sparsities[0] + (1.0 - sparsities[0]) / 3.0));
  for (double sparsity : sparsities)
    for (const auto& criterion : criteria)
      for (const auto& [pass, short_name] : recoveries)
        add(fmt::format("{} {:.2f} + {}", criterion, sparsity, short_name),
            {prune_stage(criterion, sparsity), recover_stage(pass, request.recovery_epochs)});
  if (request.int8_available) {
    const double rest = request.target_ratio / kInt8Ratio;
    if (rest <= 1.0) add("int8", {int8_stage()});
    if (rest > 1.0 || request.thorough) {
      const double sparsity = sparsity_for_size_ratio(std::max(rest, 1.5));
      for (const auto& [pass, short_name] : recoveries)
        add(fmt::format("magnitude {:.2f} + {} + int8", sparsity, short_name),
            {prune_stage("magnitude", sparsity), recover_stage(pass, request.recovery_epochs), int8_stage()});
    }
  }
  YAML::Node objective;
  objective["reference"] = "baseline";
  objective["constraints"]["max_accuracy_drop"] = request.max_accuracy_loss;
  objective["constraints"]["max_size_mb"] = plan.max_size_mb;
  objective["minimize"] = "latency_b1_median_ms";
  sweep["objective"] = objective;
  plan.sweep_yaml = fmt::format(
      "# The candidates of `mcompress compress {}` (target: {:g}x smaller, at most {:g} points of\n"
      "# accuracy lost); rerun or edit with `mcompress compare sweep.yaml`.\n{}",
      request.model.filename().string(), request.target_ratio, 100.0 * request.max_accuracy_loss, emit(sweep));
  return plan;
}

}  // namespace mcompress
