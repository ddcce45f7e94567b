#pragma once
// A pass catalog for the recipe, sweep and parameter fuzzers: passes shaped
// like the in-tree plugins' (every parameter type, ranges, choices, required
// parameters, teachers and data needs) without loading any plugin.
#include <map>
#include <string>
#include <vector>

#include "mcompress/framework/recipe/recipe.h"

namespace mcompress::fuzz {

class FuzzCatalog : public PassCatalog {
 public:
  FuzzCatalog() {
    PassInfo prune;
    prune.name = "magnitude_prune";
    prune.summary = "structured pruning by weight magnitude";
    prune.kind = PassKind::Prune;
    prune.params = {
        ParamSpec::Float("sparsity", 0.5, 0.0, 0.95, "fraction of channels to remove"),
        ParamSpec::Choice("criterion", "l2", {"l1", "l2"}, "group norm"),
        ParamSpec::Int("round_to", 1, 1, 1024, "keep a multiple of this many channels"),
        ParamSpec::StringList("ignore", {}, "layers never pruned"),
    };
    add(prune);

    PassInfo finetune;
    finetune.name = "finetune";
    finetune.summary = "supervised training";
    finetune.kind = PassKind::Train;
    finetune.needs.train_data = true;
    finetune.params = {
        ParamSpec::Int("epochs", 1, 0, 10000, "passes over the training data"),
        ParamSpec::Int("max_steps", 0, 0, std::nullopt, "0: no limit"),
        ParamSpec::Float("lr", 0.01, 0.0, 10.0, "learning rate"),
        ParamSpec::Float("grad_clip", 0.0, 0.0, std::nullopt, "0: off"),
        ParamSpec::Choice("optimizer", "sgd", {"sgd", "adam", "adamw"}, "optimizer"),
        ParamSpec::Bool("keep_best", true, "keep the best weights"),
    };
    add(finetune);

    PassInfo distill;
    distill.name = "kd_standard";
    distill.summary = "knowledge distillation";
    distill.kind = PassKind::Distill;
    distill.needs.train_data = true;
    distill.needs.teacher = true;
    distill.params = {
        ParamSpec::Float("temperature", 4.0, 0.1, 100.0, "softmax temperature"),
        ParamSpec::Float("alpha", 0.9, 0.0, 1.0, "weight of the KD term"),
    };
    add(distill);

    PassInfo quantize;
    quantize.name = "mlx_quant";
    quantize.summary = "group-wise weight quantization";
    quantize.kind = PassKind::Quantize;
    quantize.params = {
        ParamSpec::Int("bits", 4, 2, 8, "bits per weight"),
        ParamSpec::Int("group_size", 64, 32, 128, "weights per scale"),
        ParamSpec::StringList("targets", {}, "layers to quantize"),
        ParamSpec::Choice("dtype", "float16", {"float16", "bfloat16", "float32", "keep"}, "scale dtype"),
        ParamSpec::Bool("export_mlx", true, "also write an MLX directory"),
    };
    add(quantize);

    PassInfo calibrated;
    calibrated.name = "activation_prune";
    calibrated.summary = "pruning by activation statistics";
    calibrated.kind = PassKind::Prune;
    calibrated.needs.calibration_data = true;
    calibrated.params = {
        ParamSpec::String("note", std::nullopt, "a required string"),
        ParamSpec::Int("calibration_batches", std::nullopt, 1, 100000, "a required integer"),
    };
    add(calibrated);
  }

  void add(PassInfo info) { passes_[info.name] = std::move(info); }

  const PassInfo* find(const std::string& name) const override {
    auto it = passes_.find(name);
    return it == passes_.end() ? nullptr : &it->second;
  }
  std::vector<std::string> names() const override {
    std::vector<std::string> names;
    for (const auto& [name, info] : passes_) names.push_back(name);
    return names;
  }
  std::vector<std::string> probe_names() const override { return {"plugin_probe"}; }

 private:
  std::map<std::string, PassInfo> passes_;
};

}  // namespace mcompress::fuzz
