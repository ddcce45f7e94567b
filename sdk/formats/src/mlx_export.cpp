#include "mcompress/formats/mlx_export.h"

#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>

#include "mcompress/sdk/error.h"
#include "mcompress/quantization/quantized_model.h"
#include "mcompress/formats/safetensors.h"

namespace mcompress {
namespace {

std::string join_path(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

void write_json(const std::filesystem::path& path, const nlohmann::json& json) {
  const auto temp = path.parent_path() / (path.filename().string() + ".tmp");
  {
    std::ofstream out(temp, std::ios::trunc);
    if (!out) throw Error(fmt::format("cannot write {}", temp.string()));
    out << json.dump(4) << "\n";
    if (!out.flush()) throw Error(fmt::format("writing {} failed", temp.string()));
  }
  std::filesystem::rename(temp, path);
}

// The most common value of `key(layer)`.
template <typename Key>
int most_common(const std::vector<QuantizedLayerView>& layers, Key key) {
  std::map<int, int> counts;
  for (const auto& layer : layers) ++counts[key(layer)];
  int best = 0, best_count = 0;
  for (const auto& [value, count] : counts) {
    if (count > best_count) best = value, best_count = count;
  }
  return best;
}

}  // namespace

MlxExportSummary write_mlx_directory(const torch::jit::Module& model,
                                     const std::filesystem::path& directory,
                                     const MlxExportOptions& options) {
  const auto layers = quantized_layers(model);
  std::map<std::string, const QuantizedLayerView*> by_path;
  for (const auto& layer : layers) by_path[layer.path] = &layer;

  std::vector<SafetensorsEntry> entries;
  std::set<std::string> written;
  auto add = [&](const std::string& name, const torch::Tensor& tensor, const std::string& dtype) {
    if (!tensor.defined() || !written.insert(name).second) return;
    entries.push_back({name, tensor, dtype});
  };
  // Tensors in module order; a quantized layer's packed words become its `weight`.
  for (const auto& named : model.named_modules()) {
    const auto type = named.value.type();
    const bool quantized = by_path.count(named.name) > 0;
    for (size_t slot = 0; slot < type->numAttributes(); ++slot) {
      const c10::IValue value = named.value._ivalue()->getSlot(slot);
      if (!value.isTensor()) continue;
      const std::string attribute = type->getAttributeName(slot);
      if (quantized && attribute == kPackedWeightName) {
        add(join_path(named.name, "weight"), value.toTensor(), "U32");
      } else {
        add(join_path(named.name, attribute), value.toTensor(), "");
      }
    }
  }
  if (entries.empty()) throw Error("the model has no tensors to export");

  MlxExportSummary summary;
  summary.tensors = int64_t(entries.size());
  summary.quantized_layers = int64_t(layers.size());
  nlohmann::json quantization = nlohmann::json::object();
  if (!layers.empty()) {
    const int bits = options.bits ? options.bits : most_common(layers, [](const auto& l) { return l.bits; });
    const int group_size = options.group_size
                               ? options.group_size
                               : most_common(layers, [](const auto& l) { return l.group_size; });
    quantization = {{"group_size", group_size}, {"bits", bits}, {"mode", "affine"}};
    for (const auto& layer : layers) {
      if (layer.bits != bits || layer.group_size != group_size) {
        quantization[layer.path] = {{"group_size", layer.group_size}, {"bits", layer.bits}};
      }
    }
  }
  summary.quantization = quantization;

  std::filesystem::create_directories(directory);
  summary.bytes = write_safetensors(directory / "model.safetensors", entries, {{"format", "mlx"}});

  int64_t tensor_bytes = 0;
  for (const auto& entry : entries) tensor_bytes += entry.tensor.numel() * int64_t(entry.tensor.element_size());
  nlohmann::json index = {{"metadata", {{"total_size", tensor_bytes}}}, {"weight_map", nlohmann::json::object()}};
  for (const auto& entry : entries) index["weight_map"][entry.name] = "model.safetensors";
  write_json(directory / "model.safetensors.index.json", index);

  nlohmann::json config = options.extra_config.is_object() ? options.extra_config : nlohmann::json::object();
  if (!quantization.empty()) {
    config["quantization"] = quantization;
    config["quantization_config"] = quantization;
  }
  write_json(directory / "config.json", config);
  return summary;
}

}  // namespace mcompress
