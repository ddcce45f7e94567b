#include "mcompress/formats/mlx_lm_checkpoint.h"

#include <fnmatch.h>

#include <algorithm>
#include <cctype>
#include <optional>
#include <regex>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "mcompress/formats/checkpoint_writer.h"
#include "mcompress/runtime/affine_quantization.h"
#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;

// Rows quantized at a time: the float copy of a large embedding is made a
// slice at a time rather than whole.
constexpr int64_t kRowsPerSlice = 8192;

bool matches_any(const std::vector<std::string>& patterns, const std::string& path) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::string& p) { return fnmatch(p.c_str(), path.c_str(), 0) == 0; });
}

std::string module_of(const std::string& tensor_name) {
  const auto dot = tensor_name.rfind('.');
  return dot == std::string::npos ? "" : tensor_name.substr(0, dot);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::optional<c10::ScalarType> dtype_named(const std::string& name) {
  if (name == "float16") return c10::kHalf;
  if (name == "bfloat16") return c10::kBFloat16;
  if (name == "float32") return c10::kFloat;
  return std::nullopt;
}

// The dtype mlx-lm casts floating weights to: the option, else config.json's
// torch_dtype (transformers' newer "dtype" too), else none.
std::optional<c10::ScalarType> target_dtype(const MlxLmOptions& options, const nlohmann::json& config) {
  if (!options.dtype.empty()) {
    auto dtype = dtype_named(options.dtype);
    if (!dtype)
      throw Error(fmt::format("dtype `{}` is not one mlx-lm converts to; use float16, bfloat16 or float32",
                              options.dtype));
    return dtype;
  }
  for (const char* key : {"torch_dtype", "dtype"}) {
    auto it = config.find(key);
    if (it != config.end() && it->is_string())
      if (auto dtype = dtype_named(it->get<std::string>())) return dtype;
  }
  return std::nullopt;
}

// MLX's quantization of a weight [..., in] in its own dtype, a slice of rows at a time.
runtime::QuantizedWeight quantize_rows(const torch::Tensor& weight, int bits, int group_size) {
  const auto shape = weight.sizes().vec();
  const auto rows = weight.reshape({-1, shape.back()});
  std::vector<torch::Tensor> packed, scales, biases;
  for (int64_t first = 0; first < rows.size(0); first += kRowsPerSlice) {
    auto q = runtime::quantize_weight(rows.narrow(0, first, std::min(kRowsPerSlice, rows.size(0) - first)), bits,
                                      group_size);
    packed.push_back(q.packed);
    scales.push_back(q.scales);
    biases.push_back(q.biases);
  }
  auto leading = shape;
  leading.pop_back();
  auto with_last = [&](int64_t last) {
    auto s = leading;
    s.push_back(last);
    return s;
  };
  runtime::QuantizedWeight q;
  q.bits = bits;
  q.group_size = group_size;
  q.packed = torch::cat(packed).reshape(with_last(runtime::packed_words(shape.back(), bits)));
  q.scales = torch::cat(scales).reshape(with_last(shape.back() / group_size));
  q.biases = torch::cat(biases).reshape(with_last(shape.back() / group_size));
  return q;
}

// Mixtral's experts, which mlx-lm holds stacked: the pieces of one stacked
// tensor are gathered until every expert has arrived.
struct ExpertStack {
  std::vector<torch::Tensor> pieces;  // per expert: the float weight, or packed words
  std::vector<torch::Tensor> scales, biases;
  int64_t arrived = 0;
  int64_t out_features = 0, in_features = 0;
};

const std::regex kExpertWeight(R"(^(model\.layers\.\d+\.block_sparse_moe)\.experts\.(\d+)\.(w1|w2|w3)\.weight$)");

std::string stacked_module(const std::string& moe, const std::string& w) {
  const char* name = w == "w1" ? "gate_proj" : w == "w2" ? "down_proj" : "up_proj";
  return moe + ".switch_mlp." + name;
}

class Converter {
 public:
  Converter(const std::string& config_json, const fs::path& companions_from, const fs::path& directory,
            const MlxLmOptions& options)
      : options_(options), companions_from_(companions_from) {
    try {
      config_ = nlohmann::json::parse(config_json);
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("config.json is not valid JSON ({})", e.what()));
    }
    if (!config_.is_object()) throw Error("config.json must be a JSON object");
    check_format(options.bits, options.group_size, "the default");
    for (const auto& [pattern, s] : options.layer_settings) check_format(s.bits, s.group_size, pattern);
    dtype_ = target_dtype(options, config_);
    tied_ = config_.value("tie_word_embeddings", false);
    experts_ = config_.value("num_local_experts", int64_t{0});
    quantization_ = {{"group_size", options.group_size}, {"bits", options.bits}, {"mode", "affine"}};
    HfWriteOptions write;
    write.max_shard_bytes = options.max_shard_bytes;
    write.file_metadata = {{"format", "mlx"}};
    write.copy_files_from = companions_from;
    writer_ = std::make_unique<HfCheckpointWriter>(directory, write);
  }

  void add(const SafetensorsEntry& entry) {
    const std::string& name = entry.name;
    // What mlx-lm's sanitize drops.
    if (name.find("self_attn.rotary_emb.inv_freq") != std::string::npos) return;
    if (tied_ && name == "lm_head.weight") return;
    torch::Tensor tensor = entry.tensor;
    if (dtype_ && tensor.is_floating_point()) tensor = tensor.to(*dtype_);

    std::smatch m;
    if (experts_ > 0 && std::regex_match(name, m, kExpertWeight)) {
      add_expert(m[1], std::stoll(m[2]), m[3], tensor);
      return;
    }
    const std::string path = module_of(name);
    if (ends_with(name, ".weight") && (tensor.dim() >= 2 || options_.quantized.count(path))) {
      add_layer(path, tensor);
      return;
    }
    summary_.parameters += tensor.numel();
    put(name, tensor);
  }

  MlxLmSummary finish() {
    for (const auto& [module, stack] : stacks_)
      if (stack.arrived != experts_)
        throw Error(fmt::format("{}: {} of {} experts found; the checkpoint is incomplete", module, stack.arrived,
                                experts_));
    config_.erase("_name_or_path");
    config_.erase("vision_config");
    config_["quantization"] = quantization_;
    config_["quantization_config"] = quantization_;
    summary_.quantization = quantization_;
    summary_.bytes = writer_->tensor_bytes();
    summary_.bits_per_weight = summary_.parameters ? 8.0 * double(summary_.bytes) / double(summary_.parameters) : 0;
    writer_->commit(config_.dump(4), {{"total_parameters", summary_.parameters}}, 4);
    return summary_;
  }

 private:
  static void check_format(int bits, int group_size, const std::string& where) {
    try {
      runtime::check_affine_format(bits, group_size);
    } catch (const std::invalid_argument& e) {
      throw Error(fmt::format("{}: {}", where, e.what()));
    }
  }

  void put(const std::string& name, const torch::Tensor& tensor, const std::string& dtype = "") {
    writer_->add({name, tensor.contiguous(), dtype});
    ++summary_.tensors;
  }

  MlxLayerSettings settings_of(const std::string& path) const {
    MlxLayerSettings settings{options_.bits, options_.group_size};
    for (const auto& [pattern, s] : options_.layer_settings)
      if (fnmatch(pattern.c_str(), path.c_str(), 0) == 0) settings = s;
    return settings;
  }

  void record_settings(const std::string& path, int bits, int group_size) {
    if (bits != options_.bits || group_size != options_.group_size)
      quantization_[path] = {{"group_size", group_size}, {"bits", bits}};
  }

  // Whether `path` (a Linear/Embedding/SwitchLinear of input size `in`) is
  // quantized; the reason when it is not.
  std::string float_reason(const std::string& path, int64_t in) const {
    if (matches_any(options_.keep_float, path)) return "kept in floating point by the options";
    // mlx-lm tests divisibility by the default group size, whatever the layer's own.
    if (in % options_.group_size != 0)
      return fmt::format("input size {} is not a multiple of the group size {}", in, options_.group_size);
    const auto s = settings_of(path);
    if (in % s.group_size != 0)
      return fmt::format("input size {} is not a multiple of its group size {}", in, s.group_size);
    return "";
  }

  void put_quantized(const std::string& path, runtime::QuantizedWeight q) {
    if (dtype_ && q.scales.scalar_type() != *dtype_) {
      q.scales = q.scales.to(*dtype_);
      q.biases = q.biases.to(*dtype_);
    }
    put(path + ".weight", q.packed, "U32");
    put(path + ".scales", q.scales);
    put(path + ".biases", q.biases);
    record_settings(path, q.bits, q.group_size);
  }

  void add_layer(const std::string& path, const torch::Tensor& weight) {
    MlxLmLayerReport report;
    report.path = path;
    auto given = options_.quantized.find(path);
    if (given != options_.quantized.end()) {
      const auto& q = given->second;
      report.out_features = q.packed.size(0);
      report.in_features = q.scales.size(-1) * q.group_size;
      report.bits = q.bits;
      report.group_size = q.group_size;
      report.quantized = true;
      summary_.parameters += report.out_features * report.in_features;
      put_quantized(path, q);
    } else {
      report.out_features = weight.numel() / weight.size(-1);
      report.in_features = weight.size(-1);
      const auto s = settings_of(path);
      report.bits = s.bits;
      report.group_size = s.group_size;
      report.reason = float_reason(path, report.in_features);
      report.quantized = report.reason.empty();
      summary_.parameters += weight.numel();
      if (report.quantized) {
        put_quantized(path, quantize_rows(weight, s.bits, s.group_size));
      } else {
        put(path + ".weight", weight);
      }
    }
    summary_.layers.push_back(report);
  }

  void add_expert(const std::string& moe, int64_t expert, const std::string& w, const torch::Tensor& weight) {
    if (expert >= experts_)
      throw Error(fmt::format("{}.experts.{}: config.json has num_local_experts = {}", moe, expert, experts_));
    const std::string path = stacked_module(moe, w);
    auto& stack = stacks_[path];
    if (stack.pieces.empty()) {
      stack.pieces.resize(experts_);
      stack.scales.resize(experts_);
      stack.biases.resize(experts_);
      stack.out_features = weight.size(0);
      stack.in_features = weight.size(1);
    }
    const auto s = settings_of(path);
    if (float_reason(path, stack.in_features).empty()) {
      auto q = quantize_rows(weight, s.bits, s.group_size);
      stack.pieces[expert] = q.packed;
      stack.scales[expert] = q.scales;
      stack.biases[expert] = q.biases;
    } else {
      stack.pieces[expert] = weight;
    }
    summary_.parameters += weight.numel();
    if (++stack.arrived < experts_) return;

    MlxLmLayerReport report{path, experts_ * stack.out_features, stack.in_features, s.bits, s.group_size};
    report.reason = float_reason(path, stack.in_features);
    report.quantized = report.reason.empty();
    if (report.quantized) {
      runtime::QuantizedWeight q;
      q.packed = torch::stack(stack.pieces);
      q.scales = torch::stack(stack.scales);
      q.biases = torch::stack(stack.biases);
      q.bits = s.bits;
      q.group_size = s.group_size;
      put_quantized(path, q);
    } else {
      put(path + ".weight", torch::stack(stack.pieces));
    }
    summary_.layers.push_back(report);
    stack = ExpertStack{};
    stack.arrived = experts_;
  }

  const MlxLmOptions& options_;
  fs::path companions_from_;
  nlohmann::json config_;
  nlohmann::json quantization_;
  std::optional<c10::ScalarType> dtype_;
  bool tied_ = false;
  int64_t experts_ = 0;
  std::map<std::string, ExpertStack> stacks_;
  std::unique_ptr<HfCheckpointWriter> writer_;
  MlxLmSummary summary_;
};

// "model.layers.10.x" after "model.layers.9.x": digit runs compare as numbers,
// so tensors are written in the model's order, as mlx-lm writes them.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      const auto na = a.substr(i, ie - i), nb = b.substr(j, je - j);
      if (na.size() != nb.size()) return na.size() < nb.size();
      if (na != nb) return na < nb;
      i = ie, j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i, ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

// A source quantized by mlx-lm already: its layers' settings by module path.
std::map<std::string, MlxLayerSettings> source_quantization(const nlohmann::json& config) {
  std::map<std::string, MlxLayerSettings> layers;
  auto it = config.find("quantization");
  if (it == config.end() || !it->is_object()) return layers;
  const MlxLayerSettings defaults{it->value("bits", 4), it->value("group_size", 64)};
  layers[""] = defaults;
  for (const auto& [key, value] : it->items())
    if (value.is_object()) layers[key] = {value.value("bits", defaults.bits), value.value("group_size", defaults.group_size)};
  return layers;
}

}  // namespace

MlxLmSummary write_mlx_lm_checkpoint(const std::vector<SafetensorsEntry>& tensors, const std::string& config_json,
                                     const fs::path& companions_from, const fs::path& directory,
                                     const MlxLmOptions& options) {
  Converter converter(config_json, companions_from, directory, options);
  if (options.progress) options.progress->start("mlx-lm", int64_t(tensors.size()));
  int64_t done = 0;
  for (const auto& entry : tensors) {
    converter.add(entry);
    if (options.progress) options.progress->update(++done, entry.name);
  }
  auto summary = converter.finish();
  if (options.progress) options.progress->finish(fmt::format("{} tensors, {:.1f} MB", summary.tensors, summary.bytes / 1e6));
  return summary;
}

MlxLmSummary convert_to_mlx_lm(const fs::path& source, const fs::path& directory, const MlxLmOptions& options) {
  const HfCheckpoint checkpoint = read_hf_checkpoint(source);
  const auto config = nlohmann::json::parse(checkpoint.config_json);
  const auto quantized_source = source_quantization(config);
  std::string config_json = checkpoint.config_json;
  if (!quantized_source.empty()) {
    auto plain = config;
    plain.erase("quantization");
    plain.erase("quantization_config");
    config_json = plain.dump();
  }

  std::vector<std::string> names;
  for (const auto& [name, entry] : checkpoint.tensors) {
    // A quantized source's scales and biases are read with their weight.
    if (!quantized_source.empty() && (ends_with(name, ".scales") || ends_with(name, ".biases")) &&
        checkpoint.tensors.count(module_of(name) + ".weight"))
      continue;
    names.push_back(name);
  }
  std::sort(names.begin(), names.end(), natural_less);

  Converter converter(config_json, source, directory, options);
  if (options.progress) options.progress->start("mlx-lm", int64_t(names.size()));
  int64_t done = 0;
  for (const auto& name : names) {
    SafetensorsEntry entry = checkpoint.tensors.at(name);
    const std::string path = module_of(name);
    auto scales = checkpoint.tensors.find(path + ".scales");
    if (!quantized_source.empty() && scales != checkpoint.tensors.end()) {
      const auto& biases = checkpoint.tensors.find(path + ".biases");
      if (biases == checkpoint.tensors.end())
        throw Error(fmt::format("{}: {}.scales without {}.biases; the MLX checkpoint is incomplete",
                                source.string(), path, path));
      auto it = quantized_source.find(path);
      const auto s = it != quantized_source.end() ? it->second : quantized_source.at("");
      const auto& packed = entry.tensor;
      const auto words = packed.size(-1);
      try {
        auto weight = runtime::dequantize_weight(packed.reshape({-1, words}), scales->second.tensor.reshape({-1, scales->second.tensor.size(-1)}),
                                                 biases->second.tensor.reshape({-1, biases->second.tensor.size(-1)}), s.bits, s.group_size);
        auto shape = packed.sizes().vec();
        shape.back() = weight.size(1);
        entry.tensor = weight.reshape(shape).to(scales->second.tensor.scalar_type());
      } catch (const std::exception& e) {
        throw Error(fmt::format("{}: layer {} ({} bits, group {}) cannot be dequantized: {}", source.string(), path,
                                s.bits, s.group_size, e.what()));
      }
      release_mapped_pages(scales->second.tensor);
      release_mapped_pages(biases->second.tensor);
      converter.add(entry);
      release_mapped_pages(packed);
    } else {
      converter.add(entry);
      release_mapped_pages(checkpoint.tensors.at(name).tensor);
    }
    if (options.progress) options.progress->update(++done, name);
  }
  auto summary = converter.finish();
  if (options.progress) options.progress->finish(fmt::format("{} tensors, {:.1f} MB", summary.tensors, summary.bytes / 1e6));
  return summary;
}

namespace {

// block_sparse_moe.switch_mlp.<projection> -> block_sparse_moe.experts.<e>.<w>
// (the inverse of the stacking above), or "" for any other module.
std::string expert_path(const std::string& path, int64_t expert) {
  static const std::regex stacked(R"(^(model\.layers\.\d+\.block_sparse_moe)\.switch_mlp\.(gate_proj|up_proj|down_proj)$)");
  std::smatch match;
  if (!std::regex_match(path, match, stacked)) return "";
  const char* w = match[2] == "gate_proj" ? "w1" : match[2] == "down_proj" ? "w2" : "w3";
  return fmt::format("{}.experts.{}.{}", match[1].str(), expert, w);
}

}  // namespace

MlxLmWeights read_mlx_lm_checkpoint(const fs::path& directory) {
  const HfCheckpoint checkpoint = read_hf_checkpoint(directory);
  MlxLmWeights result;
  result.config_json = checkpoint.config_json;
  result.config = parse_transformer_config(checkpoint.config_json, (directory / "config.json").string());
  const auto settings = source_quantization(nlohmann::json::parse(checkpoint.config_json));
  for (const auto& [name, entry] : checkpoint.tensors) {
    const std::string path = module_of(name);
    const bool has_scales = checkpoint.tensors.count(path + ".scales") > 0;
    if (has_scales && (ends_with(name, ".scales") || ends_with(name, ".biases")) &&
        checkpoint.tensors.count(path + ".weight"))
      continue;  // read with their weight
    const bool stacked = !expert_path(path, 0).empty();
    if (!has_scales || !ends_with(name, ".weight")) {
      if (!stacked) {
        result.floating[name] = entry.tensor;
        continue;
      }
      const std::string field = name.substr(path.size());  // ".weight", ".bias"
      for (int64_t e = 0; e < entry.tensor.size(0); ++e)
        result.floating[expert_path(path, e) + field] = entry.tensor.select(0, e);
      continue;
    }
    const std::string file = directory.string();
    const auto biases = checkpoint.tensors.find(path + ".biases");
    if (biases == checkpoint.tensors.end())
      throw Error(fmt::format("{}: {}.scales without {}.biases; the MLX checkpoint is incomplete", file, path, path));
    if (settings.empty())
      throw Error(fmt::format("{}: {} has scales but config.json has no \"quantization\" entry saying its bits and "
                              "group size", (directory / "config.json").string(), path));
    const auto own = settings.find(path);
    const MlxLayerSettings s = own != settings.end() ? own->second : settings.at("");
    const torch::Tensor& packed = entry.tensor;
    const torch::Tensor& scales = checkpoint.tensors.at(path + ".scales").tensor;
    const torch::Tensor& bias_terms = biases->second.tensor;
    try {
      runtime::check_affine_format(s.bits, s.group_size);
    } catch (const std::invalid_argument& e) {
      throw Error(fmt::format("{}: {}: {}", (directory / "config.json").string(), path, e.what()));
    }
    const bool consistent = packed.dim() == scales.dim() && packed.dim() >= 2 && scales.sizes() == bias_terms.sizes() &&
                            packed.sizes().slice(0, packed.dim() - 1) == scales.sizes().slice(0, scales.dim() - 1) &&
                            packed.size(-1) * 32 == scales.size(-1) * s.group_size * s.bits;
    if (!consistent)
      throw Error(fmt::format("{}: {}: codes {} and scales {} / biases {} do not make {}-bit groups of {} (as "
                              "config.json says); the checkpoint or its config is damaged",
                              file, path, fmt::join(packed.sizes(), "x"), fmt::join(scales.sizes(), "x"),
                              fmt::join(bias_terms.sizes(), "x"), s.bits, s.group_size));
    const auto quantized = [&](const torch::Tensor& p, const torch::Tensor& sc, const torch::Tensor& b) {
      return runtime::QuantizedWeight{p.contiguous(), sc.contiguous(), b.contiguous(), s.bits, s.group_size};
    };
    if (!stacked) {
      result.quantized[path] = quantized(packed, scales, bias_terms);
      continue;
    }
    for (int64_t e = 0; e < packed.size(0); ++e)
      result.quantized[expert_path(path, e)] = quantized(packed.select(0, e), scales.select(0, e), bias_terms.select(0, e));
  }
  return result;
}

}  // namespace mcompress
