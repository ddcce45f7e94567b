// GPTQ in MLX's affine format (mcompress/quantization/gptq.h,
// gptq_calibration.h) and through the mlx_quant pass: GPTQ's outputs on
// correlated calibration inputs are closer to the floating layer's than
// rounding to nearest's, at every width; what it stores is a valid MLX
// weight; with uncorrelated inputs it is round-to-nearest; bad inputs are
// refused with errors that say what to do; and on a language model trained
// on Tiny Shakespeare, held-out perplexity after GPTQ at 3 bits is no worse
// than after rounding to nearest. Measured numbers are printed with a
// "[gptq]" prefix.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mcompress/framework/sources/text_corpus.h"
#include "mcompress/framework/sources/zoo.h"
#include "mcompress/models/graph.h"
#include "mcompress/models/language_model.h"
#include "mcompress/quantization/gptq.h"
#include "mcompress/quantization/gptq_calibration.h"
#include "mcompress/quantization/quantized_model.h"
#include "mcompress/runtime/affine_quantization.h"
#include "mcompress/runtime/quantized_linear.h"
#include "mcompress/sdk/error.h"
#include "mcompress/training/trainer.h"
#include "pass_loading.h"
#include "test_support.h"

namespace fs = std::filesystem;
using mcompress::Error;
using mcompress::GptqOptions;
using mcompress::HessianAccumulator;
using mcompress::runtime::QuantizedWeight;

namespace {

const std::vector<int> kAllBits = {2, 3, 4, 5, 6, 8};

at::Generator generator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

// Features that follow each other (AR(1), ρ = 0.9) with very different
// magnitudes per channel, as a transformer's hidden states have. Every
// draw comes from one distribution: the channels' magnitudes depend on
// the width only, the rows on `seed`.
torch::Tensor correlated_inputs(int64_t rows, int64_t features, uint64_t seed) {
  const auto z = at::randn({rows, features}, generator(seed), torch::kFloat);
  auto x = torch::empty_like(z);
  x.select(1, 0).copy_(z.select(1, 0));
  for (int64_t j = 1; j < features; ++j) {
    x.select(1, j).copy_(0.9 * x.select(1, j - 1) + std::sqrt(1.0 - 0.81) * z.select(1, j));
  }
  const auto channel_scale = 0.5 + 4.5 * at::rand({features}, generator(1000 + uint64_t(features)), torch::kFloat);
  return x * channel_scale;
}

torch::Tensor random_weight(int64_t out, int64_t in, uint64_t seed) {
  return at::randn({out, in}, generator(seed), torch::kFloat) * 0.05;
}

torch::Tensor hessian_of(const torch::Tensor& x) {
  HessianAccumulator accumulator(x.size(-1));
  accumulator.add(x);
  return accumulator.hessian();
}

torch::Tensor dequantized(const QuantizedWeight& q) {
  return mcompress::runtime::dequantize_weight(q.packed, q.scales, q.biases, q.bits, q.group_size);
}

// ‖X Wᵀ − X Ŵᵀ‖_F: how far the layer's outputs move on the inputs X.
double output_error(const torch::Tensor& x, const torch::Tensor& weight, const QuantizedWeight& q) {
  return torch::mm(x, (weight - dequantized(q)).t()).norm().item<double>();
}

// Code i of a packed row, read from the row's little-endian bit stream
// (code i at bits [i·bits, (i+1)·bits)), independently of the runtime.
int code_at(const int32_t* row, int64_t i, int bits) {
  const int64_t bit = i * bits;
  const uint64_t low = uint32_t(row[bit / 32]);
  const uint64_t high = (bit % 32) + bits > 32 ? uint64_t(uint32_t(row[bit / 32 + 1])) << 32 : 0;
  return int(((low | high) >> (bit % 32)) & ((1u << bits) - 1));
}

torch::Tensor codes_of(const QuantizedWeight& q, int64_t in_features) {
  auto codes = torch::empty({q.packed.size(0), in_features}, torch::kInt);
  const auto packed = q.packed.contiguous();
  for (int64_t r = 0; r < packed.size(0); ++r) {
    const int32_t* row = packed.data_ptr<int32_t>() + r * packed.size(1);
    for (int64_t i = 0; i < in_features; ++i) codes[r][i] = code_at(row, i, q.bits);
  }
  return codes;
}

// ---------------------------------------------------------------------------
// Hessians

TEST(GptqHessian, IsTwiceTheMeanOuterProductOfTheInputRows) {
  const auto x = correlated_inputs(300, 64, 1);
  HessianAccumulator accumulator(64);
  accumulator.add(x.narrow(0, 0, 100).view({4, 25, 64}));  // leading dimensions are rows too
  accumulator.add(x.narrow(0, 100, 200));
  EXPECT_EQ(accumulator.rows(), 300);
  const auto x64 = x.to(torch::kDouble);
  const auto expected = torch::mm(x64.t(), x64) * (2.0 / 300);
  const auto h = accumulator.hessian();
  EXPECT_EQ(h.scalar_type(), torch::kDouble);
  EXPECT_LT((h - expected).abs().max().item<double>(), 1e-5 * expected.abs().max().item<double>());
  EXPECT_EQ(HessianAccumulator(8).hessian().abs().sum().item<double>(), 0.0);
  EXPECT_NE(mcompress::testing::error_of([&] { accumulator.add(torch::ones({3, 65})); }).find("must end in the layer's 64 input features"),
            std::string::npos);
}

// ---------------------------------------------------------------------------
// (a) lower output error than rounding to nearest on correlated inputs

TEST(Gptq, ChangesTheOutputsOnCorrelatedInputsLessThanRoundingToNearest) {
  const int64_t in = 256, out = 128;
  // 64 calibration rows per input feature, as GPTQ's 128 × 2048 tokens give a 4096-wide layer.
  const auto x = correlated_inputs(64 * in, in, 2);
  const auto held_out = correlated_inputs(8192, in, 3);
  const auto weight = random_weight(out, in, 4);
  const auto h = hessian_of(x);
  for (int group_size : {32, 64, 128}) {
    for (int bits : kAllBits) {
      const auto rtn = mcompress::runtime::quantize_weight(weight, bits, group_size);
      const auto gptq = mcompress::gptq_quantize_weight(weight, h, bits, group_size);
      const double rtn_error = output_error(x, weight, rtn), gptq_error = output_error(x, weight, gptq);
      const double rtn_held_out = output_error(held_out, weight, rtn);
      const double gptq_held_out = output_error(held_out, weight, gptq);
      std::printf("[gptq] synthetic correlated, group %d, %d bits: ‖XWᵀ−XŴᵀ‖ RTN %.4f GPTQ %.4f (%.1f%%); "
                  "held-out inputs RTN %.4f GPTQ %.4f\n",
                  group_size, bits, rtn_error, gptq_error, 100.0 * gptq_error / rtn_error, rtn_held_out,
                  gptq_held_out);
      EXPECT_LT(gptq_error, rtn_error) << bits << " bits, group " << group_size;
      EXPECT_LT(gptq_held_out, rtn_held_out) << bits << " bits, group " << group_size;
      // output_mse computes the same error from the Hessian alone.
      const double mse = mcompress::output_mse(weight, dequantized(gptq), h);
      EXPECT_NEAR(mse, gptq_error * gptq_error / double(x.size(0) * out), 1e-4 * mse);
    }
  }
}

TEST(Gptq, StoresScalesInTheStorageDtypeAndStillBeatsRoundingToNearest) {
  const auto x = correlated_inputs(2048, 128, 5);
  const auto weight = random_weight(64, 128, 6).to(torch::kBFloat16);
  const auto h = hessian_of(x);
  for (auto storage : {torch::kFloat, torch::kHalf, torch::kBFloat16}) {
    GptqOptions options;
    options.storage_dtype = storage;
    const auto gptq = mcompress::gptq_quantize_weight(weight, h, 3, 64, options);
    EXPECT_EQ(gptq.scales.scalar_type(), storage);
    EXPECT_EQ(gptq.biases.scalar_type(), storage);
    const auto rtn = mcompress::runtime::quantize_weight(weight.to(storage), 3, 64);
    const auto w = weight.to(torch::kFloat);
    EXPECT_LT(output_error(x, w, gptq), output_error(x, w, rtn)) << c10::toString(storage);
  }
  // None: the weight's dtype, as MLX stores them.
  EXPECT_EQ(mcompress::gptq_quantize_weight(weight, h, 4, 64).scales.scalar_type(), torch::kBFloat16);
}

// The paper's update written out directly, in float64, without Cholesky
// factors or lazy batches: after column j is quantized, the later columns
// move by −(w_j − q_j) · Hinv[j, k] / Hinv[j, j], and column j is removed
// from the inverse Hessian: Hinv ← Hinv − Hinv[:, j] Hinv[j, :] / Hinv[j, j].
// Groups get MLX's scale/bias from the weights as they are when reached.
// Returns the dequantized weight and the codes.
std::pair<torch::Tensor, torch::Tensor> reference_gptq(const torch::Tensor& weight, const torch::Tensor& hessian, int bits, int group_size) {
  const int64_t rows = weight.size(0), columns = weight.size(1);
  auto w = weight.to(torch::kDouble).clone();
  auto h = hessian.to(torch::kDouble).clone();
  h.diagonal().add_(0.01 * h.diagonal().mean().item<double>());
  auto inverse = torch::inverse(h);
  auto result = torch::empty({rows, columns}, torch::kFloat);
  auto codes = torch::empty({rows, columns}, torch::kInt);
  std::vector<mcompress::runtime::GroupParams> params(static_cast<size_t>(rows));
  const float top = float((1 << bits) - 1);
  for (int64_t j = 0; j < columns; ++j) {
    if (j % group_size == 0) {
      const auto group = w.narrow(1, j, group_size).to(torch::kFloat).contiguous();
      for (int64_t r = 0; r < rows; ++r) {
        params[size_t(r)] = mcompress::runtime::affine_group_params(group.data_ptr<float>() + r * group_size,
                                                                   group_size, bits);
      }
    }
    auto error = torch::empty({rows}, torch::kDouble);
    for (int64_t r = 0; r < rows; ++r) {
      const float value = float(w[r][j].item<double>());
      const auto& p = params[size_t(r)];
      const float code = std::min(std::max(std::rint((value - p.bias) / p.scale), 0.0f), top);
      const float q = code * p.scale + p.bias;
      result[r][j] = q;
      codes[r][j] = int(code);
      error[r] = (double(value) - double(q)) / inverse[j][j].item<double>();
    }
    w -= torch::outer(error, inverse[j]);
    inverse -= torch::outer(inverse.select(1, j), inverse[j]) / inverse[j][j];
  }
  return {result, codes};
}

TEST(Gptq, AgreesWithThePapersUpdateWrittenOutDirectly) {
  const auto x = correlated_inputs(8192, 128, 19);
  const auto weight = random_weight(32, 128, 20);
  const auto h = hessian_of(x);
  for (int bits : {2, 3, 4, 8}) {
    const auto [expected, expected_codes] = reference_gptq(weight, h, bits, 32);
    for (int64_t block_size : {1, 32, 64, 128, 1000}) {
      GptqOptions options;
      options.block_size = block_size;
      const auto q = mcompress::gptq_quantize_weight(weight, h, bits, 32, options);
      const auto ours = dequantized(q);
      // float32 against float64 arithmetic: the scales differ in their last
      // bits, and a rare code lands on the other side of a rounding boundary.
      const double same = (codes_of(q, 128) == expected_codes).to(torch::kDouble).mean().item<double>();
      const double ours_error = torch::mm(x, (weight - ours).t()).norm().item<double>();
      const double expected_error = torch::mm(x, (weight - expected).t()).norm().item<double>();
      EXPECT_GT(same, 0.99) << bits << " bits, block " << block_size;
      EXPECT_NEAR(ours_error, expected_error, 0.01 * expected_error) << bits << " bits, block " << block_size;
      if (block_size == 128) {
        std::printf("[gptq] against the direct float64 update, %d bits: %.2f%% of codes equal, output error %.4f vs "
                    "%.4f\n",
                    bits, 100.0 * same, ours_error, expected_error);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// (b) a valid MLX weight

TEST(Gptq, ProducesAValidMlxWeightThatDequantizesToCodeTimesScalePlusBias) {
  const int64_t in = 256, out = 48;
  const auto x = correlated_inputs(1024, in, 7);
  const auto weight = random_weight(out, in, 8);
  const auto h = hessian_of(x);
  for (int bits : kAllBits) {
    for (auto storage : {torch::kFloat, torch::kHalf}) {
      GptqOptions options;
      options.storage_dtype = storage;
      const int group_size = bits == 3 ? 32 : 64;
      const auto q = mcompress::gptq_quantize_weight(weight, h, bits, group_size, options);
      ASSERT_EQ(q.bits, bits);
      ASSERT_EQ(q.group_size, group_size);
      ASSERT_EQ(q.packed.scalar_type(), torch::kInt);
      ASSERT_EQ(q.packed.sizes(), (std::vector<int64_t>{out, in * bits / 32}));
      ASSERT_EQ(q.scales.sizes(), (std::vector<int64_t>{out, in / group_size}));
      ASSERT_EQ(q.biases.sizes(), q.scales.sizes());
      const auto codes = codes_of(q, in);
      EXPECT_GE(codes.min().item<int>(), 0);
      EXPECT_LE(codes.max().item<int>(), (1 << bits) - 1);
      // code · scale + bias, in float from the stored values, as MLX dequantizes.
      const auto scales = q.scales.to(torch::kFloat).repeat_interleave(group_size, 1);
      const auto biases = q.biases.to(torch::kFloat).repeat_interleave(group_size, 1);
      const auto expected = codes.to(torch::kFloat) * scales + biases;
      EXPECT_TRUE(torch::equal(dequantized(q), expected)) << bits << " bits, " << c10::toString(storage);
      // And the runtime's operator computes x · that weightᵀ (a few rows: its
      // float kernels, exact up to float rounding).
      const auto rows = x.narrow(0, 0, 4);
      const auto y = mcompress::runtime::quantized_linear(rows, q.packed, q.scales, q.biases, c10::nullopt, bits,
                                                          group_size);
      const auto reference = torch::mm(rows, expected.t());
      EXPECT_LT((y - reference).abs().max().item<double>(), 1e-5 * reference.abs().max().item<double>());
    }
  }
}

// ---------------------------------------------------------------------------
// (c) no correlation: round to nearest

TEST(Gptq, EqualsRoundingToNearestBitForBitWhenTheHessianIsDiagonal) {
  // With H diagonal, U (the Cholesky factor of H⁻¹) is diagonal too: every
  // error is propagated with weight exactly 0, no weight moves, each group's
  // scale/bias is computed from the original weights and each code is
  // rint((w − bias) / scale) clipped, MLX's own expression. Stored in
  // float32 nothing is rounded, so the result is round-to-nearest exactly.
  const auto weight = random_weight(64, 256, 9);
  const auto h = torch::diag(0.1 + at::rand({256}, generator(10), torch::kDouble));
  for (int bits : kAllBits) {
    const auto rtn = mcompress::runtime::quantize_weight(weight, bits, 64);
    const auto gptq = mcompress::gptq_quantize_weight(weight, h, bits, 64);
    EXPECT_TRUE(torch::equal(gptq.packed, rtn.packed)) << bits;
    EXPECT_TRUE(torch::equal(gptq.scales, rtn.scales)) << bits;
    EXPECT_TRUE(torch::equal(gptq.biases, rtn.biases)) << bits;
  }
}

TEST(Gptq, IsRoundingToNearestUpToTheStoredScalesInHalfPrecision) {
  // In float16 the scales and biases are the same (computed from the same
  // weights), but GPTQ picks each code with the stored, rounded values while
  // MLX's round-to-nearest picks it with the unrounded ones: the few codes
  // that differ (more at 8 bits, where the scale's rounding moves the top
  // levels by a larger share of a step) are the ones where GPTQ's level is
  // the nearer one to the weight.
  const auto weight = random_weight(64, 256, 11);
  const auto h = torch::eye(256, torch::kDouble);
  for (int bits : kAllBits) {
    const auto rtn = mcompress::runtime::quantize_weight(weight.to(torch::kHalf), bits, 64);
    const auto gptq = mcompress::gptq_quantize_weight(weight.to(torch::kHalf), h, bits, 64);
    EXPECT_TRUE(torch::equal(gptq.scales, rtn.scales)) << bits;
    EXPECT_TRUE(torch::equal(gptq.biases, rtn.biases)) << bits;
    const auto differing = (codes_of(gptq, 256) != codes_of(rtn, 256)).sum().item<int64_t>();
    const auto w = weight.to(torch::kHalf).to(torch::kFloat);
    const double gptq_error = (dequantized(gptq) - w).pow(2).sum().item<double>();
    const double rtn_error = (dequantized(rtn) - w).pow(2).sum().item<double>();
    std::printf("[gptq] identity Hessian, float16 scales, %d bits: %lld of %d codes differ from RTN; "
                "weight error GPTQ %.6g RTN %.6g\n",
                bits, (long long)differing, 64 * 256, gptq_error, rtn_error);
    EXPECT_LE(differing, 64 * 256 * 3 / 100) << bits;
    EXPECT_LE(gptq_error, rtn_error) << bits;
    const auto gptq_distance = (dequantized(gptq) - w).abs(), rtn_distance = (dequantized(rtn) - w).abs();
    EXPECT_TRUE((gptq_distance <= rtn_distance + 1e-6 * w.abs().max()).all().item<bool>()) << bits;
  }
}

TEST(Gptq, IsNearlyRoundingToNearestWhenTheInputsAreUncorrelated) {
  // Independent inputs of equal variance: the sample Hessian is the identity
  // up to sampling noise of order 1/sqrt(N), so GPTQ moves the weights only
  // a little and its output error is within a few percent of RTN's.
  const auto x = at::randn({20000, 128}, generator(12), torch::kFloat);
  const auto weight = random_weight(64, 128, 13);
  const auto h = hessian_of(x);
  for (int bits : kAllBits) {
    const auto rtn = mcompress::runtime::quantize_weight(weight, bits, 64);
    const auto gptq = mcompress::gptq_quantize_weight(weight, h, bits, 64);
    const double ratio = output_error(x, weight, gptq) / output_error(x, weight, rtn);
    const double same = (codes_of(gptq, 128) == codes_of(rtn, 128)).to(torch::kDouble).mean().item<double>();
    std::printf("[gptq] uncorrelated inputs, %d bits: GPTQ/RTN output error %.4f, codes equal to RTN %.1f%%\n",
                bits, ratio, 100.0 * same);
    EXPECT_GT(ratio, 0.9) << bits;
    EXPECT_LT(ratio, 1.0) << bits;
    EXPECT_GT(same, 0.9) << bits;
  }
}

// ---------------------------------------------------------------------------
// (d) what GPTQ refuses, and what it does with degenerate Hessians

TEST(Gptq, RefusesMismatchedShapesNonFiniteValuesAndUnsupportedFormats) {
  const auto weight = random_weight(8, 64, 14);
  const auto h = torch::eye(64, torch::kDouble);
  auto expect_message = [](const std::function<void()>& action, const std::string& text) {
    const std::string message = mcompress::testing::error_of(action);
    EXPECT_NE(message.find(text), std::string::npos) << message;
  };
  expect_message([&] { mcompress::gptq_quantize_weight(weight, torch::eye(32), 4, 32); },
                 "the Hessian must be [in, in] = [64, 64] for the weight [8, 64], got [32, 32]");
  expect_message([&] { mcompress::gptq_quantize_weight(weight.view({-1}), h, 4, 32); },
                 "the weight must be a 2-D [out, in]");
  expect_message([&] { mcompress::gptq_quantize_weight(weight.to(torch::kLong), h, 4, 32); },
                 "float32, float16 or bfloat16");
  auto nan_weight = weight.clone();
  nan_weight[3][5] = std::numeric_limits<float>::quiet_NaN();
  expect_message([&] { mcompress::gptq_quantize_weight(nan_weight, h, 4, 32); }, "the weight has NaN or infinite");
  auto inf_weight = weight.clone();
  inf_weight[0][0] = std::numeric_limits<float>::infinity();
  expect_message([&] { mcompress::gptq_quantize_weight(inf_weight, h, 4, 32); }, "the weight has NaN or infinite");
  auto inf_h = h.clone();
  inf_h[1][2] = std::numeric_limits<double>::infinity();
  expect_message([&] { mcompress::gptq_quantize_weight(weight, inf_h, 4, 32); }, "the Hessian has NaN or infinite");
  expect_message([&] { mcompress::gptq_quantize_weight(random_weight(8, 96, 15), torch::eye(96), 4, 64); },
                 "the input size 96 is not a multiple of the group size 64");
  expect_message([&] { mcompress::gptq_quantize_weight(weight, h, 7, 32); }, "bits must be 2, 3, 4, 5, 6 or 8");
  expect_message([&] { mcompress::gptq_quantize_weight(weight, h, 4, 48); }, "group size must be 32, 64 or 128");
  GptqOptions no_damping;
  no_damping.damp = 0;
  expect_message([&] { mcompress::gptq_quantize_weight(weight, h, 4, 32, no_damping); },
                 "damp must be a positive fraction");
  expect_message([&] { mcompress::gptq_quantize_weight(weight, torch::zeros({64, 64}), 4, 32); },
                 "the Hessian is zero: no calibration input reached this layer");
}

TEST(Gptq, ZeroesTheWeightsOfInputsThatWereAlwaysZero) {
  auto x = correlated_inputs(512, 64, 16);
  x.select(1, 10).zero_();
  x.select(1, 40).zero_();
  const auto weight = random_weight(16, 64, 17);
  mcompress::GptqReport report;
  const auto q = mcompress::gptq_quantize_weight(weight, hessian_of(x), 4, 32, {}, &report);
  EXPECT_EQ(report.dead_columns, 2);
  EXPECT_EQ(report.damping_retries, 0);
  EXPECT_DOUBLE_EQ(report.damp, 0.01);
  // Each dead weight became 0 before its group's scale was chosen, so it is
  // the level nearest 0 (0 itself when the group's edge is snapped to a code).
  const auto w = dequantized(q);
  const auto step = q.scales.to(torch::kFloat).abs();
  for (int64_t column : {10, 40}) {
    const auto dead = w.select(1, column).abs();
    EXPECT_TRUE((dead <= 0.5 * step.select(1, column / 32) + 1e-7).all().item<bool>()) << column;
  }
}

TEST(Gptq, RaisesTheDampingWhenTheHessianIsNotPositiveDefiniteAndSaysSo) {
  // Symmetric with a positive diagonal but indefinite (blocks [[1, 2], [2, 1]]
  // have eigenvalue −1): no sample Hessian is like this, but numerically
  // broken ones are. 1% and 10% of the mean diagonal are not enough; 1000% is.
  auto h = torch::eye(64, torch::kDouble);
  for (int64_t i = 0; i < 64; i += 2) h[i][i + 1] = h[i + 1][i] = 2.0;
  mcompress::GptqReport report;
  const auto q = mcompress::gptq_quantize_weight(random_weight(8, 64, 18), h, 4, 32, {}, &report);
  EXPECT_GE(report.damping_retries, 2);
  EXPECT_NEAR(report.damp, 0.01 * std::pow(10.0, report.damping_retries), 1e-12);
  EXPECT_EQ(q.packed.size(0), 8);
  // Beyond the retries, a clear error.
  auto hopeless = -torch::eye(64, torch::kDouble);
  const std::string message = mcompress::testing::error_of([&] { mcompress::gptq_quantize_weight(random_weight(8, 64, 18), hopeless, 4, 32); });
  EXPECT_NE(message.find("the Hessian is not positive definite even with 100 of its mean diagonal"), std::string::npos)
      << message;
}

// ---------------------------------------------------------------------------
// A small language model trained on Tiny Shakespeare: real weights, real
// (correlated) activations, held-out text.

class GptqLanguageModel : public ::testing::Test {
 protected:
  // Trained once for the process (the pass's suite derives from this one,
  // and gtest calls SetUpTestSuite per suite).
  static void SetUpTestSuite() {
    if (model_) return;
    torch::manual_seed(1);
    const auto corpus = mcompress::load_text_corpus(std::string(MCOMPRESS_SOURCE_DIR) + "/tests/data/tinyshakespeare.txt",
                                                    64, 0.1);
    vocabulary_ = int64_t(corpus.vocabulary.size());
    train_ = std::make_shared<mcompress::Dataset>(corpus.train->slice(0, 4000));
    held_out_ = std::make_shared<mcompress::Dataset>(corpus.test->slice(0, 128));
    auto model = mcompress::build_zoo_model(
        "llama", {{"width", 64}, {"layers", 2}, {"heads", 4}, {"kv_heads", 2}, {"intermediate", 128}, {"context", 64}},
        vocabulary_, 3);
    mcompress::TrainOptions options;
    options.epochs = 0;
    options.max_steps = 200;
    options.batch_size = 32;
    options.optimizer = "adamw";
    options.learning_rate = 0.01;
    options.keep_best = false;
    options.seed = 3;
    mcompress::NullProgress progress;
    mcompress::NullLogger log;
    mcompress::train_model(model, *train_, nullptr, options, mcompress::cross_entropy_loss(), progress, log);
    model.eval();
    model_ = new torch::jit::Module(model);  // kept until the process ends
  }

  static double perplexity(const torch::jit::Module& model) {
    mcompress::NullProgress progress;
    return mcompress::evaluate_language_model(model, *held_out_, 32, progress).perplexity;
  }
  // The first `count` training windows, in batches of 16: the calibration data.
  static std::vector<torch::Tensor> calibration(int64_t count) {
    std::vector<torch::Tensor> batches;
    for (int64_t start = 0; start < count; start += 16) batches.push_back(train_->inputs.narrow(0, start, 16));
    return batches;
  }
  static std::vector<mcompress::LayerQuantization> plan_all(int bits, int group_size) {
    std::vector<mcompress::LayerQuantization> plan;
    for (const auto& layer : mcompress::find_linear_layers(*model_)) plan.push_back({layer.path, bits, group_size});
    return plan;
  }

  static torch::jit::Module* model_;
  static int64_t vocabulary_;
  static mcompress::DatasetPtr train_, held_out_;
};
torch::jit::Module* GptqLanguageModel::model_ = nullptr;
int64_t GptqLanguageModel::vocabulary_ = 0;
mcompress::DatasetPtr GptqLanguageModel::train_, GptqLanguageModel::held_out_;

TEST_F(GptqLanguageModel, RecordsEachLayersInputsAsTheModelFeedsThem) {
  const auto batches = calibration(32);
  const std::string q = "model.layers.0.self_attn.q_proj", k = "model.layers.0.self_attn.k_proj";
  const auto hessians = mcompress::collect_linear_input_hessians(*model_, {q, k, "model.layers.1.mlp.down_proj"}, batches);
  ASSERT_EQ(hessians.size(), 3u);
  EXPECT_EQ(hessians.at(q).rows(), 32 * 64);
  EXPECT_EQ(hessians.at("model.layers.1.mlp.down_proj").in_features(), 128);
  // The first layer's projections see RMSNorm(embeddings), computed here by hand.
  const auto embeddings = mcompress::submodule_at(*model_, "model.embed_tokens").attr("weight").toTensor().detach();
  const auto norm = mcompress::submodule_at(*model_, "model.layers.0.input_layernorm").attr("weight").toTensor().detach();
  auto h = torch::embedding(embeddings, torch::cat(batches)).view({-1, 64});
  const auto x = (h * torch::rsqrt(h.pow(2).mean(-1, true) + 1e-5) * norm).to(torch::kDouble);
  const auto expected = torch::mm(x.t(), x) * (2.0 / double(x.size(0)));
  for (const auto& path : {q, k}) {
    const auto recorded = hessians.at(path).hessian();
    EXPECT_LT((recorded - expected).abs().max().item<double>(), 1e-4 * expected.abs().max().item<double>()) << path;
  }
  // The caller's model is untouched: no recording code, no extra buffers.
  EXPECT_FALSE(mcompress::submodule_at(*model_, q).hasattr("mcompress_gptq_input_sum"));
  const auto refused = mcompress::testing::error_of([&] { mcompress::collect_linear_input_hessians(*model_, {"model.norm"}, batches); });
  EXPECT_NE(refused.find("`model.norm` is not a linear layer"), std::string::npos) << refused;
  const auto no_batches = mcompress::testing::error_of([&] { mcompress::collect_linear_input_hessians(*model_, {q}, {}); });
  EXPECT_NE(no_batches.find("needs at least one batch"), std::string::npos) << no_batches;
}

TEST_F(GptqLanguageModel, BeatsRoundingToNearestOnEveryLayersRealInputs) {
  for (int bits : {2, 3, 4, 8}) {
    mcompress::GptqCalibrationOptions options;
    options.sequential = false;
    const auto result = mcompress::gptq_quantize_layers(*model_, plan_all(bits, 32), calibration(64), options);
    EXPECT_EQ(result.calibration_passes, 1);
    double gptq_total = 0, rtn_total = 0;
    for (const auto& layer : result.layers) {
      ASSERT_TRUE(layer.weight) << layer.path << ": " << layer.note;
      EXPECT_EQ(layer.calibration_rows, 64 * 64) << layer.path;
      EXPECT_LT(layer.output_mse, layer.rtn_output_mse) << layer.path << ", " << bits << " bits";
      gptq_total += layer.output_mse;
      rtn_total += layer.rtn_output_mse;
    }
    std::printf("[gptq] trained LM, real layer inputs, %d bits, group 32: summed output MSE over %zu layers: "
                "RTN %.4g GPTQ %.4g (%.1f%%)\n",
                bits, result.layers.size(), rtn_total, gptq_total, 100.0 * gptq_total / rtn_total);
  }
}

TEST_F(GptqLanguageModel, QuantizesSequentiallyInDataFlowOrder) {
  const auto result = mcompress::gptq_quantize_layers(*model_, plan_all(4, 32), calibration(32));
  std::map<std::string, int> round;
  for (const auto& layer : result.layers) round[layer.path] = layer.round;
  const std::string l0 = "model.layers.0.", l1 = "model.layers.1.";
  EXPECT_EQ(round.at(l0 + "self_attn.q_proj"), 0);
  EXPECT_EQ(round.at(l0 + "self_attn.k_proj"), 0);
  EXPECT_EQ(round.at(l0 + "self_attn.v_proj"), 0);
  EXPECT_EQ(round.at(l0 + "self_attn.o_proj"), 1);
  EXPECT_EQ(round.at(l0 + "mlp.gate_proj"), 2);
  EXPECT_EQ(round.at(l0 + "mlp.up_proj"), 2);
  EXPECT_EQ(round.at(l0 + "mlp.down_proj"), 3);
  EXPECT_EQ(round.at(l1 + "self_attn.q_proj"), 4);
  EXPECT_EQ(round.at(l1 + "mlp.down_proj"), 7);
  EXPECT_EQ(result.calibration_passes, 8);
  // The first round sees the floating model either way.
  mcompress::GptqCalibrationOptions one_pass;
  one_pass.sequential = false;
  const auto floating = mcompress::gptq_quantize_layers(*model_, plan_all(4, 32), calibration(32), one_pass);
  EXPECT_TRUE(torch::equal(result.layers[0].weight->packed, floating.layers[0].weight->packed));
}

TEST_F(GptqLanguageModel, LeavesOutLayersWhoseInputSizeIsNotAMultipleOfTheGroupSize) {
  // Groups of 128: only down_proj (input 128) fits; the others (input 64) stay
  // floating, with the reason the quantizer gives, and are not calibrated.
  const auto plan = plan_all(4, 128);
  const auto result = mcompress::gptq_quantize_layers(*model_, plan, calibration(16));
  for (const auto& layer : result.layers) {
    const bool fits = layer.path.find("down_proj") != std::string::npos;
    EXPECT_EQ(layer.weight.has_value(), fits) << layer.path;
    EXPECT_EQ(layer.skipped, !fits) << layer.path;
    if (!fits) {
      EXPECT_EQ(layer.note, "not quantized: its input size 64 is not a multiple of the group size 128") << layer.path;
    }
  }
  mcompress::QuantizationOptions options;
  for (const auto& layer : result.layers) {
    if (layer.weight) options.precomputed.emplace(layer.path, *layer.weight);
  }
  const auto quantized = mcompress::quantize_linear_layers(*model_, plan, options);
  EXPECT_EQ(mcompress::quantized_layers(quantized.model).size(), 2u);
  EXPECT_GT(perplexity(quantized.model), 1.0);
}

TEST_F(GptqLanguageModel, QuantizedModelStoresThePrecomputedWeightsAsGiven) {
  const auto plan = plan_all(4, 32);
  const auto gptq = mcompress::gptq_quantize_layers(*model_, plan, calibration(32));
  mcompress::QuantizationOptions options;
  for (const auto& layer : gptq.layers) options.precomputed.emplace(layer.path, *layer.weight);
  const auto quantized = mcompress::quantize_linear_layers(*model_, plan, options);
  const auto layers = mcompress::quantized_layers(quantized.model);
  ASSERT_EQ(layers.size(), plan.size());
  for (const auto& layer : layers) {
    const auto& given = options.precomputed.at(layer.path);
    EXPECT_TRUE(torch::equal(layer.packed, given.packed)) << layer.path;
    EXPECT_TRUE(torch::equal(layer.scales, given.scales)) << layer.path;
  }
  for (const auto& report : quantized.layers) {
    EXPECT_TRUE(report.quantized) << report.path;
    EXPECT_GT(report.rms_error, 0.0) << report.path;
  }
  // A weight that does not fit its layer is refused, naming the layer.
  mcompress::QuantizationOptions wrong;
  wrong.precomputed.emplace(plan[0].path, mcompress::runtime::quantize_weight(
                                              torch::zeros({64, 64}), 8, 32));
  auto message = mcompress::testing::error_of([&] { mcompress::quantize_linear_layers(*model_, plan, wrong); });
  EXPECT_NE(message.find("layer " + plan[0].path + ": the precomputed quantized weight has bits 8 and group size 32, "
                                                   "but the plan says 4 and 32"),
            std::string::npos)
      << message;
  mcompress::QuantizationOptions unplanned;
  unplanned.precomputed.emplace("model.layers.0.mlp.up_proj", *gptq.layers[0].weight);
  message = mcompress::testing::error_of([&] {
    mcompress::quantize_linear_layers(*model_, {plan[0]}, unplanned);
  });
  EXPECT_NE(message.find("which the plan does not quantize"), std::string::npos) << message;
}

// (e) end to end: the mlx_quant pass, method gptq against rtn, held-out perplexity.
class MlxQuantGptqPass : public GptqLanguageModel {
 protected:
  struct Outcome {
    torch::jit::Module model;
    nlohmann::json stats;
    std::string summary;
  };
  static Outcome run_pass(const std::map<std::string, mcompress::ParamValue>& settings, bool with_calibration,
                          const fs::path& artifacts) {
    const mcompress::Pass& pass = mcompress::testing::plugin_pass("mlx_quant");
    mcompress::Params params;
    for (const auto& spec : pass.info().params) params.set(spec.name, *spec.default_value);
    params.set("export_mlx", false);
    for (const auto& [name, value] : settings) params.set(name, value);
    mcompress::NullLogger log;
    mcompress::NullProgress progress;
    mcompress::PassContext context;
    context.model = model_->clone();
    context.params = &params;
    context.log = &log;
    context.progress = &progress;
    context.artifact_dir = artifacts;
    context.train = train_;
    if (with_calibration) context.calibration = std::make_shared<mcompress::Dataset>(train_->slice(0, 128));
    const auto result = pass.run(context);
    return {context.model, result.stats, result.summary};
  }
};

TEST_F(MlxQuantGptqPass, GivesNoWorseHeldOutPerplexityThanRoundingToNearestAt3Bits) {
  mcompress::testing::TempDir artifacts("gptq-pass");
  const double baseline = perplexity(*model_);
  const auto rtn = run_pass({{"bits", int64_t(3)}, {"group_size", int64_t(32)}}, true, artifacts.path());
  const auto gptq = run_pass({{"bits", int64_t(3)}, {"group_size", int64_t(32)}, {"method", std::string("gptq")},
                              {"export_mlx", true}},
                             true, artifacts.path());
  const auto one_pass = run_pass({{"bits", int64_t(3)}, {"group_size", int64_t(32)},
                                  {"method", std::string("gptq")}, {"gptq_sequential", false}},
                                 true, artifacts.path());
  const double rtn_perplexity = perplexity(rtn.model), gptq_perplexity = perplexity(gptq.model);
  const double one_pass_perplexity = perplexity(one_pass.model);
  std::printf("[gptq] trained LM (Tiny Shakespeare, char level), 3 bits, group 32, held-out perplexity: float %.4f, "
              "RTN %.4f, GPTQ sequential %.4f, GPTQ one pass %.4f\n",
              baseline, rtn_perplexity, gptq_perplexity, one_pass_perplexity);
  EXPECT_LE(gptq_perplexity, rtn_perplexity);
  EXPECT_LE(one_pass_perplexity, rtn_perplexity);

  EXPECT_EQ(rtn.stats.at("method"), "rtn");
  EXPECT_EQ(gptq.stats.at("method"), "gptq");
  EXPECT_EQ(gptq.stats.at("calibration_samples"), 128);
  EXPECT_EQ(gptq.stats.at("calibration_passes"), 8);
  EXPECT_EQ(one_pass.stats.at("calibration_passes"), 1);
  EXPECT_NE(gptq.summary.find("gptq"), std::string::npos) << gptq.summary;
  for (const auto& layer : gptq.stats.at("layers")) {
    EXPECT_EQ(layer.at("method"), "gptq") << layer.dump();
    EXPECT_EQ(layer.at("calibration_rows"), 128 * 64) << layer.dump();
    EXPECT_LT(layer.at("output_mse").get<double>(), layer.at("rtn_output_mse").get<double>()) << layer.dump();
    EXPECT_GT(layer.at("rms_error").get<double>(), 0.0) << layer.dump();
  }
  // Downstream is unchanged: the model saves and reloads, and the MLX export is written.
  std::stringstream saved;
  gptq.model.save(saved);
  auto reloaded = torch::jit::load(saved);
  EXPECT_DOUBLE_EQ(perplexity(reloaded), gptq_perplexity);
  EXPECT_TRUE(fs::exists(artifacts.path() / "mlx" / "model.safetensors"));
  EXPECT_TRUE(gptq.stats.contains("mlx_export"));
}

TEST_F(MlxQuantGptqPass, GivesTheMeasuredNumbersAtEveryWidth) {
  mcompress::testing::TempDir artifacts("gptq-widths");
  for (int bits : {2, 4, 8}) {
    const auto rtn = run_pass({{"bits", int64_t(bits)}, {"group_size", int64_t(32)}}, true, artifacts.path());
    const auto gptq = run_pass({{"bits", int64_t(bits)}, {"group_size", int64_t(32)}, {"method", std::string("gptq")}},
                               true, artifacts.path());
    const double rtn_perplexity = perplexity(rtn.model), gptq_perplexity = perplexity(gptq.model);
    std::printf("[gptq] trained LM, %d bits, group 32, held-out perplexity: RTN %.4f, GPTQ %.4f\n", bits,
                rtn_perplexity, gptq_perplexity);
    if (bits <= 4) {
      EXPECT_LE(gptq_perplexity, rtn_perplexity) << bits;
    }
  }
}

TEST_F(MlxQuantGptqPass, SaysGptqNeedsCalibrationData) {
  mcompress::testing::TempDir artifacts("gptq-no-data");
  try {
    run_pass({{"method", std::string("gptq")}}, false, artifacts.path());
    ADD_FAILURE() << "the pass ran without calibration data";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("method gptq needs calibration data, and the run has none: add a `data:` "
                                         "section"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
