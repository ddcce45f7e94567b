// Static int8 quantization (mcompress/quantization/static_int8.h) and the
// int8_quant pass: a zoo CNN trained briefly on real Fashion-MNIST keeps its
// accuracy, the saved model runs in plain PyTorch with the same outputs, real
// torchvision architectures quantize completely, and skipped layers and bad
// settings are reported.
#include <gtest/gtest.h>

#include <torch/script.h>

#include <cstdio>
#include <fstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "mcompress/framework/sources/fashion_mnist.h"
#include "mcompress/framework/sources/zoo.h"
#include "mcompress/models/evaluate.h"
#include "mcompress/models/module_copy.h"
#include "mcompress/quantization/static_int8.h"
#include "mcompress/sdk/error.h"
#include "mcompress/training/trainer.h"
#include "pass_loading.h"
#include "test_support.h"
#include "torchvision_models.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;

std::vector<torch::Tensor> batches_of(const torch::Tensor& inputs, int64_t batch_size, int64_t count) {
  std::vector<torch::Tensor> batches;
  for (int64_t i = 0; i < count && (i + 1) * batch_size <= inputs.size(0); ++i)
    batches.push_back(inputs.narrow(0, i * batch_size, batch_size));
  return batches;
}

torch::Tensor forward(const torch::jit::Module& model, const torch::Tensor& input) {
  torch::NoGradGuard no_grad;
  return forward_tensor(model, input);
}

// Largest difference relative to the largest float output.
double relative_error(const torch::Tensor& reference, const torch::Tensor& other) {
  return (reference - other).abs().max().item<double>() / reference.abs().max().item<double>();
}

std::string message_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

// The zoo CNN (two conv+BN+relu+pool blocks, two linear layers) trained for
// one epoch on 12,000 real Fashion-MNIST images.
class TrainedCnn : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    torch::manual_seed(0);
    auto train = load_fashion_mnist(MCOMPRESS_FASHION_MNIST_DIR, Split::Train, 12000);
    test_ = load_fashion_mnist(MCOMPRESS_FASHION_MNIST_DIR, Split::Test);
    calibration_ = std::make_shared<Dataset>(train->slice(0, 256));
    model_ = build_zoo_model("cnn", {}, 10, 1);
    TrainOptions options;
    options.learning_rate = 0.05;
    options.keep_best = false;
    NullProgress progress;
    NullLogger log;
    train_model(model_, *train, nullptr, options, cross_entropy_loss(), progress, log);
    model_.eval();
    float_accuracy_ = accuracy(model_);
  }
  static void TearDownTestSuite() {
    test_.reset();
    calibration_.reset();
  }

  static double accuracy(const torch::jit::Module& model) {
    NullProgress progress;
    return evaluate_accuracy(model, *test_, 500, progress);
  }

  static StaticInt8Model quantize(const StaticInt8Options& options = {}) {
    return quantize_static_int8(model_, batches_of(calibration_->inputs, 32, 8), options);
  }

  struct PassOutcome {
    torch::jit::Module model;
    nlohmann::json stats;
    std::string summary;
  };
  static PassOutcome run_pass(const std::map<std::string, ParamValue>& settings, bool with_calibration = true) {
    const Pass& pass = testing::plugin_pass("int8_quant");
    Params params;
    for (const auto& spec : pass.info().params) params.set(spec.name, *spec.default_value);
    for (const auto& [name, value] : settings) params.set(name, value);
    NullLogger log;
    NullProgress progress;
    PassContext context;
    context.model = deep_copy(model_);
    context.params = &params;
    context.log = &log;
    context.progress = &progress;
    if (with_calibration) context.calibration = calibration_;
    const auto result = pass.run(context);
    return {context.model, result.stats, result.summary};
  }

  static torch::jit::Module model_;
  static DatasetPtr test_, calibration_;
  static double float_accuracy_;
};
torch::jit::Module TrainedCnn::model_;
DatasetPtr TrainedCnn::test_;
DatasetPtr TrainedCnn::calibration_;
double TrainedCnn::float_accuracy_ = 0;

TEST_F(TrainedCnn, QuantizesEveryLayerFusingReluAndKeepsAccuracyWithinOnePoint) {
  const auto int8 = quantize();
  ASSERT_EQ(int8.layers.size(), 4u);
  for (const auto& layer : int8.layers) EXPECT_TRUE(layer.quantized) << layer.name << ": " << layer.reason;
  EXPECT_EQ(int8.layers[0].name, "conv1");
  EXPECT_EQ(int8.layers[3].name, "fc2");
  EXPECT_EQ(int8.layers[0].fused, "relu");
  EXPECT_EQ(int8.layers[2].fused, "relu");
  EXPECT_EQ(int8.layers[3].fused, "");
  // Quantized once at the input, dequantized once at the output; nothing in float between.
  EXPECT_EQ(int8.quantize_calls, 1);
  EXPECT_EQ(int8.dequantize_calls, 1);
  EXPECT_TRUE(int8.float_ops.empty());

  const double int8_accuracy = accuracy(int8.model);
  std::printf("[static int8] zoo cnn, Fashion-MNIST test (10000): float %.4f, int8 %.4f\n", float_accuracy_,
              int8_accuracy);
  EXPECT_GT(float_accuracy_, 0.75);
  EXPECT_NEAR(int8_accuracy, float_accuracy_, 0.01);

  const auto input = test_->inputs.narrow(0, 0, 64);
  EXPECT_LT(relative_error(forward(model_, input), forward(int8.model, input)), 0.05);
}

TEST_F(TrainedCnn, PercentileObserverAlsoKeepsAccuracy) {
  StaticInt8Options options;
  options.observer = RangeObserver::Percentile;
  const double int8_accuracy = accuracy(quantize(options).model);
  std::printf("[static int8] percentile observer: float %.4f, int8 %.4f\n", float_accuracy_, int8_accuracy);
  EXPECT_NEAR(int8_accuracy, float_accuracy_, 0.015);
}

TEST_F(TrainedCnn, SavedModelRunsInPlainPyTorchWithTheSameOutputs) {
  testing::TempDir dir("static-int8");
  const auto int8 = quantize();
  const fs::path model_file = dir.path() / "int8.pt";
  int8.model.save(model_file.string());
  // A model that went through a file runs like the one in memory, copies too (the host copies per stage).
  const torch::Tensor input = test_->inputs.narrow(0, 0, 8).contiguous();
  const torch::Tensor expected = forward(int8.model, input);
  EXPECT_TRUE(torch::equal(forward(torch::jit::load(model_file.string()), input), expected));
  EXPECT_TRUE(torch::equal(forward(deep_copy(int8.model), input), expected));

  std::ofstream(dir.path() / "input.bin", std::ios::binary)
      .write(static_cast<const char*>(input.data_ptr()), input.numel() * sizeof(float));
  const auto result = testing::run_command(
      std::string(MCOMPRESS_PYTHON) + " -c \"import torch; torch.set_num_threads(1); "
      "m = torch.jit.load(r'" + model_file.string() + "'); "
      "x = torch.frombuffer(bytearray(open(r'" + (dir.path() / "input.bin").string() +
      "', 'rb').read()), dtype=torch.float32).reshape(8, 1, 28, 28); "
      "y = m(x).contiguous(); open(r'" + (dir.path() / "output.bin").string() +
      "', 'wb').write(y.numpy().tobytes()); print(torch.backends.quantized.engine, tuple(y.shape))\"");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("(8, 10)"), std::string::npos) << result.output;
  const std::string bytes = testing::read_text(dir.path() / "output.bin");
  ASSERT_EQ(bytes.size(), expected.numel() * sizeof(float));
  const torch::Tensor python_output = torch::from_blob(const_cast<char*>(bytes.data()), {8, 10}).clone();
  EXPECT_LE((python_output - expected).abs().max().item<double>(), 1e-5) << result.output;
}

TEST_F(TrainedCnn, IgnoredLayersStayFloatAndAreReported) {
  StaticInt8Options options;
  options.ignore = {"conv1"};
  const auto int8 = quantize(options);
  EXPECT_FALSE(int8.layers[0].quantized);
  EXPECT_EQ(int8.layers[0].reason, "ignored by pattern `conv1`");
  EXPECT_TRUE(int8.layers[1].quantized);
  // conv1 (and the pooling after it) runs in float with its folded weight; its output is quantized for conv2.
  EXPECT_EQ(int8.float_ops, std::vector<std::string>({"aten::conv2d", "aten::max_pool2d", "aten::relu"}));
  EXPECT_EQ(int8.quantize_calls, 1);
  EXPECT_NEAR(accuracy(int8.model), float_accuracy_, 0.01);
}

TEST_F(TrainedCnn, PassReportsLayersAndRejectsWhatItCannotDo) {
  const auto outcome = run_pass({{"ignore", std::vector<std::string>{"fc2"}}, {"calibration_batches", int64_t(4)}});
  EXPECT_EQ(outcome.stats.at("quantized_layers"), 3);
  EXPECT_EQ(outcome.stats.at("skipped_layers"), 1);
  EXPECT_EQ(outcome.stats.at("calibration_samples"), 128);
  EXPECT_EQ(outcome.stats.at("layers")[3].at("reason"), "ignored by pattern `fc2`");
  EXPECT_NE(outcome.summary.find("3/4 layers to int8"), std::string::npos) << outcome.summary;
  EXPECT_NE(outcome.summary.find("skipped fc2 (ignored by pattern `fc2`)"), std::string::npos) << outcome.summary;

  EXPECT_NE(message_of([] { run_pass({}, /*with_calibration=*/false); })
                .find("int8_quant needs calibration data to record activation ranges"),
            std::string::npos);
  const auto none = message_of([] { run_pass({{"ignore", std::vector<std::string>{"*"}}}); });
  EXPECT_NE(none.find("int8_quant: no layer was quantized: conv1 (ignored by pattern `*`)"), std::string::npos)
      << none;
  const auto percentile = message_of([] {
    StaticInt8Options options;
    options.percentile = 20;
    quantize(options);
  });
  EXPECT_NE(percentile.find("percentile 20 is outside (50, 100]"), std::string::npos) << percentile;
  EXPECT_NE(message_of([] { quantize_static_int8(model_, {}); }).find("no calibration batch given"),
            std::string::npos);
  // The schema bounds what the recipe validator accepts.
  const auto& params = testing::plugin_pass("int8_quant").info().params;
  const auto observer = std::find_if(params.begin(), params.end(), [](const auto& p) { return p.name == "observer"; });
  ASSERT_NE(observer, params.end());
  EXPECT_EQ(observer->choices, (std::vector<std::string>{"minmax", "percentile"}));
}

// torchvision architectures (random weights): every convolution and the
// classifier quantized, residual adds and ReLU6 in int8, outputs close.
void expect_fully_quantized(const std::string& name, size_t layers) {
  auto model = torch::jit::load(testing::scripted_torchvision_model(name).string());
  torch::manual_seed(0);
  const auto calibration = torch::randn({8, 3, 64, 64});
  // Freshly initialised BatchNorm statistics let MobileNetV2's activations
  // vanish (outputs ~1e-9); statistics of real batches keep them in range.
  model.train();
  {
    torch::NoGradGuard no_grad;
    for (int i = 0; i < 4; ++i) model.forward({torch::randn({8, 3, 64, 64})});
  }
  model.eval();
  const auto int8 = quantize_static_int8(model, batches_of(calibration, 4, 2));
  EXPECT_EQ(int8.layers.size(), layers);
  for (const auto& layer : int8.layers) EXPECT_TRUE(layer.quantized) << layer.name << ": " << layer.reason;
  EXPECT_TRUE(int8.float_ops.empty()) << fmt::format("{}", fmt::join(int8.float_ops, ", "));
  EXPECT_EQ(int8.quantize_calls, 1);
  EXPECT_EQ(int8.dequantize_calls, 1);
  const auto input = calibration.narrow(0, 0, 2);
  const double error = relative_error(forward(model, input), forward(int8.model, input));
  std::printf("[static int8] %s: max |int8 - float| / max |float| = %.4f\n", name.c_str(), error);
  EXPECT_LT(error, 0.25);
}

TEST(StaticInt8Torchvision, QuantizesResNet18Completely) { expect_fully_quantized("resnet18", 21); }

TEST(StaticInt8Torchvision, QuantizesMobileNetV2Completely) { expect_fully_quantized("mobilenet_v2", 53); }

}  // namespace
}  // namespace mcompress
