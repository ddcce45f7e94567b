#include "mcompress/formats/gguf.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include "gguf_vocabulary.h"
#include "mcompress/formats/ggml_blocks.h"
#include "mcompress/formats/gguf_file.h"
#include "mcompress/formats/hf_checkpoint.h"
#include "mcompress/models/transformer_config.h"
#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;

constexpr const char* kSupportedModelTypes = "llama, mistral (GGUF architecture llama), qwen2, qwen3";

// llama.cpp's file type numbers (enum llama_ftype) and the type of its matrices.
uint32_t llama_file_type(GgufFileType type) {
  switch (type) {
    case GgufFileType::F16: return 1;
    case GgufFileType::Q4_0: return 2;
    case GgufFileType::Q8_0: return 7;
  }
  return 0;
}

GgmlType matrix_type(GgufFileType type) {
  switch (type) {
    case GgufFileType::F16: return GgmlType::F16;
    case GgufFileType::Q4_0: return GgmlType::Q4_0;
    case GgufFileType::Q8_0: return GgmlType::Q8_0;
  }
  return GgmlType::F16;
}

std::string architecture_of(const std::string& model_type, const fs::path& config_file) {
  if (model_type == "llama" || model_type == "mistral") return "llama";
  if (model_type == "qwen2" || model_type == "qwen3") return model_type;
  throw Error(fmt::format("{}: model_type '{}' cannot be exported to GGUF; the supported model types are {}",
                          config_file.string(), model_type, kSupportedModelTypes));
}

// The GGUF name of a checkpoint tensor, or empty when llama.cpp has no place for it.
std::string gguf_tensor_name(const std::string& name) {
  if (name == "model.embed_tokens.weight") return "token_embd.weight";
  if (name == "model.norm.weight") return "output_norm.weight";
  if (name == "lm_head.weight") return "output.weight";
  static const std::string prefix = "model.layers.";
  if (name.rfind(prefix, 0) != 0) return "";
  const size_t dot = name.find('.', prefix.size());
  if (dot == std::string::npos) return "";
  const std::string layer = name.substr(prefix.size(), dot - prefix.size());
  const std::string rest = name.substr(dot + 1);
  static const std::pair<const char*, const char*> parts[] = {
      {"input_layernorm.", "attn_norm."},       {"post_attention_layernorm.", "ffn_norm."},
      {"self_attn.q_proj.", "attn_q."},         {"self_attn.k_proj.", "attn_k."},
      {"self_attn.v_proj.", "attn_v."},         {"self_attn.o_proj.", "attn_output."},
      {"self_attn.q_norm.", "attn_q_norm."},    {"self_attn.k_norm.", "attn_k_norm."},
      {"mlp.gate_proj.", "ffn_gate."},          {"mlp.up_proj.", "ffn_up."},
      {"mlp.down_proj.", "ffn_down."},
  };
  for (const auto& [hf, gguf] : parts) {
    const std::string hf_part = hf;
    if (rest.rfind(hf_part, 0) == 0) return fmt::format("blk.{}.{}{}", layer, gguf, rest.substr(hf_part.size()));
  }
  return "";
}

// Checkpoints from older transformers carry the RoPE frequencies as tensors;
// they are recomputed from config.json, as the converter does.
bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_derived_tensor(const std::string& name) { return ends_with(name, ".rotary_emb.inv_freq"); }

// convert_hf_to_gguf's LlamaModel.permute: the checkpoint's q/k rows rotate
// halves (pair i with i + head_dim/2); llama.cpp's llama RoPE rotates
// neighbours (2i, 2i+1), so within each head row i moves to 2i and row
// i + head_dim/2 to 2i + 1.
torch::Tensor interleave_rope_rows(const torch::Tensor& rows, int64_t heads) {
  std::vector<int64_t> shape = rows.sizes().vec();
  std::vector<int64_t> split{heads, 2, shape[0] / heads / 2};
  split.insert(split.end(), shape.begin() + 1, shape.end());
  return rows.reshape(split).transpose(1, 2).reshape(shape).contiguous();
}

// The per-dimension-pair factors llama.cpp multiplies RoPE wavelengths by
// (rope_freqs.weight), computed as convert_hf_to_gguf's LlamaModel does.
std::vector<float> llama3_rope_factors(const TransformerConfig& config) {
  const Llama3RopeScaling& s = *config.rope_scaling;
  const double low_freq_wavelen = double(s.original_max_position_embeddings) / s.low_freq_factor;
  const double high_freq_wavelen = double(s.original_max_position_embeddings) / s.high_freq_factor;
  std::vector<float> factors;
  for (int64_t i = 0; i < config.head_dim; i += 2) {
    // float32 frequencies, as torch.arange(..., dtype=float32) gives them.
    const float exponent = static_cast<float>(i) / static_cast<float>(config.head_dim);
    const float freq = 1.0f / std::pow(static_cast<float>(config.rope_theta), exponent);
    const double wavelen = 2.0 * M_PI / double(freq);
    if (wavelen < high_freq_wavelen) {
      factors.push_back(1.0f);
    } else if (wavelen > low_freq_wavelen) {
      factors.push_back(static_cast<float>(s.factor));
    } else {
      const double smooth = (double(s.original_max_position_embeddings) / wavelen - s.low_freq_factor) /
                            (s.high_freq_factor - s.low_freq_factor);
      factors.push_back(static_cast<float>(1.0 / ((1.0 - smooth) / s.factor + smooth)));
    }
  }
  return factors;
}

std::string tensor_bytes(const torch::Tensor& values, GgmlType type) {
  std::string out;
  switch (type) {
    case GgmlType::F32: {
      const torch::Tensor data = values.to(torch::kFloat).contiguous();
      out.assign(static_cast<const char*>(data.data_ptr()), size_t(data.nbytes()));
      break;
    }
    case GgmlType::F16: {
      const torch::Tensor data = values.to(torch::kHalf).contiguous();
      out.assign(static_cast<const char*>(data.data_ptr()), size_t(data.nbytes()));
      break;
    }
    case GgmlType::Q8_0:
    case GgmlType::Q4_0: {
      const torch::Tensor data = values.to(torch::kFloat).contiguous();
      if (type == GgmlType::Q8_0)
        append_q8_0_blocks(data.data_ptr<float>(), data.numel(), out);
      else
        append_q4_0_blocks(data.data_ptr<float>(), data.numel(), out);
      break;
    }
  }
  return out;
}

struct PlannedTensor {
  std::string checkpoint_name;
  std::string gguf_name;
  std::vector<int64_t> shape;
  int64_t interleave_heads = 0;  // > 0: q/k rows re-ordered for llama.cpp's llama RoPE
};

// The ggml type of a tensor in a file of `file_type` (gguf.h gives the rules).
GgmlType type_for(const PlannedTensor& tensor, GgufFileType file_type, bool tied_embeddings) {
  if (tensor.shape.size() < 2) return GgmlType::F32;
  if (tensor.shape.back() % 32 != 0) return GgmlType::F16;
  const bool is_output =
      tensor.gguf_name == "output.weight" || (tied_embeddings && tensor.gguf_name == "token_embd.weight");
  if (file_type == GgufFileType::Q4_0 && is_output) return GgmlType::Q8_0;
  return matrix_type(file_type);
}

std::string default_name(const fs::path& directory) {
  fs::path normal = directory.lexically_normal();
  if (!normal.has_filename()) normal = normal.parent_path();
  const std::string name = fs::absolute(normal).filename().string();
  return name.empty() ? "model" : name;
}

}  // namespace

GgufFileType parse_gguf_file_type(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "f16") return GgufFileType::F16;
  if (lower == "q8_0") return GgufFileType::Q8_0;
  if (lower == "q4_0") return GgufFileType::Q4_0;
  throw Error(fmt::format("GGUF type '{}' is not one of f16, q8_0, q4_0", name));
}

const char* gguf_file_type_name(GgufFileType type) {
  switch (type) {
    case GgufFileType::F16: return "f16";
    case GgufFileType::Q8_0: return "q8_0";
    case GgufFileType::Q4_0: return "q4_0";
  }
  return "?";
}

GgufExportSummary export_gguf(const fs::path& checkpoint_dir, const fs::path& out_file,
                              const GgufExportOptions& options) {
  const HfCheckpoint checkpoint = read_hf_checkpoint(checkpoint_dir);
  const fs::path config_file = checkpoint_dir / "config.json";
  std::string model_type;
  try {
    model_type = nlohmann::json::parse(checkpoint.config_json).value("model_type", "");
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: not valid JSON ({})", config_file.string(), e.what()));
  }
  if (model_type.empty())
    throw Error(fmt::format("{}: 'model_type' is missing; GGUF export supports {}", config_file.string(),
                            kSupportedModelTypes));
  const std::string architecture = architecture_of(model_type, config_file);
  const TransformerConfig config = parse_transformer_config(checkpoint.config_json, config_file.string());
  const bool llama_rope = architecture == "llama";
  if (config.rope_scaling && !llama_rope)
    throw Error(fmt::format("{}: llama3 rope scaling is written for llama models only (llama.cpp's {} ignores it)",
                            config_file.string(), architecture));
  if (architecture == "qwen2" && config.head_dim * config.num_attention_heads != config.hidden_size)
    throw Error(fmt::format("{}: llama.cpp's qwen2 needs head_dim × num_attention_heads = hidden_size ({} × {} ≠ {})",
                            config_file.string(), config.head_dim, config.num_attention_heads, config.hidden_size));

  // Every tensor the config needs, of its shape, and nothing llama.cpp would not load.
  std::vector<PlannedTensor> plan;
  std::set<std::string> expected_names;
  for (const ExpectedTensor& expected : expected_tensors(config)) {
    expected_names.insert(expected.name);
    const auto found = checkpoint.tensors.find(expected.name);
    if (found == checkpoint.tensors.end())
      throw Error(fmt::format("{}: tensor '{}' is missing; config.json describes a model that has it",
                              checkpoint_dir.string(), expected.name));
    if (found->second.tensor.sizes().vec() != expected.shape)
      throw Error(fmt::format("{}: tensor '{}' has shape [{}], config.json implies [{}]", checkpoint_dir.string(),
                              expected.name, fmt::join(found->second.tensor.sizes(), ", "),
                              fmt::join(expected.shape, ", ")));
    if (!found->second.tensor.is_floating_point())
      throw Error(fmt::format("{}: tensor '{}' is not floating point; quantized checkpoints are exported from the "
                              "floating-point checkpoint they came from",
                              checkpoint_dir.string(), expected.name));
    PlannedTensor tensor{expected.name, gguf_tensor_name(expected.name), expected.shape, 0};
    if (tensor.gguf_name.empty())
      throw Error(fmt::format("{}: tensor '{}' has no place in llama.cpp's {} architecture", checkpoint_dir.string(),
                              expected.name, architecture));
    if (llama_rope) {
      const std::string& n = expected.name;
      if (ends_with(n, "self_attn.q_proj.weight") || ends_with(n, "self_attn.q_proj.bias"))
        tensor.interleave_heads = config.num_attention_heads;
      if (ends_with(n, "self_attn.k_proj.weight") || ends_with(n, "self_attn.k_proj.bias"))
        tensor.interleave_heads = config.num_key_value_heads;
    }
    plan.push_back(std::move(tensor));
  }
  for (const auto& [name, entry] : checkpoint.tensors) {
    if (!expected_names.count(name) && !is_derived_tensor(name))
      throw Error(fmt::format("{}: tensor '{}' is not part of a {} model of this config.json; llama.cpp would not "
                              "load it (remove it, or fix config.json)",
                              checkpoint_dir.string(), name, model_type));
  }

  GgufWriter writer;
  writer.set("general.architecture", GgufValue::string(architecture));
  writer.set("general.type", GgufValue::string("model"));
  writer.set("general.name", GgufValue::string(options.name.empty() ? default_name(checkpoint_dir) : options.name));
  writer.set("general.file_type", GgufValue::uint32(llama_file_type(options.type)));
  writer.set("general.quantization_version", GgufValue::uint32(2));  // ggml's GGML_QNT_VERSION
  writer.set("general.alignment", GgufValue::uint32(GgufWriter::kAlignment));
  auto u32 = [](int64_t value) { return GgufValue::uint32(static_cast<uint32_t>(value)); };
  const std::string& a = architecture;
  writer.set(a + ".vocab_size", u32(config.vocab_size));
  writer.set(a + ".context_length", u32(config.max_position_embeddings));
  writer.set(a + ".embedding_length", u32(config.hidden_size));
  writer.set(a + ".block_count", u32(config.num_hidden_layers));
  writer.set(a + ".feed_forward_length", u32(config.intermediate_size));
  writer.set(a + ".attention.head_count", u32(config.num_attention_heads));
  writer.set(a + ".attention.head_count_kv", u32(config.num_key_value_heads));
  writer.set(a + ".attention.key_length", u32(config.head_dim));
  writer.set(a + ".attention.value_length", u32(config.head_dim));
  writer.set(a + ".attention.layer_norm_rms_epsilon", GgufValue::float32(static_cast<float>(config.rms_norm_eps)));
  writer.set(a + ".rope.freq_base", GgufValue::float32(static_cast<float>(config.rope_theta)));
  writer.set(a + ".rope.dimension_count", u32(config.head_dim));

  GgufExportSummary summary;
  summary.architecture = architecture;
  const GgufVocabulary vocabulary = add_gguf_vocabulary(writer, checkpoint_dir, config.vocab_size);
  summary.tokenizer_model = vocabulary.model;
  summary.tokenizer_pre = vocabulary.pre;

  auto count = [&summary](GgmlType type) { ++summary.tensors_by_type[ggml_type_name(type)]; };
  if (config.rope_scaling) {
    const std::vector<float> factors = llama3_rope_factors(config);
    const auto values = torch::tensor(factors, torch::kFloat);
    writer.add_tensor("rope_freqs.weight", {int64_t(factors.size())}, GgmlType::F32,
                      [values] { return tensor_bytes(values, GgmlType::F32); });
    count(GgmlType::F32);
  }
  for (const PlannedTensor& tensor : plan) {
    const GgmlType type = type_for(tensor, options.type, config.tie_word_embeddings);
    const torch::Tensor source = checkpoint.tensors.at(tensor.checkpoint_name).tensor;
    const int64_t heads = tensor.interleave_heads;
    const std::string name = tensor.gguf_name;
    writer.add_tensor(tensor.gguf_name, tensor.shape, type, [source, heads, type, name] {
      try {
        const torch::Tensor values = heads > 0 ? interleave_rope_rows(source.to(torch::kFloat), heads) : source;
        return tensor_bytes(values, type);
      } catch (const c10::Error& e) {
        throw Error(fmt::format("converting tensor '{}' to {} failed: {}", name, ggml_type_name(type),
                                e.what_without_backtrace()));
      }
    });
    count(type);
  }

  summary.tensors = writer.tensor_count();
  summary.metadata_entries = writer.metadata_count();
  summary.bytes = writer.write(out_file);
  return summary;
}

}  // namespace mcompress
