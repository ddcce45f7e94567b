#include "mcompress/formats/hf_model.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <optional>

#include "mcompress/models/causal_lm.h"
#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

std::optional<c10::ScalarType> dtype_named(const std::string& name) {
  if (name == "float32") return torch::kFloat;
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "float16") return torch::kHalf;
  return std::nullopt;
}

std::string dtype_name(c10::ScalarType type) {
  switch (type) {
    case torch::kFloat: return "float32";
    case torch::kBFloat16: return "bfloat16";
    case torch::kHalf: return "float16";
    default: return c10::toString(type);
  }
}

// The dtype most of the checkpoint's floating-point bytes are stored in.
c10::ScalarType stored_dtype(const HfCheckpoint& checkpoint) {
  std::map<c10::ScalarType, int64_t> bytes;
  for (const auto& [name, entry] : checkpoint.tensors)
    if (entry.tensor.is_floating_point()) bytes[entry.tensor.scalar_type()] += entry.tensor.nbytes();
  c10::ScalarType most = torch::kFloat;
  int64_t most_bytes = -1;
  for (const auto& [type, count] : bytes)
    if (count > most_bytes) most = type, most_bytes = count;
  return most;
}

}  // namespace

c10::ScalarType hf_compute_dtype(const std::string& name, const HfCheckpoint& checkpoint) {
  if (name == "checkpoint") {
    const c10::ScalarType stored = stored_dtype(checkpoint);
    // float64 (or anything else) checkpoints compute in float32.
    return dtype_named(dtype_name(stored)).value_or(torch::kFloat);
  }
  if (auto type = dtype_named(name)) return *type;
  throw Error(fmt::format("compute dtype '{}' is not one of float32, bfloat16, float16, checkpoint", name));
}

torch::jit::Module load_hf_model(const std::filesystem::path& directory, const std::string& dtype) {
  try {
    const HfCheckpoint checkpoint = read_hf_checkpoint(directory);
    const TransformerConfig config =
        parse_transformer_config(checkpoint.config_json, (directory / "config.json").string());
    if (nlohmann::json::parse(checkpoint.config_json).contains("quantization"))
      throw Error(
          "config.json has \"quantization\": this is a model mlx-lm (or `mcompress quantize`) quantized, whose "
          "layers are packed codes. Recipes and `mcompress benchmark` load floating checkpoints: use the one it was "
          "converted from, or convert it to other bits with `mcompress quantize`");
    const c10::ScalarType compute_dtype = hf_compute_dtype(dtype, checkpoint);
    std::map<std::string, torch::Tensor> weights;
    for (const auto& [name, entry] : checkpoint.tensors) weights.emplace(name, entry.tensor);
    return build_causal_lm(config, checkpoint.config_json, weights, compute_dtype);
  } catch (const Error& e) {
    throw Error(fmt::format("cannot load the Hugging Face model in '{}': {}", directory.string(), e.what()));
  } catch (const c10::Error& e) {
    throw Error(fmt::format("cannot load the Hugging Face model in '{}': {}", directory.string(),
                            e.what_without_backtrace()));
  }
}

namespace {

// Why `weights` cannot be written as the checkpoint of `config`; empty when
// they can. Stock loaders build every layer from the one config: the tensors
// must have the shapes it implies, in every layer, and be floating point.
std::string unwritable_reason(const std::map<std::string, torch::Tensor>& weights, const TransformerConfig& config) {
  const std::vector<ExpectedTensor> expected = expected_tensors(config);
  for (const ExpectedTensor& tensor : expected) {
    auto found = weights.find(tensor.name);
    if (found == weights.end()) return fmt::format("it has no parameter '{}'", tensor.name);
    if (!found->second.is_floating_point())
      return fmt::format("'{}' is {}, not floating point", tensor.name, c10::toString(found->second.scalar_type()));
    if (found->second.sizes() != at::IntArrayRef(tensor.shape))
      return fmt::format("'{}' has shape [{}] but the other layers imply [{}]; a checkpoint stock loaders read "
                         "needs the same shapes in every layer",
                         tensor.name, fmt::join(found->second.sizes(), ", "), fmt::join(tensor.shape, ", "));
  }
  if (weights.size() != expected.size())
    for (const auto& [name, tensor] : weights)
      if (std::none_of(expected.begin(), expected.end(), [&](const ExpectedTensor& e) { return e.name == name; }))
        return fmt::format("its parameter '{}' has no place in a checkpoint of its config", name);
  return "";
}

}  // namespace

bool writable_as_checkpoint(const torch::jit::Module& model) {
  if (!is_causal_lm(model)) return false;
  try {
    return unwritable_reason(causal_lm_weights(model), causal_lm_config(model)).empty();
  } catch (...) {
    // A module whose structure no longer reads as a causal LM (layers
    // replaced, tensors frozen into constants).
    return false;
  }
}

void save_hf_model(const torch::jit::Module& model, const std::filesystem::path& directory,
                   const std::filesystem::path& source_directory, c10::ScalarType storage_dtype) {
  TransformerConfig config = causal_lm_config(model);
  const std::map<std::string, torch::Tensor> weights = causal_lm_weights(model);
  if (const std::string reason = unwritable_reason(weights, config); !reason.empty())
    throw Error(fmt::format("cannot save the model to '{}': {}", directory.string(), reason));
  if (storage_dtype == c10::ScalarType::Undefined) {
    if (auto type = dtype_named(config.torch_dtype)) {
      storage_dtype = *type;
    } else {
      storage_dtype = weights.begin()->second.scalar_type();
    }
  }
  if (storage_dtype != torch::kFloat && storage_dtype != torch::kBFloat16 && storage_dtype != torch::kHalf)
    throw Error(fmt::format("a checkpoint is stored in float32, bfloat16 or float16, not {}",
                            c10::toString(storage_dtype)));
  config.torch_dtype = dtype_name(storage_dtype);

  torch::NoGradGuard no_grad;
  std::vector<SafetensorsEntry> entries;
  for (const ExpectedTensor& expected : expected_tensors(config))
    entries.push_back(
        {expected.name, weights.at(expected.name).detach().to(torch::kCPU, storage_dtype).contiguous(), ""});
  HfWriteOptions options;
  options.copy_files_from = source_directory;
  write_hf_checkpoint(directory, updated_config_json(causal_lm_config_json(model), config), entries, options);
}

}  // namespace mcompress
