// The mcompress::quantized_linear operator and its kernels: the portable and
// the AVX2 kernels, on every path (fused batch-1, tiled batch, BLAS blocks),
// agree with x @ dequantize(W)^T + bias computed in double.
#include <gtest/gtest.h>

#include <torch/csrc/jit/runtime/operator.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <fmt/format.h>

#include "mcompress/runtime/quantized_linear.h"

namespace rt = mcompress::runtime;

namespace {

// Restores the process-wide kernel settings after a test changes them.
struct KernelSettingsGuard {
  rt::KernelChoice choice = rt::kernel_choice();
  int64_t blas_rows = rt::blas_rows_threshold();
  ~KernelSettingsGuard() {
    rt::set_kernel_choice(choice);
    rt::set_blas_rows_threshold(blas_rows);
  }
};

std::vector<rt::KernelChoice> available_kernels() {
  std::vector<rt::KernelChoice> kernels{rt::KernelChoice::Portable};
  if (rt::cpu_supports_avx2()) kernels.push_back(rt::KernelChoice::Avx2);
  return kernels;
}

const char* name_of(rt::KernelChoice choice) {
  return choice == rt::KernelChoice::Avx2 ? "avx2" : "portable";
}

torch::Tensor reference(const torch::Tensor& x, const rt::QuantizedWeight& q, const torch::Tensor& bias) {
  const auto w = rt::dequantize_weight(q.packed, q.scales, q.biases, q.bits, q.group_size).to(torch::kDouble);
  auto y = torch::matmul(x.to(torch::kDouble), w.t());
  if (bias.defined()) y = y + bias.to(torch::kDouble);
  return y;
}

void expect_close(const torch::Tensor& actual, const torch::Tensor& expected, const std::string& what) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const double scale = expected.abs().max().item<double>() + 1.0;
  const double error = (actual.to(torch::kDouble) - expected).abs().max().item<double>();
  EXPECT_LT(error, 2e-5 * scale) << what;
}

}  // namespace

TEST(QuantizedLinear, EveryKernelAndPathMatchesTheDequantizedProduct) {
  KernelSettingsGuard restore;
  torch::manual_seed(11);
  // 37 outputs: the 4-row blocks and 16-row tiles both leave remainders.
  const int64_t out_features = 37, in_features = 256;
  const auto weight = torch::randn({out_features, in_features}) * 0.2;
  const auto bias = torch::randn({out_features});
  for (auto kernel : available_kernels()) {
    rt::set_kernel_choice(kernel);
    for (int bits : {2, 3, 4, 5, 6, 8}) {
      for (int group_size : {32, 64, 128}) {
        const auto q = rt::quantize_weight(weight, bits, group_size);
        // 1-2 rows: fused kernel; 5 and 17: tiled (AVX2); 70: dequantized blocks + BLAS.
        for (int64_t rows : {1, 2, 5, 17, 70}) {
          const auto x = torch::randn({rows, in_features});
          const auto y = rt::quantized_linear(x, q.packed, q.scales, q.biases, bias, bits, group_size);
          expect_close(y, reference(x, q, bias),
                       fmt::format("{} kernel, {} bits, group {}, {} rows", name_of(kernel), bits,
                                   group_size, rows));
        }
      }
    }
  }
}

TEST(QuantizedLinear, HalfAndBfloat16ScalesAndAnyLeadingShape) {
  KernelSettingsGuard restore;
  torch::manual_seed(12);
  const auto weight = torch::randn({24, 128});
  for (auto kernel : available_kernels()) {
    rt::set_kernel_choice(kernel);
    for (auto dtype : {torch::kHalf, torch::kBFloat16}) {
      for (int bits : {4, 8}) {
        const auto q = rt::quantize_weight(weight.to(dtype), bits, 64);
        ASSERT_EQ(q.scales.scalar_type(), dtype);
        const auto x = torch::randn({2, 3, 128});
        const auto y = rt::quantized_linear(x, q.packed, q.scales, q.biases, c10::nullopt, bits, 64);
        ASSERT_EQ(y.sizes(), (std::vector<int64_t>{2, 3, 24}));
        expect_close(y, reference(x, q, {}), fmt::format("{} {} bits", name_of(kernel), bits));
      }
    }
  }
}

TEST(QuantizedLinear, TheBlasThresholdOnlyChangesThePath) {
  KernelSettingsGuard restore;
  torch::manual_seed(13);
  const auto q = rt::quantize_weight(torch::randn({64, 128}), 4, 32);
  const auto x = torch::randn({8, 128});
  rt::set_blas_rows_threshold(1);
  const auto with_blas = rt::quantized_linear(x, q.packed, q.scales, q.biases, c10::nullopt, 4, 32);
  rt::set_blas_rows_threshold(1000);
  const auto without = rt::quantized_linear(x, q.packed, q.scales, q.biases, c10::nullopt, 4, 32);
  EXPECT_TRUE(torch::allclose(with_blas, without, 1e-5, 1e-5));
}

TEST(QuantizedLinear, IsARegisteredTorchScriptOperator) {
  // What TorchScript resolves `ops.mcompress.quantized_linear` in saved code to.
  const auto ops = torch::jit::getAllOperatorsFor(c10::Symbol::fromQualString("mcompress::quantized_linear"));
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(c10::toString(ops[0]->schema()),
            "mcompress::quantized_linear(Tensor x, Tensor packed, Tensor scales, Tensor biases, Tensor? bias, "
            "int bits, int group_size) -> Tensor");
  torch::manual_seed(14);
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

TEST(QuantizedLinear, ReportsWhichKernelRuns) {
  KernelSettingsGuard restore;
  rt::set_kernel_choice(rt::KernelChoice::Portable);
  EXPECT_EQ(rt::active_kernel(4), "portable");
  rt::set_kernel_choice(rt::KernelChoice::Auto);
  EXPECT_EQ(rt::active_kernel(4), rt::cpu_supports_avx2() ? "avx2" : "portable");
  EXPECT_EQ(rt::active_kernel(3), "portable");  // 3, 5 and 6 bits have no AVX2 kernel
  EXPECT_NE(rt::runtime_library_path().find("libmcompress_runtime"), std::string::npos);
}
