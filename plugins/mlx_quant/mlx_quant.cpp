// mlx_quant: MLX-exact group-wise affine quantization of linear layers.
// Thin: it turns the recipe's layer selection into a plan; the SDK quantizes
// (quantized_model.h) and writes the MLX directory (mlx_export.h), and
// libmcompress_runtime runs the result.
#include <fnmatch.h>

#include <map>
#include <regex>
#include <sstream>

#include <fmt/format.h>

#include "mcompress/runtime/affine_quantization.h"
#include "mcompress/sdk/error.h"
#include "mcompress/formats/mlx_export.h"
#include "mcompress/sdk/plugin.h"
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

class MlxQuantPass final : public mcompress::Pass {
 public:
  MlxQuantPass() {
    using mcompress::ParamSpec;
    info_.name = "mlx_quant";
    info_.summary =
        "MLX-exact group-wise affine quantization of linear layers (2-8 bits), fast CPU kernels, MLX export";
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
        ParamSpec::Bool("export_mlx", true,
                        "also write an MLX directory (model.safetensors, config.json) to the "
                        "stage's artifacts/mlx"),
    };
  }

  const mcompress::PassInfo& info() const override { return info_; }

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

    mcompress::QuantizationOptions options;
    options.storage_dtype = storage_dtype(p.get_string("dtype"));
    auto quantized = mcompress::quantize_linear_layers(ctx.model, plan, options);

    nlohmann::json table = nlohmann::json::array();
    int64_t quantized_count = 0, weights = 0, before = 0, after = 0;
    std::vector<std::string> skipped;
    for (const auto& layer : quantized.layers) {
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
                    {"linear_bytes_after", after}};
    if (p.get_bool("export_mlx")) {
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
    result.summary = fmt::format("{}/{} linear layers to {} bits (group {}), {:.2f} bits/weight, "
                                 "{:.2f} MB -> {:.2f} MB{}",
                                 quantized_count, quantized.layers.size(), bits, group_size,
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
