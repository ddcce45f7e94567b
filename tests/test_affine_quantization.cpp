// MLX's affine group quantization, bit for bit: packed words, scales and
// biases against hand-worked groups and against an independent numpy
// reimplementation (tests/python/mlx_affine_reference.py) over every
// bits/group size/dtype with constant, all-negative and +-0 groups.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "mcompress/runtime/affine_quantization.h"
#include "mcompress/runtime/quantized_linear.h"
#include "test_support.h"

namespace fs = std::filesystem;
using mcompress::testing::read_text;
using mcompress::testing::run_command;
using mcompress::testing::TempDir;
namespace rt = mcompress::runtime;

namespace {

uint32_t float_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

std::vector<char> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

torch::Tensor tensor_from_file(const fs::path& path, std::vector<int64_t> shape, torch::ScalarType dtype) {
  auto bytes = read_bytes(path);
  auto t = torch::empty(shape, dtype);
  EXPECT_EQ(bytes.size(), size_t(t.numel() * t.element_size())) << path;
  std::memcpy(t.data_ptr(), bytes.data(), std::min(bytes.size(), size_t(t.numel() * t.element_size())));
  return t;
}

// Same bits: compares the raw bytes, so -0 and +0 differ.
void expect_same_bits(const torch::Tensor& actual, const torch::Tensor& expected, const std::string& what) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  ASSERT_EQ(actual.element_size(), expected.element_size()) << what;
  const auto a = actual.contiguous(), e = expected.contiguous();
  const auto* pa = static_cast<const unsigned char*>(a.data_ptr());
  const auto* pe = static_cast<const unsigned char*>(e.data_ptr());
  const size_t element = size_t(a.element_size());
  for (int64_t i = 0; i < a.numel(); ++i) {
    if (std::memcmp(pa + i * element, pe + i * element, element) != 0) {
      ADD_FAILURE() << what << ": first difference at element " << i << " of " << a.numel();
      return;
    }
  }
}

}  // namespace

TEST(AffineQuantization, HandWorkedTwoBitGroup) {
  // 0,1,2,3 repeated: max 3 is the larger edge, so scale = -(3 - 0)/3 = -1,
  // q0 = rint(3 / -1) = -3, scale = 3 / -3 = -1, bias = 3, code = 3 - w.
  std::vector<float> w(32);
  for (int i = 0; i < 32; ++i) w[i] = float(i % 4);
  std::vector<uint32_t> packed(2);
  float scale = 0, bias = 0;
  rt::affine_quantize_rows(w.data(), 1, 32, 2, 32, packed.data(), &scale, &bias);
  EXPECT_EQ(scale, -1.0f);
  EXPECT_EQ(bias, 3.0f);
  // Codes 3,2,1,0 at bits 0,2,4,6 of every byte: 0b00011011 = 0x1B.
  EXPECT_EQ(packed[0], 0x1B1B1B1Bu);
  EXPECT_EQ(packed[1], 0x1B1B1B1Bu);
}

TEST(AffineQuantization, HandWorkedEdgeSnappingWhenTheMinimumIsLarger) {
  // min -3 is the larger edge: scale = 4/15, q0 = rint(-3 / (4/15)) = rint(-11.25) = -11,
  // so scale = -3 / -11 = 3/11 and bias = -3: -3 is represented exactly (code 0).
  std::vector<float> w(32, 0.5f);
  w[0] = -3.0f;
  w[1] = 1.0f;
  const auto p = rt::affine_group_params(w.data(), 32, 4);
  EXPECT_EQ(float_bits(p.scale), float_bits(-3.0f / -11.0f));
  EXPECT_EQ(p.bias, -3.0f);
  std::vector<uint32_t> packed(4);
  float scale, bias;
  rt::affine_quantize_rows(w.data(), 1, 32, 4, 32, packed.data(), &scale, &bias);
  EXPECT_EQ(packed[0] & 0xF, 0u);                     // -3 -> 0
  EXPECT_EQ((packed[0] >> 4) & 0xF, 15u);             // 1 -> rint(4 * 11 / 3) = rint(14.67) = 15
  EXPECT_EQ((packed[0] >> 8) & 0xF, 13u);             // 0.5 -> rint(3.5 * 11 / 3) = rint(12.83) = 13
}

TEST(AffineQuantization, ConstantAndZeroGroups) {
  // A zero group: scale is -eps (|min| > |max| is false), bias 0, codes 0.
  std::vector<float> zeros(64, 0.0f);
  for (int i = 0; i < 64; i += 2) zeros[i] = -0.0f;
  const auto z = rt::affine_group_params(zeros.data(), 64, 4);
  EXPECT_EQ(float_bits(z.scale), float_bits(-1e-7f));
  EXPECT_EQ(float_bits(z.bias), float_bits(0.0f));
  // A constant group becomes its own bias with code 0.
  std::vector<float> constant(64, -1.25f);
  std::vector<uint32_t> packed(8);
  float scale, bias;
  rt::affine_quantize_rows(constant.data(), 1, 64, 4, 64, packed.data(), &scale, &bias);
  EXPECT_EQ(bias, -1.25f);
  for (uint32_t word : packed) EXPECT_EQ(word, 0u);
}

TEST(AffineQuantization, PackingIsOneLittleEndianBitStreamPerRow) {
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    std::vector<uint8_t> codes(96), back(96);
    for (int i = 0; i < 96; ++i) codes[i] = uint8_t((i * 7 + 3) % (1 << bits));
    std::vector<uint32_t> words(96 * bits / 32);
    rt::pack_codes(codes.data(), 96, bits, words.data());
    for (int i = 0; i < 96; ++i) {
      // Code i occupies bits [i*bits, (i+1)*bits) of the row's stream.
      uint32_t value = 0;
      for (int b = 0; b < bits; ++b) {
        const int bit = i * bits + b;
        value |= ((words[bit / 32] >> (bit % 32)) & 1u) << b;
      }
      ASSERT_EQ(value, codes[i]) << bits << " bits, code " << i;
    }
    rt::unpack_codes(words.data(), 32, 64, bits, back.data());
    EXPECT_TRUE(std::equal(back.begin(), back.begin() + 64, codes.begin() + 32)) << bits << " bits";
  }
  // 3 bits: 8 codes in 3 bytes, as MLX's byte packing has them.
  std::vector<uint8_t> codes{1, 2, 3, 4, 5, 6, 7, 0};
  codes.resize(32, 0);
  std::vector<uint32_t> words(3);
  rt::pack_codes(codes.data(), 32, 3, words.data());
  const uint32_t first24 = 1 | 2 << 3 | 3 << 6 | 4 << 9 | 5 << 12 | 6 << 15 | 7 << 18;
  EXPECT_EQ(words[0] & 0xFFFFFF, first24);
}

TEST(AffineQuantization, MatchesAnIndependentNumpyReferenceBitForBit) {
  TempDir tmp("affine-reference");
  const auto result = run_command(std::string(MCOMPRESS_PYTHON) + " " + MCOMPRESS_SOURCE_DIR +
                                  "/tests/python/mlx_affine_reference.py " + tmp.path().string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto cases = nlohmann::json::parse(read_text(tmp.path() / "manifest.json"));
  ASSERT_EQ(cases.size(), 6u * 3u * 3u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const int bits = c.at("bits"), group_size = c.at("group_size");
    const int64_t rows = c.at("rows"), cols = c.at("cols");
    const std::string dtype = c.at("dtype");
    const auto type = dtype == "float32" ? torch::kFloat : dtype == "float16" ? torch::kHalf : torch::kBFloat16;
    const auto& files = c.at("files");
    const auto weight = tensor_from_file(tmp.path() / files.at("weight").get<std::string>(), {rows, cols}, type);
    const auto q = rt::quantize_weight(weight, bits, group_size);
    EXPECT_EQ(q.scales.scalar_type(), type);
    expect_same_bits(q.packed,
                     tensor_from_file(tmp.path() / files.at("packed").get<std::string>(),
                                      {rows, cols * bits / 32}, torch::kInt),
                     "packed");
    expect_same_bits(q.scales,
                     tensor_from_file(tmp.path() / files.at("scales").get<std::string>(),
                                      {rows, cols / group_size}, type),
                     "scales");
    expect_same_bits(q.biases,
                     tensor_from_file(tmp.path() / files.at("biases").get<std::string>(),
                                      {rows, cols / group_size}, type),
                     "biases");
  }
}

TEST(AffineQuantization, DequantizesToCodeTimesScalePlusBias) {
  torch::manual_seed(3);
  const auto w = torch::randn({7, 128});
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    SCOPED_TRACE(bits);
    const auto q = rt::quantize_weight(w, bits, 32);
    const auto dq = rt::dequantize_weight(q.packed, q.scales, q.biases, bits, 32);
    for (int64_t r = 0; r < 7; ++r) {
      std::vector<uint8_t> codes(128);
      rt::unpack_codes(reinterpret_cast<const uint32_t*>(q.packed[r].data_ptr<int32_t>()), 0, 128, bits,
                       codes.data());
      for (int64_t k = 0; k < 128; ++k) {
        const float expected = float(codes[k]) * q.scales[r][k / 32].item<float>() + q.biases[r][k / 32].item<float>();
        ASSERT_EQ(dq[r][k].item<float>(), expected) << r << ", " << k;
      }
    }
    // Rounding costs at most half a step; snapping the scale to the larger
    // edge can clip the other edge by up to about one more step.
    const auto step = q.scales.abs().repeat_interleave(32, 1);
    EXPECT_TRUE(((dq - w).abs() <= step * 1.5 + 1e-6).all().item<bool>());
    EXPECT_LT(((dq - w).abs() / step).mean().item<double>(), 0.3);
  }
}

TEST(AffineQuantization, RejectsWhatMlxRejects) {
  const auto w = torch::randn({4, 96});
  auto message = [&](auto&& f) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { rt::quantize_weight(w, 7, 32); }).find("2, 3, 4, 5, 6 or 8"), std::string::npos);
  EXPECT_NE(message([&] { rt::quantize_weight(w, 4, 16); }).find("32, 64 or 128"), std::string::npos);
  EXPECT_NE(message([&] { rt::quantize_weight(w, 4, 64); }).find("not a multiple of the group size 64"),
            std::string::npos);
  auto bad = torch::randn({4, 64});
  bad[1][3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NE(message([&] { rt::quantize_weight(bad, 4, 64); }).find("NaN"), std::string::npos);
  EXPECT_NE(message([&] { rt::quantize_weight(torch::randn({64}), 4, 64); }).find("2-D"), std::string::npos);
}
