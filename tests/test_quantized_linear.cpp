// The mcompress::quantized_linear operator and its kernels. Every kernel
// (portable, AVX2, and the int8 path on each instruction set the CPU has)
// on every path (fused 1-2 rows, tiled rows, dequantized blocks + BLAS,
// int8) is compared with a reference computed here, in double, from the
// dequantized weight.
//
// Tolerances:
//  - float paths: max |y - ref| < 2e-5 * (max |ref| + 1), float rounding.
//  - int8 path, twice: (1) against the same product with the activations
//    rounded as the path rounds them (per block of 32, q = round(x * 127 /
//    max|x_b|)), computed here in double: max error < 1e-4 * (max |ref| +
//    1), so the integer kernels themselves are exact; (2) against the exact
//    reference: RMS error < 1% of the RMS of the output and max error < 5%
//    of max |ref| for Gaussian activations (about 0.55% RMS measured),
//    RMS error < 1.5% with heavy-tailed activations and outlier channels
//    (about 1.1% measured).
#include <gtest/gtest.h>

#include <torch/csrc/jit/runtime/operator.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <fmt/format.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <limits>

#include "mcompress/runtime/quantized_linear.h"

namespace rt = mcompress::runtime;

namespace {

// Restores the process-wide kernel settings after a test changes them.
struct KernelSettingsGuard {
  rt::KernelChoice choice = rt::kernel_choice();
  int64_t blas_rows = rt::blas_rows_threshold();
  int64_t int8_rows = rt::int8_rows_threshold();
  ~KernelSettingsGuard() {
    rt::set_cpu_feature_limit(rt::KernelChoice::Auto);
    rt::set_kernel_choice(choice);
    rt::set_blas_rows_threshold(blas_rows);
    rt::set_int8_rows_threshold(int8_rows);
  }
};

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

const char* name_of(rt::KernelChoice choice) {
  switch (choice) {
    case rt::KernelChoice::Auto: return "auto";
    case rt::KernelChoice::Portable: return "portable";
    case rt::KernelChoice::Avx2: return "avx2";
    case rt::KernelChoice::AvxVnni: return "avx-vnni";
    case rt::KernelChoice::Avx512Vnni: return "avx512-vnni";
  }
  return "?";
}

const std::vector<rt::KernelChoice> kAllChoices{rt::KernelChoice::Portable, rt::KernelChoice::Avx2,
                                                rt::KernelChoice::AvxVnni, rt::KernelChoice::Avx512Vnni};

std::vector<rt::KernelChoice> available_kernels() {
  std::vector<rt::KernelChoice> kernels;
  for (auto choice : kAllChoices) {
    if (rt::cpu_supports(choice)) kernels.push_back(choice);
  }
  return kernels;
}

// Kernels with an int8 path (every one but the portable kernels).
std::vector<rt::KernelChoice> int8_kernels() {
  auto kernels = available_kernels();
  kernels.erase(kernels.begin());
  return kernels;
}

torch::Tensor dequantized(const rt::QuantizedWeight& q) {
  return rt::dequantize_weight(q.packed, q.scales, q.biases, q.bits, q.group_size).to(torch::kDouble);
}

torch::Tensor reference(const torch::Tensor& x, const rt::QuantizedWeight& q, const torch::Tensor& bias) {
  auto y = torch::matmul(x.to(torch::kDouble), dequantized(q).t());
  if (bias.defined()) y = y + bias.to(torch::kDouble);
  return y;
}

// What the int8 path computes, in double: per block of 32 activations,
// d = max|x| / 127 and q = round(x * (127 / max|x|)) in float as the path
// rounds; the centred codes (c - 2^(bits-1)) * scale meet d * q, the rest
// of the weight (bias + 2^(bits-1) * scale) meets the exact x.
torch::Tensor int8_path_reference(const torch::Tensor& x, const rt::QuantizedWeight& q,
                                  const torch::Tensor& bias) {
  const int64_t K = x.size(-1), G = q.group_size, B = 32;
  const auto x2 = x.reshape({-1, K}).to(torch::kFloat);
  const auto blocks = x2.reshape({x2.size(0), K / B, B});
  const auto amax = blocks.abs().amax(-1, true);
  const auto inverse = torch::where(amax > 0, 127.0f / amax, torch::zeros_like(amax));
  const auto rounded = torch::round(blocks * inverse).to(torch::kDouble) * (amax / 127.0f).to(torch::kDouble);
  const auto x_hat = rounded.reshape({x2.size(0), K});
  const double offset = double(1 << (q.bits - 1));
  const auto rest = (q.biases.to(torch::kDouble) + offset * q.scales.to(torch::kDouble))
                        .repeat_interleave(G, 1);  // [out, in]
  const auto centred = dequantized(q) - rest;
  auto y = torch::matmul(x_hat, centred.t()) + torch::matmul(x2.to(torch::kDouble), rest.t());
  if (bias.defined()) y = y + bias.to(torch::kDouble);
  auto sizes = x.sizes().vec();
  sizes.back() = q.scales.size(0);
  return y.reshape(sizes);
}

void expect_close(const torch::Tensor& actual, const torch::Tensor& expected, const std::string& what,
                  double tolerance = 2e-5) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const double scale = expected.abs().max().item<double>() + 1.0;
  const double error = (actual.to(torch::kDouble) - expected).abs().max().item<double>();
  EXPECT_LT(error, tolerance * scale) << what;
}

struct RelativeError {
  double rms = 0, max = 0;
};

RelativeError relative_error(const torch::Tensor& actual, const torch::Tensor& exact) {
  const auto difference = actual.to(torch::kDouble) - exact;
  return {difference.pow(2).mean().sqrt().item<double>() / exact.pow(2).mean().sqrt().item<double>(),
          difference.abs().max().item<double>() / exact.abs().max().item<double>()};
}

// Checks one call of the int8 path both ways (see the tolerances above).
void expect_int8_result(const torch::Tensor& y, const torch::Tensor& x, const rt::QuantizedWeight& q,
                        const torch::Tensor& bias, const std::string& what) {
  expect_close(y, int8_path_reference(x, q, bias), what + " (int8 rounding reproduced)", 1e-4);
  const auto error = relative_error(y, reference(x, q, bias));
  EXPECT_LT(error.rms, 0.01) << what;
  EXPECT_LT(error.max, 0.05) << what;
}

const std::vector<torch::Dtype> kScaleTypes{torch::kFloat, torch::kHalf, torch::kBFloat16};

}  // namespace

TEST(QuantizedLinear, FloatPathsOfEveryKernelMatchTheDequantizedProduct) {
  KernelSettingsGuard restore;
  rt::set_int8_rows_threshold(kNever);
  torch::manual_seed(11);
  // 37 outputs: 4-row blocks, 16-row tiles and panels all leave remainders.
  const int64_t out_features = 37, in_features = 256;
  const auto weight = torch::randn({out_features, in_features}) * 0.2;
  const auto bias = torch::randn({out_features});
  for (auto kernel : available_kernels()) {
    rt::set_kernel_choice(kernel);
    for (auto dtype : kScaleTypes) {
      for (int bits : {2, 3, 4, 5, 6, 8}) {
        for (int group_size : {32, 64, 128}) {
          const auto q = rt::quantize_weight(weight.to(dtype), bits, group_size);
          // 1-2 rows: fused kernel; 3, 5 and 17: tiled (AVX2); 70: dequantized blocks + BLAS.
          for (int64_t rows : {1, 2, 3, 5, 17, 70}) {
            const auto x = torch::randn({rows, in_features});
            const auto y = rt::quantized_linear(x, q.packed, q.scales, q.biases, bias, bits, group_size);
            expect_close(y, reference(x, q, bias),
                         fmt::format("{} kernel, {} bits, group {}, {} scales, {} rows", name_of(kernel), bits,
                                     group_size, c10::toString(dtype), rows));
          }
        }
      }
    }
  }
}

TEST(QuantizedLinear, Int8PathOfEveryInstructionSetMatchesItsRoundingAndStaysCloseToTheExactProduct) {
  KernelSettingsGuard restore;
  // From the first row on, so every block size and remainder of the
  // products runs (blocks of 8, 4, 2 and 1 rows).
  rt::set_int8_rows_threshold(1);
  torch::manual_seed(12);
  const int64_t out_features = 37, in_features = 256;
  const auto weight = torch::randn({out_features, in_features}) * 0.2;
  const auto bias = torch::randn({out_features});
  for (auto kernel : int8_kernels()) {
    rt::set_kernel_choice(kernel);
    for (auto dtype : kScaleTypes) {
      for (int bits : {2, 3, 4, 5, 6, 8}) {
        for (int group_size : {32, 64, 128}) {
          const auto q = rt::quantize_weight(weight.to(dtype), bits, group_size);
          ASSERT_EQ(q.scales.scalar_type(), dtype);
          for (int64_t rows : {1, 3, 7, 15, 70}) {
            const auto x = torch::randn({rows, in_features});
            ASSERT_EQ(rt::active_kernel(bits, rows), std::string("int8 ") + name_of(kernel));
            const bool with_bias = rows % 2 == 1;
            const auto b = with_bias ? bias : torch::Tensor();
            const auto y = rt::quantized_linear(x, q.packed, q.scales, q.biases,
                                                with_bias ? c10::optional<at::Tensor>(bias) : c10::nullopt,
                                                bits, group_size);
            expect_int8_result(y, x, q, b,
                               fmt::format("int8 {}, {} bits, group {}, {} scales, {} rows", name_of(kernel),
                                           bits, group_size, c10::toString(dtype), rows));
          }
        }
      }
    }
  }
}

// What quantized_linear_int8 computes for one row, in double: per weight
// group, d = max|x_g| / 127 and q = round(x * (127 / max|x_g|)) as the path
// rounds; the centred codes (c - 2^(bits-1)) * scale meet d * q, the rest
// of the weight (bias + 2^(bits-1) * scale) meets the exact x.
torch::Tensor int8_gemv_reference(const torch::Tensor& x, const rt::QuantizedWeight& q, const torch::Tensor& bias) {
  const int64_t K = x.size(-1), G = q.group_size;
  const auto groups = x.to(torch::kFloat).reshape({1, K / G, G});
  const auto amax = groups.abs().amax(-1, true);
  const auto inverse = torch::where(amax > 0, 127.0f / amax, torch::zeros_like(amax));
  const auto x_hat = (torch::round(groups * inverse).to(torch::kDouble) * (amax / 127.0f).to(torch::kDouble))
                         .reshape({1, K});
  const double offset = double(1 << (q.bits - 1));
  const auto rest = (q.biases.to(torch::kDouble) + offset * q.scales.to(torch::kDouble)).repeat_interleave(G, 1);
  auto y = torch::matmul(x_hat, (dequantized(q) - rest).t()) + torch::matmul(x.to(torch::kDouble), rest.t());
  if (bias.defined()) y = y + bias.to(torch::kDouble);
  return y;
}

TEST(QuantizedLinearInt8, OneRowOfEveryInstructionSetMatchesItsRoundingAndStaysCloseToTheExactProduct) {
  KernelSettingsGuard restore;
  torch::manual_seed(21);
  const auto bias = torch::randn({37});
  for (auto kernel : int8_kernels()) {
    rt::set_kernel_choice(kernel);
    for (int64_t in_features : {384, 192, 320, 1024}) {
      const auto weight = torch::randn({37, in_features}) * 0.2;
      for (auto dtype : kScaleTypes) {
        for (int bits : {4, 8}) {
          for (int group_size : {32, 64, 128}) {
            if (in_features % group_size != 0) continue;
            const auto q = rt::quantize_weight(weight.to(dtype), bits, group_size);
            const auto x = torch::randn({1, in_features});
            const std::string what = fmt::format("{}, {} bits, group {}, {} inputs, {} scales", name_of(kernel),
                                                 bits, group_size, in_features, c10::toString(dtype));
            // AVX-512 reads 64-byte chunks; rows of fewer whole chunks take the 256-bit kernels.
            const bool whole_chunks = in_features % (bits == 4 ? 128 : 64) == 0;
            const std::string kernel_name = kernel != rt::KernelChoice::Avx512Vnni || whole_chunks
                                                ? name_of(kernel)
                                                : rt::cpu_supports(rt::KernelChoice::AvxVnni) ? "avx-vnni" : "avx2";
            ASSERT_EQ(rt::active_int8_kernel(bits, group_size, in_features, 1), "int8 gemv " + kernel_name) << what;
            const auto y = rt::quantized_linear_int8(x, q.packed, q.scales, q.biases, bias, bits, group_size);
            expect_close(y, int8_gemv_reference(x, q, bias), what + " (int8 rounding reproduced)", 1e-4);
            // One activation scale per weight group: groups of 128 round coarser (about 1% measured).
            const auto error = relative_error(y, reference(x, q, bias));
            EXPECT_LT(error.rms, group_size == 128 ? 0.015 : 0.01) << what;
            EXPECT_LT(error.max, 0.05) << what;
          }
        }
      }
    }
  }
}

TEST(QuantizedLinearInt8, OtherFormatsAndRowCountsTakeTheirPaths) {
  KernelSettingsGuard restore;
  torch::manual_seed(22);
  const auto weight = torch::randn({20, 96}) * 0.2;
  for (auto kernel : available_kernels()) {
    rt::set_kernel_choice(kernel);
    const bool int8 = kernel != rt::KernelChoice::Portable;
    // 3 bits, and 4 bits over 96 inputs (not whole chunks of 64), at one row; 4 bits at three rows:
    // the int8 panel path (blocks of 32), or without AVX2 exactly as quantized_linear.
    for (const auto& [bits, rows] : std::vector<std::pair<int, int64_t>>{{3, 1}, {4, 1}, {4, 3}}) {
      const auto q = rt::quantize_weight(weight, bits, 32);
      const auto x = torch::randn({rows, 96});
      const auto y = rt::quantized_linear_int8(x, q.packed, q.scales, q.biases, c10::nullopt, bits, 32);
      const std::string what = fmt::format("{} bits, {} rows, {}", bits, rows, name_of(kernel));
      if (int8) {
        EXPECT_EQ(rt::active_int8_kernel(bits, 32, 96, rows), std::string("int8 ") + name_of(kernel)) << what;
        expect_int8_result(y, x, q, {}, what);
      } else {
        EXPECT_EQ(rt::active_int8_kernel(bits, 32, 96, rows), "portable") << what;
        expect_close(y, reference(x, q, {}), what);
      }
    }
  }
  // Bad input is refused as by quantized_linear.
  const auto q = rt::quantize_weight(weight, 4, 32);
  EXPECT_THROW(rt::quantized_linear_int8(torch::randn({1, 95}), q.packed, q.scales, q.biases, c10::nullopt, 4, 32),
               std::invalid_argument);
}

TEST(QuantizedLinear, Int8PathKeepsItsErrorOnHeavyTailedActivationsWithOutlierChannels) {
  // What a transformer's linear layers see: heavy tails, and a few channels
  // tens of times larger than the rest. Per-block scales keep an outlier's
  // damage inside its block of 32.
  KernelSettingsGuard restore;
  torch::manual_seed(13);
  const int64_t out_features = 96, in_features = 1024, rows = 64;
  const auto weight = torch::randn({out_features, in_features}) * 0.05;
  auto x = torch::randn({rows, in_features}) / torch::randn({rows, in_features}).abs().add(0.3).sqrt();
  x.index_put_({torch::indexing::Slice(), torch::tensor({7, 300, 301, 777})}, torch::randn({rows, 4}) * 40);
  for (auto kernel : int8_kernels()) {
    rt::set_kernel_choice(kernel);
    for (int bits : {2, 3, 4, 5, 6, 8}) {
      for (int group_size : {32, 64, 128}) {
        const auto q = rt::quantize_weight(weight.to(torch::kHalf), bits, group_size);
        ASSERT_EQ(rt::active_kernel(bits, rows), std::string("int8 ") + name_of(kernel));
        const auto y = rt::quantized_linear(x, q.packed, q.scales, q.biases, c10::nullopt, bits, group_size);
        const std::string what = fmt::format("int8 {}, {} bits, group {}", name_of(kernel), bits, group_size);
        expect_close(y, int8_path_reference(x, q, {}), what + " (int8 rounding reproduced)", 1e-4);
        EXPECT_LT(relative_error(y, reference(x, q, {})).rms, 0.015) << what;
      }
    }
  }
}

TEST(QuantizedLinear, SmallAndOddShapesOnEveryPath) {
  // One block, three groups (fewer than the 8 the panels convert at once),
  // panels of 1, 5 and 17 rows, and row counts around the blocks of 8.
  KernelSettingsGuard restore;
  torch::manual_seed(18);
  for (auto kernel : available_kernels()) {
    rt::set_kernel_choice(kernel);
    for (int64_t in_features : {32, 96, 160}) {
      for (int64_t out_features : {1, 5, 17}) {
        const auto weight = torch::randn({out_features, in_features});
        const auto bias = torch::randn({out_features});
        for (int bits : {2, 3, 4, 5, 6, 8}) {
          const auto q = rt::quantize_weight(weight, bits, 32);
          for (int64_t rows : {1, 9, 64, 65}) {
            const auto x = torch::randn({rows, in_features});
            const auto y = rt::quantized_linear(x, q.packed, q.scales, q.biases, bias, bits, 32);
            const std::string what = fmt::format("{} ({}), {} bits, [{}, {}], {} rows", name_of(kernel),
                                                 rt::active_kernel(bits, rows), bits, out_features, in_features,
                                                 rows);
            if (rt::active_kernel(bits, rows).rfind("int8", 0) == 0) {
              expect_close(y, int8_path_reference(x, q, bias), what, 1e-4);
            } else {
              expect_close(y, reference(x, q, bias), what);
            }
          }
        }
      }
    }
  }
}

TEST(QuantizedLinear, KernelsReadNothingPastThePackedWeight) {
  // The packed words end right before a page that cannot be read: a kernel
  // that loads a whole vector past the last code faults here.
  KernelSettingsGuard restore;
  torch::manual_seed(19);
  const long page = sysconf(_SC_PAGESIZE);
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    const auto q = rt::quantize_weight(torch::randn({17, 96}), bits, 32);
    const size_t bytes = size_t(q.packed.numel()) * 4;
    const size_t mapped = (bytes + page - 1) / page * page + page;
    auto* base = static_cast<uint8_t*>(mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(base, MAP_FAILED);
    uint8_t* guard = base + mapped - page;
    ASSERT_EQ(mprotect(guard, size_t(page), PROT_NONE), 0);
    uint8_t* start = guard - bytes;
    std::memcpy(start, q.packed.data_ptr(), bytes);
    const auto packed = torch::from_blob(start, q.packed.sizes(), torch::kInt);
    for (auto kernel : available_kernels()) {
      rt::set_kernel_choice(kernel);
      for (int64_t int8_rows : {int64_t{1}, kNever}) {
        rt::set_int8_rows_threshold(int8_rows);
        for (int64_t rows : {1, 5, 70}) {
          const auto x = torch::randn({rows, 96});
          const auto y = rt::quantized_linear(x, packed, q.scales, q.biases, c10::nullopt, bits, 32);
          EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
        }
      }
    }
    munmap(base, mapped);
  }
}

TEST(QuantizedLinear, AnyLeadingShapeAndInputDtype) {
  KernelSettingsGuard restore;
  torch::manual_seed(14);
  const auto weight = torch::randn({24, 128});
  for (auto kernel : available_kernels()) {
    rt::set_kernel_choice(kernel);
    for (int bits : {3, 4, 8}) {
      const auto q = rt::quantize_weight(weight.to(torch::kBFloat16), bits, 64);
      // 2x3 rows (fused/tiled), 3x7 rows (int8 on AVX2 CPUs), and a
      // non-contiguous view.
      for (auto shape : {std::vector<int64_t>{2, 3, 128}, std::vector<int64_t>{3, 7, 128}}) {
        const auto x = torch::randn(shape);
        const auto y = rt::quantized_linear(x, q.packed, q.scales, q.biases, c10::nullopt, bits, 64);
        ASSERT_EQ(y.sizes(), (std::vector<int64_t>{shape[0], shape[1], 24}));
        const std::string what = fmt::format("{} {} bits, {} rows", name_of(kernel), bits, shape[0] * shape[1]);
        if (rt::active_kernel(bits, shape[0] * shape[1]).rfind("int8", 0) == 0) {
          expect_int8_result(y, x, q, {}, what);
        } else {
          expect_close(y, reference(x, q, {}), what);
        }
      }
      const auto wide = torch::randn({128, 5});
      const auto y = rt::quantized_linear(wide.t(), q.packed, q.scales, q.biases, c10::nullopt, bits, 64);
      expect_close(y, reference(wide.t().contiguous(), q, {}), fmt::format("{} transposed input", name_of(kernel)));
      // Half inputs come back as half.
      const auto half = rt::quantized_linear(wide.t().to(torch::kHalf), q.packed, q.scales, q.biases, c10::nullopt,
                                             bits, 64);
      EXPECT_EQ(half.scalar_type(), torch::kHalf);
    }
  }
}

TEST(QuantizedLinear, ThresholdsOnlyChangeThePath) {
  KernelSettingsGuard restore;
  torch::manual_seed(15);
  const auto q = rt::quantize_weight(torch::randn({64, 128}), 4, 32);
  const auto x = torch::randn({8, 128});
  rt::set_int8_rows_threshold(kNever);
  rt::set_blas_rows_threshold(1);
  const auto with_blas = rt::quantized_linear(x, q.packed, q.scales, q.biases, c10::nullopt, 4, 32);
  rt::set_blas_rows_threshold(1000);
  const auto without = rt::quantized_linear(x, q.packed, q.scales, q.biases, c10::nullopt, 4, 32);
  EXPECT_TRUE(torch::allclose(with_blas, without, 1e-5, 1e-5));
  if (rt::cpu_supports_avx2()) {
    rt::set_int8_rows_threshold(8);
    EXPECT_EQ(rt::active_kernel(4, 7), "avx2");
    EXPECT_EQ(rt::active_kernel(4, 8).rfind("int8", 0), 0u);
    const auto int8 = rt::quantized_linear(x, q.packed, q.scales, q.biases, c10::nullopt, 4, 32);
    expect_int8_result(int8, x, q, {}, "int8 from 8 rows");
  }
  rt::set_int8_rows_threshold(0);  // back to the default
  EXPECT_GT(rt::int8_rows_threshold(), 1);
}

TEST(QuantizedLinear, NonFiniteActivationsGiveNonFiniteOutputsOnEveryPath) {
  KernelSettingsGuard restore;
  const auto q = rt::quantize_weight(torch::randn({20, 64}), 4, 32);
  for (auto kernel : available_kernels()) {
    rt::set_kernel_choice(kernel);
    for (int64_t int8_rows : {int64_t{1}, kNever}) {
      rt::set_int8_rows_threshold(int8_rows);
      for (float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
        auto x = torch::randn({3, 64});
        x[1][10] = bad;
        const auto y = rt::quantized_linear(x, q.packed, q.scales, q.biases, c10::nullopt, 4, 32);
        const std::string what = fmt::format("{} {}, {}", name_of(kernel), rt::active_kernel(4, 3), bad);
        EXPECT_FALSE(torch::isfinite(y[1]).any().item<bool>()) << what;
        EXPECT_TRUE(torch::isfinite(y[0]).all().item<bool>()) << what;
      }
    }
  }
}

TEST(QuantizedLinear, IsARegisteredTorchScriptOperator) {
  // What TorchScript resolves `ops.mcompress.quantized_linear` in saved code to.
  const auto ops = torch::jit::getAllOperatorsFor(c10::Symbol::fromQualString("mcompress::quantized_linear"));
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(c10::toString(ops[0]->schema()),
            "mcompress::quantized_linear(Tensor x, Tensor packed, Tensor scales, Tensor biases, Tensor? bias, "
            "int bits, int group_size) -> Tensor");
  torch::manual_seed(16);
  const auto q = rt::quantize_weight(torch::randn({16, 64}), 4, 64);
  const auto x = torch::randn({3, 64});
  torch::jit::Stack stack{x, q.packed, q.scales, q.biases, c10::IValue(), int64_t{4}, int64_t{64}};
  ops[0]->getOperation()(stack);
  ASSERT_EQ(stack.size(), 1u);
  expect_close(stack[0].toTensor(), reference(x, q, {}), "through the operator registry");
  EXPECT_EQ(torch::jit::getAllOperatorsFor(c10::Symbol::fromQualString("mcompress::affine_quantize")).size(), 1u);
}

TEST(QuantizedLinear, ExplainsShapeAndFormatMistakes) {
  const auto q = rt::quantize_weight(torch::randn({16, 64}), 4, 32);
  auto message = [&](auto&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] {
              rt::quantized_linear(torch::randn({2, 60}), q.packed, q.scales, q.biases, c10::nullopt, 4, 32);
            }).find("must end in the layer's 64 input features"),
            std::string::npos);
  EXPECT_NE(message([&] {
              rt::quantized_linear(torch::randn({2, 64}), q.packed, q.scales, q.biases, c10::nullopt, 8, 32);
            }).find("words per row"),
            std::string::npos);
  EXPECT_NE(message([&] {
              rt::quantized_linear(torch::randn({2, 64}), q.packed, q.scales, q.biases, c10::nullopt, 7, 32);
            }).find("bits must be 2, 3, 4, 5, 6 or 8"),
            std::string::npos);
  EXPECT_NE(message([&] {
              rt::quantized_linear(torch::randn({2, 64}), q.packed, q.scales, q.biases, torch::randn({3}), 4, 32);
            }).find("bias"),
            std::string::npos);
}

TEST(QuantizedLinear, ReportsWhichKernelRunsForEachWidthAndRowCount) {
  KernelSettingsGuard restore;
  rt::set_kernel_choice(rt::KernelChoice::Portable);
  EXPECT_EQ(rt::active_kernel(4), "portable");
  EXPECT_EQ(rt::active_kernel(4, rt::blas_rows_threshold()), "portable + blas");
  rt::set_kernel_choice(rt::KernelChoice::Auto);
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    // Every width has AVX2 kernels.
    EXPECT_EQ(rt::active_kernel(bits), rt::cpu_supports_avx2() ? "avx2" : "portable") << bits;
  }
  if (rt::cpu_supports_avx2()) {
    const std::string best = rt::cpu_supports(rt::KernelChoice::Avx512Vnni) ? "int8 avx512-vnni"
                             : rt::cpu_supports(rt::KernelChoice::AvxVnni)  ? "int8 avx-vnni"
                                                                            : "int8 avx2";
    EXPECT_EQ(rt::active_kernel(4, rt::int8_rows_threshold()), best);
    EXPECT_EQ(rt::active_kernel(4, rt::int8_rows_threshold() - 1), "avx2");
  }
  EXPECT_NE(rt::runtime_library_path().find("libmcompress_runtime"), std::string::npos);
}

TEST(QuantizedLinear, ForcingKernelsTheCpuLacksThrowsAndAutoFallsBack) {
  KernelSettingsGuard restore;
  for (auto choice : kAllChoices) {
    if (rt::cpu_supports(choice)) {
      EXPECT_NO_THROW(rt::set_kernel_choice(choice)) << name_of(choice);
    } else {
      EXPECT_THROW(rt::set_kernel_choice(choice), std::invalid_argument) << name_of(choice);
    }
  }
  // A CPU without VNNI (or without AVX2), as far as the runtime can tell.
  torch::manual_seed(17);
  const auto q = rt::quantize_weight(torch::randn({40, 128}), 5, 32);
  const auto x = torch::randn({70, 128});
  for (auto limit : {rt::KernelChoice::Avx2, rt::KernelChoice::Portable}) {
    rt::set_kernel_choice(rt::KernelChoice::Auto);
    rt::set_cpu_feature_limit(limit);
    for (auto choice : kAllChoices) {
      const bool above = choice != rt::KernelChoice::Portable && !(choice == rt::KernelChoice::Avx2 &&
                                                                    limit == rt::KernelChoice::Avx2);
      if (above) {
        EXPECT_FALSE(rt::cpu_supports(choice)) << name_of(choice);
        EXPECT_THROW(rt::set_kernel_choice(choice), std::invalid_argument) << name_of(choice);
      }
    }
    const auto y = rt::quantized_linear(x, q.packed, q.scales, q.biases, c10::nullopt, 5, 32);
    if (limit == rt::KernelChoice::Portable) {
      EXPECT_EQ(rt::active_kernel(5, 70), "portable + blas");
      expect_close(y, reference(x, q, {}), "no AVX2");
    } else if (rt::cpu_supports_avx2()) {
      EXPECT_EQ(rt::active_kernel(5, 70), "int8 avx2");
      expect_int8_result(y, x, q, {}, "AVX2 without VNNI");
    }
  }
}
