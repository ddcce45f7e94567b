// The MLX directory (sdk/mlx_export.h): an independent safetensors reader
// (a few lines of Python over the byte format, no mcompress code) checks
// names, dtypes, shapes and values, and config.json has mlx-lm's
// "quantization" block with per-layer entries.
#include <gtest/gtest.h>

#include <torch/script.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "mcompress/framework/sources/zoo.h"
#include "mcompress/formats/mlx_export.h"
#include "mcompress/quantization/quantized_model.h"
#include "test_support.h"

namespace fs = std::filesystem;
using mcompress::testing::read_text;
using mcompress::testing::run_command;
using mcompress::testing::TempDir;
using mcompress::testing::write_text;

namespace {

// Reads model.safetensors with struct/json/numpy only and prints, for each
// tensor: name, dtype, shape, and a checksum of its raw bytes (sum of the
// little-endian uint32/uint16 words), plus the metadata.
const char* kReader = R"(import json, struct, sys
import numpy as np
path = sys.argv[1]
with open(path, "rb") as f:
    blob = f.read()
(length,) = struct.unpack("<Q", blob[:8])
assert length % 8 == 0, "header not padded to 8 bytes"
header = json.loads(blob[8:8 + length].decode("utf-8"))
data = blob[8 + length:]
meta = header.pop("__metadata__", {})
sizes = {"F32": 4, "F16": 2, "BF16": 2, "U32": 4, "I64": 8, "I32": 4}
out = {"metadata": meta, "tensors": {}}
end = 0
for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    begin, stop = info["data_offsets"]
    assert begin == end, f"{name}: hole or overlap before it"
    end = stop
    count = int(np.prod(info["shape"])) if info["shape"] else 1
    assert stop - begin == count * sizes[info["dtype"]], f"{name}: size does not match shape"
    raw = data[begin:stop]
    word = np.uint32 if sizes[info["dtype"]] == 4 else np.uint16 if sizes[info["dtype"]] == 2 else np.uint64
    out["tensors"][name] = {"dtype": info["dtype"], "shape": info["shape"],
                            "checksum": int(np.frombuffer(raw, dtype=word).astype(np.uint64).sum())}
assert end == len(data), "trailing bytes"
print(json.dumps(out))
)";

uint64_t checksum(const torch::Tensor& t) {
  const auto c = t.contiguous();
  uint64_t sum = 0;
  const auto* bytes = static_cast<const unsigned char*>(c.data_ptr());
  const size_t n = size_t(c.numel() * c.element_size());
  const size_t word = size_t(c.element_size());  // as the reader: one element per word
  for (size_t i = 0; i < n; i += word) {
    uint64_t value = 0;
    for (size_t b = 0; b < word; ++b) value |= uint64_t(bytes[i + b]) << (8 * b);
    sum += value;
  }
  return sum;
}

}  // namespace

TEST(MlxExport, AnIndependentReaderFindsMlxNamesDtypesShapesAndValues) {
  TempDir tmp("mlx-export");
  const auto model = mcompress::build_zoo_model(
      "char_lm", {{"width", 64}, {"layers", 1}, {"heads", 4}, {"context", 16}}, 65, 2);
  // Mixed settings: the head at 8 bits / group 32, the rest at 4 / 64.
  std::vector<mcompress::LayerQuantization> plan;
  for (const auto& layer : mcompress::find_linear_layers(model)) {
    plan.push_back({layer.path, layer.path == "head" ? 8 : 4, layer.path == "head" ? 32 : 64});
  }
  const auto q = mcompress::quantize_linear_layers(model, plan, {torch::kHalf});
  mcompress::MlxExportOptions options;
  options.bits = 4;
  options.group_size = 64;
  options.extra_config = {{"model_type", "example"}};
  const auto summary = mcompress::write_mlx_directory(q.model, tmp.path() / "mlx", options);
  EXPECT_EQ(summary.quantized_layers, 5);

  write_text(tmp.path() / "read.py", kReader);
  const auto result = run_command(std::string(MCOMPRESS_PYTHON) + " " + (tmp.path() / "read.py").string() + " " +
                                  (tmp.path() / "mlx" / "model.safetensors").string() + " 2>&1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto read = nlohmann::json::parse(result.output);
  EXPECT_EQ(read.at("metadata"), nlohmann::json({{"format", "mlx"}}));
  const auto& tensors = read.at("tensors");

  for (const auto& layer : mcompress::quantized_layers(q.model)) {
    SCOPED_TRACE(layer.path);
    const auto& weight = tensors.at(layer.path + ".weight");
    EXPECT_EQ(weight.at("dtype"), "U32");
    EXPECT_EQ(weight.at("shape"), nlohmann::json({layer.out_features(), layer.in_features() * layer.bits / 32}));
    EXPECT_EQ(weight.at("checksum").get<uint64_t>(), checksum(layer.packed));
    for (const auto& [name, tensor] : {std::pair{"scales", layer.scales}, std::pair{"biases", layer.biases}}) {
      const auto& entry = tensors.at(layer.path + "." + name);
      EXPECT_EQ(entry.at("dtype"), "F16");
      EXPECT_EQ(entry.at("shape"), nlohmann::json({layer.out_features(), layer.in_features() / layer.group_size}));
      EXPECT_EQ(entry.at("checksum").get<uint64_t>(), checksum(tensor));
    }
    EXPECT_EQ(tensors.at(layer.path + ".bias").at("dtype"), "F32");
    EXPECT_EQ(tensors.at(layer.path + ".bias").at("checksum").get<uint64_t>(), checksum(layer.bias));
    EXPECT_FALSE(tensors.contains(layer.path + ".packed_weight"));
  }
  // Floating tensors keep their names and values.
  const auto embedding = q.model.attr("token_embedding").toTensor();
  EXPECT_EQ(tensors.at("token_embedding").at("dtype"), "F32");
  EXPECT_EQ(tensors.at("token_embedding").at("shape"), nlohmann::json({65, 64}));
  EXPECT_EQ(tensors.at("token_embedding").at("checksum").get<uint64_t>(), checksum(embedding));
  EXPECT_TRUE(tensors.contains("block0.ln1.weight"));

  // config.json as mlx-lm reads it: defaults plus the layer that differs.
  const auto config = nlohmann::json::parse(read_text(tmp.path() / "mlx" / "config.json"));
  EXPECT_EQ(config.at("model_type"), "example");
  const nlohmann::json expected = {{"group_size", 64},
                                   {"bits", 4},
                                   {"mode", "affine"},
                                   {"head", {{"group_size", 32}, {"bits", 8}}}};
  EXPECT_EQ(config.at("quantization"), expected);
  EXPECT_EQ(config.at("quantization_config"), expected);
  const auto index = nlohmann::json::parse(read_text(tmp.path() / "mlx" / "model.safetensors.index.json"));
  EXPECT_EQ(index.at("weight_map").at("head.scales"), "model.safetensors");
  EXPECT_FALSE(fs::exists(tmp.path() / "mlx" / "model.safetensors.tmp"));
}
