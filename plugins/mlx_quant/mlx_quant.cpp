// mlx_quant: MLX-exact group-wise affine quantization of linear layers, by
// rounding to nearest or by GPTQ. Thin: it turns the recipe's layer
// selection into a plan; the SDK measures sensitivity for mixed precision
// (mixed_precision.h), computes GPTQ weights (gptq_calibration.h), quantizes
// (quantized_model.h) and writes the MLX directory (mlx_export.h, or
// mlx_lm_checkpoint.h for checkpoint language models), and
// libmcompress_runtime runs the result.
#include <fnmatch.h>

#include <algorithm>
#include <map>
#include <optional>
#include <regex>
#include <sstream>

#include <fmt/format.h>

#include "mcompress/runtime/affine_quantization.h"
#include "mcompress/sdk/error.h"
#include "mcompress/formats/mlx_export.h"
#include "mcompress/formats/mlx_lm_checkpoint.h"
#include "mcompress/models/causal_lm.h"
#include "mcompress/models/quantized_layer.h"
#include "mcompress/sdk/plugin.h"
#include "mcompress/quantization/gptq_calibration.h"
#include "mcompress/quantization/mixed_precision.h"
#include "mcompress/quantization/quantized_model.h"

namespace {

bool matches(const std::string& pattern, const std::string& path) {
  return fnmatch(pattern.c_str(), path.c_str(), 0) == 0;
}

// One `overrides` entry: "PATTERN: bits=B group_size=G" (either key optional).
struct Override {
  std::string pattern;
  std::optional<int> bits;
  std::optional<int> group_size;
};

Override parse_override(const std::string& text) {
  static const std::regex entry(R"(^\s*([^:\s]+)\s*:\s*(.*)$)");
  static const std::regex setting(R"(^(bits|group_size)\s*=\s*(\d+)$)");
  std::smatch m;
  if (!std::regex_match(text, m, entry)) {
    throw mcompress::Error(fmt::format(
        "overrides entry `{}` is not of the form 'PATTERN: bits=B group_size=G'", text));
  }
  Override result{m[1], std::nullopt, std::nullopt};
  std::istringstream settings(m[2].str());
  std::string word;
  while (settings >> word) {
    std::smatch s;
    if (!std::regex_match(word, s, setting)) {
      throw mcompress::Error(fmt::format(
          "overrides entry `{}`: `{}` is not bits=B or group_size=G", text, word));
    }
    (s[1] == "bits" ? result.bits : result.group_size) = std::stoi(s[2]);
  }
  if (!result.bits && !result.group_size) {
    throw mcompress::Error(fmt::format("overrides entry `{}` sets neither bits nor group_size", text));
  }
  return result;
}

std::optional<c10::ScalarType> storage_dtype(const std::string& name) {
  if (name == "float16") return c10::kHalf;
  if (name == "bfloat16") return c10::kBFloat16;
  if (name == "float32") return c10::kFloat;
  return std::nullopt;  // keep
}

// The first `samples` rows of the run's calibration data, in batches.
std::vector<torch::Tensor> calibration_batches(const mcompress::PassContext& ctx, const std::string& purpose,
                                               const std::string& alternative) {
  const auto& p = *ctx.params;
  if (!ctx.calibration || ctx.calibration->size() == 0) {
    throw mcompress::Error(
        fmt::format("mlx_quant: {} needs calibration data, and the run has none: add a `data:` section to the "
                    "recipe (its first calibration_size training samples calibrate){}",
                    purpose, alternative));
  }
  const int64_t samples = std::min(p.get_int("calibration_samples"), ctx.calibration->size());
  const int64_t batch_size = p.get_int("calibration_batch_size");
  std::vector<torch::Tensor> batches;
  for (int64_t start = 0; start < samples; start += batch_size) {
    batches.push_back(ctx.calibration->inputs.narrow(0, start, std::min(batch_size, samples - start)));
  }
  return batches;
}

class MlxQuantPass final : public mcompress::Pass {
 public:
  MlxQuantPass() {
    using mcompress::ParamSpec;
    info_.name = "mlx_quant";
    info_.summary =
        "MLX-exact group-wise affine quantization of linear layers (2-8 bits; round-to-nearest or GPTQ), "
        "fast CPU kernels, MLX export";
    info_.kind = mcompress::PassKind::Quantize;
    info_.params = {
        ParamSpec::Int("bits", 4, 2, 8, "bits per weight: 2, 3, 4, 5, 6 or 8"),
        ParamSpec::Int("group_size", 64, 32, 128,
                       "consecutive weights of a row sharing one scale and bias: 32, 64 or 128"),
        ParamSpec::StringList("targets", {},
                              "glob patterns of the linear layers to quantize, by module path "
                              "(e.g. 'block*.attn.*'); empty: every linear layer"),
        ParamSpec::StringList("ignore", {}, "glob patterns of linear layers to leave in floating point"),
        ParamSpec::StringList("overrides", {},
                              "per-layer settings, 'PATTERN: bits=B group_size=G' (either key may "
                              "be left out); later entries win"),
        ParamSpec::Choice("dtype", "float16", {"float16", "bfloat16", "float32", "keep"},
                          "dtype weights are cast to before quantizing; scales and biases are "
                          "stored in it, as MLX stores them in the weight's dtype"),
        ParamSpec::Choice("method", "rtn", {"rtn", "gptq"},
                          "rtn: round each weight to the nearest level (MLX's own quantizer); gptq: "
                          "GPTQ, which chooses the levels so that the layers' outputs on calibration "
                          "data change least (needs the run's data; slower; same format)"),
        ParamSpec::Float("gptq_damp", 0.01, 1e-6, 10.0,
                         "gptq: added to the Hessian's diagonal, as a fraction of its mean, before it "
                         "is inverted (raised tenfold automatically if still not invertible)"),
        ParamSpec::Bool("gptq_sequential", true,
                        "gptq: quantize layers in data-flow order, each calibrated on the outputs of "
                        "the already quantized ones (one pass over the calibration data per step); "
                        "false: one pass with the floating model"),
        ParamSpec::Int("calibration_samples", 128, 1, 1000000,
                       "gptq: calibration samples (token windows for language models) used, the first "
                       "of the run's calibration data"),
        ParamSpec::Int("calibration_batch_size", 8, 1, 65536, "gptq: samples per calibration forward pass"),
        ParamSpec::Float("target_bits_per_weight", 0.0, 0.0, 8.0,
                         "mixed precision: each selected layer gets `bits` or `high_bits`, the most "
                         "sensitive ones (KL on calibration data with the layer alone quantized) the "
                         "higher, so that the mean code bits reach this; 0: off. overrides still win"),
        ParamSpec::Int("high_bits", 0, 0, 8, "mixed precision: the higher width (0: bits + 1, or 8 after 6)"),
        ParamSpec::Bool("export_mlx", true,
                        "also write an MLX directory to the stage's artifacts/mlx: for a Hugging Face "
                        "checkpoint model the directory mlx-lm's converter writes (embeddings "
                        "quantized too unless `ignore` names them), else model.safetensors and config.json"),
    };
  }

  const mcompress::PassInfo& info() const override { return info_; }

  // The checkpoint model as mlx-lm's converter would write it: the module's
  // quantized layers as they are, layers the module keeps floating floating,
  // embeddings quantized as mlx-lm quantizes them unless `ignore` names them.
  static nlohmann::json export_mlx_lm(const torch::jit::Module& source, const torch::jit::Module& model,
                                      const mcompress::Params& p,
                                      const std::filesystem::path& dir) {
    mcompress::MlxLmOptions options;
    options.bits = int(p.get_int("bits"));
    options.group_size = int(p.get_int("group_size"));
    for (const auto& layer : mcompress::quantized_layers(model))
      options.quantized[layer.path] = {layer.packed, layer.scales, layer.biases, layer.bits, layer.group_size};
    for (const auto& layer : mcompress::find_linear_layers(model)) options.keep_float.push_back(layer.path);
    for (const auto& pattern : p.get_strings("ignore")) options.keep_float.push_back(pattern);
    // "keep": the module's own dtype, so the export holds what the stage's model computes with.
    const std::string dtype = p.get_string("dtype");
    const auto parameters = source.parameters();
    const auto kept = parameters.begin() != parameters.end() ? (*parameters.begin()).scalar_type() : c10::kFloat;
    options.dtype = dtype != "keep"                ? dtype
                    : kept == c10::kBFloat16       ? "bfloat16"
                    : kept == c10::kHalf           ? "float16"
                                                   : "float32";
    std::vector<mcompress::SafetensorsEntry> tensors;
    for (const auto& [name, tensor] : mcompress::causal_lm_weights(source)) tensors.push_back({name, tensor, ""});
    const auto config = mcompress::updated_config_json(mcompress::causal_lm_config_json(source),
                                                       mcompress::causal_lm_config(source));
    const auto summary = mcompress::write_mlx_lm_checkpoint(tensors, config, {}, dir, options);
    return {{"directory", dir.string()},
            {"format", "mlx-lm"},
            {"tensors", summary.tensors},
            {"bytes", summary.bytes},
            {"bits_per_weight", summary.bits_per_weight},
            {"quantization", summary.quantization}};
  }

  mcompress::PassResult run(mcompress::PassContext& ctx) const override {
    const auto& p = *ctx.params;
    const int bits = int(p.get_int("bits"));
    const int group_size = int(p.get_int("group_size"));
    std::vector<Override> overrides;
    for (const auto& text : p.get_strings("overrides")) overrides.push_back(parse_override(text));
    // The schema bounds bits to [2, 8] and group_size to [32, 128]; MLX accepts only some of those.
    auto check_format = [](int b, int g, const std::string& where) {
      try {
        mcompress::runtime::check_affine_format(b, g);
      } catch (const std::invalid_argument& e) {
        throw mcompress::Error(fmt::format("mlx_quant: {}: {}", where, e.what()));
      }
    };
    check_format(bits, group_size, "parameters bits/group_size");
    for (size_t i = 0; i < overrides.size(); ++i) {
      check_format(overrides[i].bits.value_or(bits), overrides[i].group_size.value_or(group_size),
                   fmt::format("overrides entry `{}`", p.get_strings("overrides")[i]));
    }

    const auto layers = mcompress::find_linear_layers(ctx.model);
    std::vector<std::string> paths;
    for (const auto& layer : layers) paths.push_back(layer.path);
    const std::string known = fmt::format("{}", fmt::join(paths, ", "));
    auto check_matches = [&](const std::string& what, const std::string& pattern) {
      for (const auto& path : paths) {
        if (matches(pattern, path)) return;
      }
      ctx.log->warn(fmt::format("mlx_quant: {} pattern `{}` matches no linear layer (they are: {})",
                                what, pattern, known));
    };
    for (const auto& pattern : p.get_strings("targets")) check_matches("targets", pattern);
    for (const auto& pattern : p.get_strings("ignore")) check_matches("ignore", pattern);
    for (const auto& o : overrides) check_matches("overrides", o.pattern);

    std::vector<mcompress::LayerQuantization> plan;
    for (const auto& path : paths) {
      const auto& targets = p.get_strings("targets");
      const bool targeted = targets.empty() || std::any_of(targets.begin(), targets.end(),
                                                           [&](const auto& t) { return matches(t, path); });
      const auto& ignore = p.get_strings("ignore");
      const bool ignored =
          std::any_of(ignore.begin(), ignore.end(), [&](const auto& t) { return matches(t, path); });
      if (!targeted || ignored) continue;
      mcompress::LayerQuantization entry{path, bits, group_size};
      for (const auto& o : overrides) {
        if (!matches(o.pattern, path)) continue;
        if (o.bits) entry.bits = *o.bits;
        if (o.group_size) entry.group_size = *o.group_size;
      }
      plan.push_back(entry);
    }
    if (plan.empty()) {
      throw mcompress::Error(fmt::format(
          "mlx_quant: no linear layer selected (targets/ignore leave none of: {})", known.empty() ? "none" : known));
    }

    const double target_bpw = p.get_float("target_bits_per_weight");
    std::optional<mcompress::BitAllocation> allocation;
    if (target_bpw > 0) {
      mcompress::BitAllocationOptions mixed;
      mixed.low_bits = bits;
      mixed.high_bits = p.get_int("high_bits") > 0 ? int(p.get_int("high_bits")) : (bits == 6 ? 8 : bits + 1);
      mixed.group_size = group_size;
      mixed.target_bits_per_weight = target_bpw;
      mixed.progress = ctx.progress;
      std::vector<std::string> planned;
      for (const auto& entry : plan) planned.push_back(entry.path);
      try {
        allocation = mcompress::allocate_bits_by_sensitivity(
            ctx.model, planned, calibration_batches(ctx, "target_bits_per_weight", ", or leave it at 0"), mixed);
      } catch (const mcompress::Error& e) {
        throw mcompress::Error(fmt::format("mlx_quant: {}", e.what()));
      }
      for (size_t i = 0; i < plan.size(); ++i) {
        plan[i].bits = allocation->plan[i].bits;
        for (const auto& o : overrides)  // explicit settings win over the allocation
          if (matches(o.pattern, plan[i].path) && o.bits) plan[i].bits = *o.bits;
      }
    }

    mcompress::QuantizationOptions options;
    options.storage_dtype = storage_dtype(p.get_string("dtype"));
    const std::string method = p.get_string("method");
    const torch::jit::Module source = ctx.model;  // the floating model, for the mlx-lm export
    std::optional<mcompress::GptqModelResult> gptq;
    int64_t calibration_samples = 0;
    if (method == "gptq") {
      const auto batches = calibration_batches(ctx, "method gptq", ", or use method: rtn");
      for (const auto& batch : batches) calibration_samples += batch.size(0);
      mcompress::GptqCalibrationOptions gptq_options;
      gptq_options.gptq.damp = p.get_float("gptq_damp");
      gptq_options.gptq.storage_dtype = options.storage_dtype;
      gptq_options.sequential = p.get_bool("gptq_sequential");
      gptq_options.progress = ctx.progress;
      gptq = mcompress::gptq_quantize_layers(ctx.model, plan, batches, gptq_options);
      for (size_t i = 0; i < plan.size(); ++i) {
        const auto& layer = gptq->layers[i];
        if (layer.weight) options.precomputed.emplace(layer.path, *layer.weight);
        // Damping raised, or no calibration row reached the layer (skipped
        // layers are reported by the quantizer below).
        if (!layer.skipped && !layer.note.empty()) {
          ctx.log->warn(fmt::format("mlx_quant: {}: {}", layer.path, layer.note));
        }
      }
    }
    auto quantized = mcompress::quantize_linear_layers(ctx.model, plan, options);

    nlohmann::json table = nlohmann::json::array();
    int64_t quantized_count = 0, weights = 0, before = 0, after = 0;
    std::vector<std::string> skipped;
    for (size_t i = 0; i < quantized.layers.size(); ++i) {
      const auto& layer = quantized.layers[i];
      table.push_back({{"layer", layer.path},
                       {"in_features", layer.in_features},
                       {"out_features", layer.out_features},
                       {"bits", layer.bits},
                       {"group_size", layer.group_size},
                       {"quantized", layer.quantized},
                       {"reason", layer.reason},
                       {"bytes_before", layer.bytes_before},
                       {"bytes_after", layer.bytes_after},
                       {"max_abs_error", layer.max_abs_error},
                       {"rms_error", layer.rms_error}});
      if (layer.quantized) table.back()["method"] = options.precomputed.count(layer.path) ? "gptq" : "rtn";
      if (gptq && gptq->layers[i].weight) {
        const auto& g = gptq->layers[i];
        // Output errors on the calibration inputs the layer saw: GPTQ's, and rounding to nearest's.
        table.back()["calibration_rows"] = g.calibration_rows;
        table.back()["output_mse"] = g.output_mse;
        table.back()["rtn_output_mse"] = g.rtn_output_mse;
        table.back()["gptq_damp"] = g.report.damp;
        table.back()["gptq_round"] = g.round;
      }
      before += layer.bytes_before;
      after += layer.bytes_after;
      if (layer.quantized) {
        ++quantized_count;
        weights += layer.in_features * layer.out_features;
      } else {
        skipped.push_back(fmt::format("{} ({})", layer.path, layer.reason));
        ctx.log->warn(fmt::format("mlx_quant: {} stays in floating point: {}", layer.path, layer.reason));
      }
    }
    if (quantized_count == 0) {
      throw mcompress::Error("mlx_quant: none of the selected layers could be quantized: " +
                             fmt::format("{}", fmt::join(skipped, "; ")));
    }
    ctx.model = quantized.model;

    mcompress::PassResult result;
    int64_t quantized_bytes = 0;
    for (const auto& layer : quantized.layers) {
      if (layer.quantized) quantized_bytes += layer.bytes_after;
    }
    result.stats = {{"layers", table},
                    {"quantized_layers", quantized_count},
                    {"skipped_layers", int64_t(skipped.size())},
                    {"quantized_weights", weights},
                    {"bits_per_weight", 8.0 * double(quantized_bytes) / double(weights)},
                    {"linear_bytes_before", before},
                    {"linear_bytes_after", after},
                    {"method", method}};
    if (gptq) {
      result.stats["calibration_samples"] = calibration_samples;
      result.stats["calibration_passes"] = gptq->calibration_passes;
    }
    if (allocation) {
      nlohmann::json sensitivity = nlohmann::json::array();
      for (const auto& layer : allocation->layers)
        sensitivity.push_back({{"layer", layer.path}, {"kl", layer.kl}, {"weights", layer.weights}, {"bits", layer.bits}});
      result.stats["mixed_precision"] = {{"target_bits_per_weight", target_bpw},
                                         {"allocated_bits_per_weight", allocation->bits_per_weight},
                                         {"layers", sensitivity}};
    }
    if (p.get_bool("export_mlx") && mcompress::is_causal_lm(source)) {
      result.stats["mlx_export"] = export_mlx_lm(source, ctx.model, p, ctx.artifact_dir / "mlx");
    } else if (p.get_bool("export_mlx")) {
      mcompress::MlxExportOptions export_options;
      export_options.bits = bits;
      export_options.group_size = group_size;
      export_options.extra_config = {{"mcompress", {{"layers", table}}}};
      const auto dir = ctx.artifact_dir / "mlx";
      const auto summary = mcompress::write_mlx_directory(ctx.model, dir, export_options);
      result.stats["mlx_export"] = {{"directory", dir.string()},
                                    {"tensors", summary.tensors},
                                    {"bytes", summary.bytes},
                                    {"quantization", summary.quantization}};
    }
    result.summary = fmt::format("{}/{} linear layers to {} bits (group {}, {}), {:.2f} bits/weight, "
                                 "{:.2f} MB -> {:.2f} MB{}",
                                 quantized_count, quantized.layers.size(), bits, group_size, method,
                                 result.stats["bits_per_weight"].get<double>(), before / 1e6,
                                 after / 1e6,
                                 skipped.empty() ? "" : "; skipped " + fmt::format("{}", fmt::join(skipped, "; ")));
    return result;
  }

 private:
  mcompress::PassInfo info_;
};

void register_passes(mcompress::PassRegistry& registry) {
  registry.add(std::make_unique<MlxQuantPass>());
}

}  // namespace

MCOMPRESS_PLUGIN("mlx_quant", "1.0.0", register_passes)
