// `mcompress quantize MODEL --bits B`: MLX quantization without a recipe.
// A checkpoint directory (Hugging Face, or mlx-lm's at other settings)
// becomes the directory mlx-lm's converter writes; a TorchScript file
// becomes a TorchScript file with MLX-format quantized linear layers.
#include "cli_support.h"
#include "commands/commands.h"

#include <unistd.h>

#include <torch/script.h>

#include <boost/program_options.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <iostream>
#include <regex>

#include "mcompress/formats/mlx_lm_checkpoint.h"
#include "mcompress/framework/run/input_error.h"
#include "mcompress/framework/support/child_process.h"
#include "mcompress/framework/support/terminal.h"
#include "mcompress/quantization/quantized_model.h"
#include "mcompress/runtime/affine_quantization.h"
#include "mcompress/sdk/error.h"

namespace mcompress::cli {
namespace {

struct QuantizeOptions {
  std::string model;
  std::string out;
  int bits = 4;
  int group_size = 64;
  std::string dtype;
  std::vector<std::string> keep_float;
  std::vector<std::string> layers;
  bool force = false;
};

// "PATTERN: bits=B group_size=G" (either setting may be left out).
std::pair<std::string, MlxLayerSettings> parse_layer_setting(const std::string& text, const QuantizeOptions& o) {
  static const std::regex entry(R"(^\s*([^:\s]+)\s*:\s*(.*)$)");
  static const std::regex setting(R"(^(bits|group_size)=(\d{1,3})$)");
  std::smatch m;
  if (!std::regex_match(text, m, entry))
    throw InputError(fmt::format("--layer `{}` is not of the form 'PATTERN: bits=B group_size=G'", text));
  MlxLayerSettings settings{o.bits, o.group_size};
  std::istringstream words(m[2].str());
  bool any = false;
  for (std::string word; words >> word;) {
    std::smatch s;
    if (!std::regex_match(word, s, setting))
      throw InputError(fmt::format("--layer `{}`: `{}` is not bits=B or group_size=G", text, word));
    (s[1] == "bits" ? settings.bits : settings.group_size) = std::stoi(s[2]);
    any = true;
  }
  if (!any) throw InputError(fmt::format("--layer `{}` sets neither bits nor group_size", text));
  return {m[1], settings};
}

fs::path default_output(const QuantizeOptions& o) {
  auto name = fs::absolute(o.model).lexically_normal();
  if (!name.has_filename()) name = name.parent_path();
  if (fs::is_directory(o.model)) return fs::path(fmt::format("{}-mlx-{}bit", name.filename().string(), o.bits));
  return fs::path(fmt::format("{}-{}bit.pt", name.stem().string(), o.bits));
}

nlohmann::json quantize_checkpoint(const QuantizeOptions& o, const fs::path& out, Progress& progress) {
  MlxLmOptions options;
  options.bits = o.bits;
  options.group_size = o.group_size;
  options.dtype = o.dtype;
  options.keep_float = o.keep_float;
  for (const auto& text : o.layers) options.layer_settings.push_back(parse_layer_setting(text, o));
  options.progress = &progress;
  MlxLmSummary summary;
  try {
    summary = convert_to_mlx_lm(o.model, out, options);
  } catch (const Error& e) {
    throw InputError(fmt::format("cannot quantize {}: {}", o.model, e.what()));
  }
  nlohmann::json layers = nlohmann::json::array();
  int64_t quantized = 0;
  for (const auto& layer : summary.layers) {
    quantized += layer.quantized;
    layers.push_back({{"layer", layer.path},
                      {"out_features", layer.out_features},
                      {"in_features", layer.in_features},
                      {"bits", layer.quantized ? layer.bits : 0},
                      {"group_size", layer.quantized ? layer.group_size : 0},
                      {"reason", layer.reason}});
  }
  return {{"format", "mlx-lm"},
          {"quantized_layers", quantized},
          {"layers", layers},
          {"tensors", summary.tensors},
          {"bytes", summary.bytes},
          {"parameters", summary.parameters},
          {"bits_per_weight", summary.bits_per_weight},
          {"quantization", summary.quantization}};
}

nlohmann::json quantize_torchscript(const QuantizeOptions& o, const fs::path& out) {
  if (!o.layers.empty() || !o.keep_float.empty() || !o.dtype.empty())
    throw InputError("--layer, --keep-float and --dtype apply to checkpoint directories; for a TorchScript file "
                     "use the mlx_quant pass in a recipe (`mcompress explain mlx_quant`)");
  torch::jit::Module model;
  try {
    model = torch::jit::load(o.model);
  } catch (const c10::Error& e) {
    throw InputError(fmt::format("cannot load {} as TorchScript: {}", o.model, e.what_without_backtrace()));
  }
  std::vector<LayerQuantization> plan;
  for (const auto& layer : find_linear_layers(model)) plan.push_back({layer.path, o.bits, o.group_size});
  if (plan.empty()) throw InputError(fmt::format("{} has no linear layers to quantize", o.model));
  QuantizedModel quantized;
  try {
    quantized = quantize_linear_layers(model, plan);
  } catch (const Error& e) {
    throw InputError(fmt::format("cannot quantize {}: {}", o.model, e.what()));
  }
  const auto temp = fs::path(out.string() + fmt::format(".tmp-{}", ::getpid()));
  quantized.model.save(temp.string());
  fs::rename(temp, out);
  int64_t count = 0, before = 0, after = 0;
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& layer : quantized.layers) {
    count += layer.quantized;
    before += layer.bytes_before;
    after += layer.bytes_after;
    layers.push_back({{"layer", layer.path}, {"bits", layer.quantized ? layer.bits : 0}, {"reason", layer.reason}});
  }
  return {{"format", "torchscript"},
          {"quantized_layers", count},
          {"layers", layers},
          {"linear_bytes_before", before},
          {"linear_bytes_after", after},
          {"bytes", int64_t(fs::file_size(out))}};
}

}  // namespace

int command_quantize(const std::vector<std::string>& args) {
  CommonOptions common;
  QuantizeOptions o;
  po::options_description desc(
      "mcompress quantize MODEL --bits B [options]\n"
      "MODEL: a Hugging Face checkpoint directory (or one mlx-lm quantized already) or a TorchScript\n"
      "file. A checkpoint becomes the directory mlx-lm's converter writes (mlx_lm.load reads it),\n"
      "converted tensor by tensor; a TorchScript file gets MLX-format quantized linear layers.\n"
      "Group-wise affine quantization, bit for bit MLX's");
  desc.add_options()("model", po::value(&o.model), "the model")(
      "bits", po::value(&o.bits)->default_value(o.bits), "bits per weight: 2, 3, 4, 5, 6 or 8")(
      "group-size", po::value(&o.group_size)->default_value(o.group_size),
      "weights sharing one scale and bias: 32, 64 or 128")(
      "out", po::value(&o.out), "output directory (checkpoints) or file (TorchScript); default: "
                                "MODEL-mlx-<B>bit or MODEL-<B>bit.pt in the current directory")(
      "dtype", po::value(&o.dtype), "checkpoints: cast floating weights (and scales) to float16, bfloat16 "
                                    "or float32; default: config.json's torch_dtype, as mlx-lm")(
      "keep-float", po::value(&o.keep_float)->multitoken(),
      "checkpoints: glob patterns of module paths left in floating point (e.g. lm_head)")(
      "layer", po::value(&o.layers)->multitoken(),
      "checkpoints: per-layer settings 'PATTERN: bits=B group_size=G' (later entries win)")(
      "force", po::bool_switch(&o.force), "replace the output if it exists");
  add_common(desc, common);
  if (auto done = parse_single_positional(args, desc, "model", o.model)) return *done;
  if (!fs::exists(o.model))
    throw InputError(fmt::format("{} not found; MODEL is a checkpoint directory or a TorchScript file", o.model));
  try {
    runtime::check_affine_format(o.bits, o.group_size);
  } catch (const std::invalid_argument& e) {
    throw InputError(fmt::format("--bits {} --group-size {}: {}", o.bits, o.group_size, e.what()));
  }
  const fs::path out = o.out.empty() ? default_output(o) : fs::path(o.out);
  if (fs::exists(out) && !o.force)
    throw InputError(fmt::format("{} exists; remove it, choose another --out, or pass --force to replace it",
                                 out.string()));

  TerminalProgress progress(common.quiet || common.json);
  const auto started = std::chrono::steady_clock::now();
  nlohmann::json result = fs::is_directory(o.model) ? quantize_checkpoint(o, out, progress) : quantize_torchscript(o, out);
  result["model"] = o.model;
  result["out"] = out.string();
  result["bits"] = o.bits;
  result["group_size"] = o.group_size;
  result["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  result["peak_rss_mb"] = peak_resident_memory_mb(::getpid());

  if (common.json) {
    std::cout << result.dump(2) << "\n";
    return kExitOk;
  }
  if (common.quiet) return kExitOk;
  std::vector<std::string> floating;
  for (const auto& layer : result["layers"])
    if (layer["bits"] == 0) floating.push_back(fmt::format("{} ({})", layer["layer"].get<std::string>(), layer["reason"].get<std::string>()));
  std::cout << fmt::format("{} -> {} ({})\n", o.model, out.string(), result["format"].get<std::string>());
  std::cout << fmt::format("  {} of {} layers to {} bits, group {}", result["quantized_layers"].get<int64_t>(),
                           result["layers"].size(), o.bits, o.group_size);
  if (result.contains("bits_per_weight"))
    std::cout << fmt::format(", {:.3f} bits per weight", result["bits_per_weight"].get<double>());
  std::cout << fmt::format("\n  {:.1f} MB written in {:.1f} s, peak memory {:.0f} MB\n",
                           result["bytes"].get<int64_t>() / 1e6, result["seconds"].get<double>(),
                           result["peak_rss_mb"].get<double>());
  for (const auto& layer : floating) std::cout << "  kept in floating point: " << layer << "\n";
  return kExitOk;
}

}  // namespace mcompress::cli
