// int8_quant: static post-training int8 quantization of convolutions and
// linear layers (LibTorch's quantized ops, oneDNN engine), calibrated on the
// run's calibration data. Thin: params -> quantize_static_int8
// (mcompress/quantization/static_int8.h), whose output is a plain TorchScript
// model that PyTorch loads without mcompress.
#include <fnmatch.h>

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "mcompress/quantization/static_int8.h"
#include "mcompress/sdk/error.h"
#include "mcompress/sdk/plugin.h"

namespace {

mcompress::PassInfo make_info() {
  using mcompress::ParamSpec;
  mcompress::PassInfo info;
  info.name = "int8_quant";
  info.summary =
      "Static post-training int8 quantization of convolutions and linear layers (calibrated activations, "
      "per-channel weights; a plain TorchScript model on LibTorch's oneDNN quantized ops)";
  info.kind = mcompress::PassKind::Quantize;
  info.needs.calibration_data = true;
  info.params = {
      ParamSpec::Int("calibration_batches", 8, 1, 100000,
                     "calibration batches the activation ranges are recorded over (the first of the run's "
                     "calibration data, in order)"),
      ParamSpec::Int("calibration_batch_size", 32, 1, 65536, "samples per calibration batch"),
      ParamSpec::Choice("observer", "minmax", {"minmax", "percentile"},
                        "minmax: the smallest and largest activation seen; percentile: per batch the "
                        "`percentile`-th and (100 - percentile)-th, averaged over batches (clips outliers)"),
      ParamSpec::Float("percentile", 99.99, 50.0, 100.0, "percentile observer: the high percentile"),
      ParamSpec::StringList("ignore", {},
                            "glob patterns of layers (module paths, e.g. 'conv1' or 'layer4.*') to keep "
                            "in floating point"),
  };
  return info;
}

class Int8Quant final : public mcompress::Pass {
 public:
  const mcompress::PassInfo& info() const override {
    static const mcompress::PassInfo pass_info = make_info();
    return pass_info;
  }

  mcompress::PassResult run(mcompress::PassContext& ctx) const override {
    const auto& p = *ctx.params;
    if (!ctx.calibration || ctx.calibration->size() == 0) {
      throw mcompress::Error(
          "int8_quant needs calibration data to record activation ranges, and the run has none: add a `data:` "
          "section to the recipe (its first calibration_size training samples calibrate)");
    }
    if (ctx.calibration->is_token_sequence()) {
      throw mcompress::Error("int8_quant quantizes CNNs and other float-input models; this run's data are "
                             "token windows (use mlx_quant for language models)");
    }
    const int64_t batch_size = p.get_int("calibration_batch_size");
    const int64_t samples = std::min(p.get_int("calibration_batches") * batch_size, ctx.calibration->size());
    std::vector<torch::Tensor> batches;
    for (int64_t start = 0; start < samples; start += batch_size) {
      batches.push_back(ctx.calibration->inputs.narrow(0, start, std::min(batch_size, samples - start)));
    }

    mcompress::StaticInt8Options options;
    options.ignore = p.get_strings("ignore");
    options.observer = p.get_string("observer") == "percentile" ? mcompress::RangeObserver::Percentile
                                                                 : mcompress::RangeObserver::MinMax;
    options.percentile = p.get_float("percentile");
    mcompress::StaticInt8Model quantized;
    try {
      quantized = mcompress::quantize_static_int8(ctx.model, batches, options);
    } catch (const mcompress::Error& e) {
      throw mcompress::Error(fmt::format("int8_quant: {}", e.what()));
    }

    nlohmann::json table = nlohmann::json::array();
    int64_t quantized_count = 0, before = 0, after = 0;
    std::vector<std::string> skipped;
    for (const auto& layer : quantized.layers) {
      table.push_back({{"layer", layer.name},
                       {"op", layer.op},
                       {"quantized", layer.quantized},
                       {"fused", layer.fused},
                       {"reason", layer.reason},
                       {"bytes_before", layer.bytes_before},
                       {"bytes_after", layer.bytes_after}});
      before += layer.bytes_before;
      after += layer.bytes_after;
      if (layer.quantized) {
        ++quantized_count;
      } else {
        skipped.push_back(fmt::format("{} ({})", layer.name, layer.reason));
        ctx.log->warn(fmt::format("int8_quant: {} stays in floating point: {}", layer.name, layer.reason));
      }
    }
    for (const auto& pattern : options.ignore) {
      const bool used = std::any_of(quantized.layers.begin(), quantized.layers.end(), [&](const auto& layer) {
        return fnmatch(pattern.c_str(), layer.name.c_str(), 0) == 0;
      });
      if (!used) ctx.log->warn(fmt::format("int8_quant: ignore pattern `{}` matches no layer", pattern));
    }
    if (quantized_count == 0) {
      throw mcompress::Error(fmt::format("int8_quant: no layer was quantized{}",
                                         skipped.empty() ? " (the model has no convolution or linear layer)"
                                                         : ": " + fmt::format("{}", fmt::join(skipped, "; "))));
    }
    ctx.model = quantized.model;

    mcompress::PassResult result;
    result.stats = {{"layers", table},
                    {"quantized_layers", quantized_count},
                    {"skipped_layers", int64_t(skipped.size())},
                    {"float_ops", quantized.float_ops},
                    {"quantize_calls", quantized.quantize_calls},
                    {"dequantize_calls", quantized.dequantize_calls},
                    {"calibration_samples", samples},
                    {"observer", p.get_string("observer")},
                    {"weight_bytes_before", before},
                    {"weight_bytes_after", after}};
    result.summary = fmt::format(
        "{}/{} layers to int8, weights {:.2f} MB -> {:.2f} MB, {} quantize / {} dequantize in forward{}{}",
        quantized_count, quantized.layers.size(), before / 1e6, after / 1e6, quantized.quantize_calls,
        quantized.dequantize_calls,
        quantized.float_ops.empty() ? "" : fmt::format("; float ops: {}", fmt::join(quantized.float_ops, ", ")),
        skipped.empty() ? "" : fmt::format("; skipped {}", fmt::join(skipped, "; ")));
    return result;
  }
};

void register_passes(mcompress::PassRegistry& registry) {
  registry.add(std::make_unique<Int8Quant>());
}

}  // namespace

MCOMPRESS_PLUGIN("int8_quant", "1.0.0", register_passes)
