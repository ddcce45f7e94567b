// optimize_for_cpu_inference (inference_optimization.h) and the
// optimize_inference pass: the frozen model computes the same outputs,
// BatchNorm is folded away, weights are channels-last (or, in the oneDNN
// form, convolutions run on oneDNN weights reordered at load), and the saved
// file runs in plain PyTorch with the same outputs.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <torch/script.h>
#include <unistd.h>

#include <sstream>

#include <mcompress/models/evaluate.h>
#include <mcompress/models/inference_optimization.h>
#include <mcompress/models/model_stats.h>
#include <mcompress/models/module_copy.h>
#include <mcompress/sdk/pass.h>

#include "pass_loading.h"
#include "test_support.h"
#include "torchvision_models.h"

namespace fs = std::filesystem;
using mcompress::testing::run_command;
using mcompress::testing::TempDir;
using torch::jit::Module;

namespace {

torch::Tensor run(const Module& model, const torch::Tensor& input) {
  torch::NoGradGuard no_grad;
  mcompress::EvalModeGuard eval(model);
  return mcompress::forward_tensor(model, input);
}

int64_t count_ops(const Module& model, const std::string& op) {
  int64_t count = 0;
  for (const auto* node : model.get_method("forward").graph()->nodes()) count += node->kind().toQualString() == op;
  return count;
}

torch::Tensor input_of(at::IntArrayRef shape) {
  int64_t numel = 1;
  for (auto s : shape) numel *= s;
  return torch::linspace(-1, 1, numel).reshape(shape);
}

void expect_close(const torch::Tensor& actual, const torch::Tensor& expected) {
  ASSERT_EQ(actual.sizes(), expected.sizes());
  const double scale = expected.abs().max().item<double>() + 1e-6;
  EXPECT_LE((actual - expected).abs().max().item<double>(), 1e-4 * scale);
}

// Saved, loaded here and by plain PyTorch in a fresh process: the same outputs.
void expect_runs_in_plain_pytorch(const Module& optimized, const torch::Tensor& input,
                                  const torch::Tensor& expected, const std::string& name) {
  TempDir tmp("optimized-" + name);
  const fs::path file = tmp.path() / "model.pt";
  optimized.save(file.string());
  expect_close(run(torch::jit::load(file.string()), input), expected);
  const auto python = run_command(
      std::string(MCOMPRESS_PYTHON) + " -c \"import torch; m = torch.jit.load(r'" + file.string() +
      "'); x = torch.linspace(-1, 1, 2*3*64*64).reshape(2, 3, 64, 64); "
      "print('OUTPUT', ' '.join(repr(v) for v in m(x).flatten().tolist()))\"");
  ASSERT_EQ(python.exit_code, 0) << python.output;
  std::istringstream values(python.output.substr(python.output.find("OUTPUT ") + 7));
  std::vector<double> parsed;
  for (double v; values >> v;) parsed.push_back(v);
  expect_close(torch::tensor(parsed, torch::kDouble), expected.flatten().to(torch::kDouble));
}

TEST(InferenceOptimization, FoldsBatchNormKeepsOutputsAndRunsInPlainPyTorch) {
  for (const std::string name : {"resnet18", "mobilenet_v2"}) {
    SCOPED_TRACE(name);
    const Module original = torch::jit::load(mcompress::testing::scripted_torchvision_model(name).string());
    const torch::Tensor input = input_of({2, 3, 64, 64});
    const torch::Tensor expected = run(original, input);
    const Module optimized = mcompress::optimize_for_cpu_inference(original);
    EXPECT_EQ(count_ops(optimized, "aten::batch_norm"), 0);
    EXPECT_GT(count_ops(optimized, "aten::conv2d"), 0);
    EXPECT_EQ(mcompress::count_parameters(optimized), 0);  // constants now
    expect_close(run(optimized, input), expected);
    // Weights are stored channels-last.
    bool any_channels_last = false;
    for (const auto* node : optimized.get_method("forward").graph()->nodes()) {
      if (node->kind() == c10::prim::Constant && node->output()->type()->kind() == c10::TypeKind::TensorType) {
        const auto t = node->t(c10::attr::value);
        any_channels_last |= t.dim() == 4 && t.is_contiguous(at::MemoryFormat::ChannelsLast) && !t.is_contiguous();
      }
    }
    EXPECT_TRUE(any_channels_last);

    expect_runs_in_plain_pytorch(optimized, input, expected, name);
  }
}

// The form torch.jit.optimize_for_inference gives (convolutions in oneDNN's
// layout, fused relu/add), saved: every convolution and the classifier run through oneDNN, no
// BatchNorm is left, and the file loads and runs the same here and in PyTorch.
TEST(InferenceOptimization, OneDnnFormSavesAndReloadsWithTheSameOutputs) {
  mcompress::InferenceOptions options;
  options.onednn = true;
  for (const std::string name : {"resnet18", "mobilenet_v2", "resnext50_32x4d"}) {
    SCOPED_TRACE(name);
    const Module original = torch::jit::load(mcompress::testing::scripted_torchvision_model(name, true).string());
    const torch::Tensor input = input_of({2, 3, 64, 64});
    const torch::Tensor expected = run(original, input);
    const Module optimized = mcompress::optimize_for_cpu_inference(original, options);
    EXPECT_EQ(count_ops(optimized, "aten::batch_norm"), 0);
    EXPECT_EQ(count_ops(optimized, "aten::conv2d"), 0);
    EXPECT_GT(count_ops(optimized, "prim::mkldnn_convolution"), 0);
    // The classifier too, as a 1x1 convolution on the pooled features: no BLAS
    // product whose speed depends on BLAS threading.
    EXPECT_EQ(count_ops(optimized, "aten::matmul"), 0);
    EXPECT_EQ(count_ops(optimized, "aten::mkldnn_linear"), 0);
    EXPECT_EQ(count_ops(optimized, "aten::flatten"), 1);
    // ReLU6 stays in oneDNN's layout: no round trip through a plain tensor.
    if (name == "mobilenet_v2") {
      EXPECT_EQ(count_ops(optimized, "prim::MKLDNNHardSigmoid_"), 35);
      EXPECT_EQ(count_ops(optimized, "aten::hardtanh"), 0);
      EXPECT_EQ(count_ops(optimized, "aten::to_dense"), 2);  // the classifier's output; the last features for their size
    }
    expect_close(run(optimized, input), expected);
    EXPECT_EQ(mcompress::count_macs(optimized, input), mcompress::count_macs(original, input));
    expect_close(run(mcompress::deep_copy(optimized), input), expected);  // as the host copies stages
    expect_runs_in_plain_pytorch(optimized, input, expected, name);
  }
}

// The channels-last form without BLAS (what the pass keeps when it times
// faster): every convolution calls oneDNN's, the classifier is a oneDNN 1x1
// convolution, and plain PyTorch runs the file.
TEST(InferenceOptimization, ChannelsLastFormWithoutBlasRunsEveryProductInOneDnn) {
  mcompress::InferenceOptions options;
  options.without_blas = true;
  const Module original = torch::jit::load(mcompress::testing::scripted_torchvision_model("resnet18", true).string());
  const torch::Tensor input = input_of({2, 3, 64, 64});
  const torch::Tensor expected = run(original, input);
  const Module optimized = mcompress::optimize_for_cpu_inference(original, options);
  EXPECT_EQ(count_ops(optimized, "aten::batch_norm"), 0);
  EXPECT_EQ(count_ops(optimized, "prim::mkldnn_convolution"), 1);
  EXPECT_EQ(count_ops(optimized, "aten::linear") + count_ops(optimized, "aten::matmul"), 0);
  EXPECT_EQ(count_ops(optimized, "aten::conv2d"), 0);
  EXPECT_EQ(count_ops(optimized, "aten::mkldnn_convolution"), 20);
  expect_close(run(optimized, input), expected);
  EXPECT_EQ(mcompress::count_macs(optimized, input), mcompress::count_macs(original, input));
  expect_runs_in_plain_pytorch(optimized, input, expected, "resnet18-channels-last");
}

// Channel counts that are not multiples of oneDNN's blocks, as pruning
// leaves them (20), beside whole blocks (32), a depthwise convolution, and a
// clamp to 4 before pooling. PyTorch 1.13's oneDNN hardsigmoid is wrong on a
// padded block, so those ReLU6 keep the round trip through a plain tensor.
TEST(InferenceOptimization, OneDnnFormKeepsOutputsForChannelCountsOutsideTheBlocks) {
  Module m(c10::QualifiedName("__torch__.inference_test.Pruned"), std::make_shared<torch::jit::CompilationUnit>(), true);
  m.register_attribute("training", c10::BoolType::get(), false);
  torch::manual_seed(0);
  // Scaled so that the activations cross both bounds of every clamp.
  auto add = [&](const std::string& name, std::vector<int64_t> shape, double scale) {
    m.register_parameter(name, torch::randn(shape) * scale, false);
  };
  add("w1", {20, 3, 3, 3}, 1.2);
  add("b1", {20}, 1.0);
  add("w2", {20, 1, 3, 3}, 0.7);
  add("b2", {20}, 1.0);
  add("w3", {32, 20, 1, 1}, 0.5);
  add("b3", {32}, 1.0);
  add("w4", {10, 32}, 0.2);
  add("b4", {10}, 0.1);
  m.define(R"(
def forward(self, x):
    x = torch.hardtanh(torch.conv2d(x, self.w1, self.b1, [2, 2], [1, 1]), 0.0, 6.0)
    x = torch.hardtanh(torch.conv2d(x, self.w2, self.b2, [1, 1], [1, 1], [1, 1], 20), 0.0, 6.0)
    x = torch.hardtanh(torch.conv2d(x, self.w3, self.b3), 0.0, 4.0)
    x = torch.adaptive_avg_pool2d(x, [1, 1])
    return torch.linear(torch.flatten(x, 1), self.w4, self.b4)
)");
  mcompress::InferenceOptions options;
  options.onednn = true;
  const torch::Tensor input = input_of({2, 3, 64, 64});
  const torch::Tensor expected = run(m, input);
  const Module optimized = mcompress::optimize_for_cpu_inference(m, options);
  EXPECT_EQ(count_ops(optimized, "prim::MKLDNNHardSigmoid_"), 1);  // the 32 channels
  EXPECT_EQ(count_ops(optimized, "prim::MKLDNNScalarMul_"), 1);     // its factor 4, before pooling
  EXPECT_EQ(count_ops(optimized, "aten::hardtanh"), 2);             // the 20 channels
  EXPECT_EQ(count_ops(optimized, "prim::mkldnn_convolution"), 4);
  expect_close(run(optimized, input), expected);
  expect_runs_in_plain_pytorch(optimized, input, expected, "unblocked");
}

TEST(InferenceOptimization, NonImageInputsPassThroughUnchanged) {
  auto unit = std::make_shared<torch::jit::CompilationUnit>();
  Module m(c10::QualifiedName("__torch__.inference_test.Mlp"), unit, true);
  m.register_attribute("training", c10::BoolType::get(), false);
  m.register_parameter("weight", torch::randn({4, 8}), false);
  m.define("def forward(self, x):\n    return torch.relu(torch.linear(x, self.weight, None))\n");
  const torch::Tensor input = torch::randn({3, 8});
  expect_close(run(mcompress::optimize_for_cpu_inference(m), input), run(m, input));
  mcompress::InferenceOptions plain;
  plain.channels_last = false;
  expect_close(run(mcompress::optimize_for_cpu_inference(m, plain), input), run(m, input));
}

TEST(InferenceOptimization, ThePassReplacesTheModelAndSaysWhatItDid) {
  const mcompress::Pass& pass = mcompress::testing::plugin_pass("optimize_inference");
  EXPECT_EQ(pass.info().name, "optimize_inference");

  const Module original = torch::jit::load(mcompress::testing::scripted_torchvision_model("resnet18").string());
  mcompress::Params params;
  params.set("channels_last", true);
  params.set("onednn", false);
  params.set("choose_by_timing", false);
  mcompress::NullLogger log;
  mcompress::NullProgress progress;
  mcompress::PassContext context;
  context.model = original;
  context.params = &params;
  context.log = &log;
  context.progress = &progress;
  const auto result = pass.run(context);
  EXPECT_EQ(result.summary, "frozen for CPU inference, channels-last; every BatchNorm folded");
  EXPECT_EQ(count_ops(context.model, "aten::batch_norm"), 0);
  const torch::Tensor input = input_of({1, 3, 64, 64});
  expect_close(run(context.model, input), run(original, input));

  // The default: oneDNN's form, as fast as torch.jit.optimize_for_inference.
  params.set("onednn", true);
  context.model = original;
  const auto onednn = pass.run(context);
  // ResNet-18's 20 convolutions and its classifier, a 1x1 convolution on the pooled features.
  EXPECT_EQ(onednn.summary, "frozen for CPU inference, 21 oneDNN convolutions; every BatchNorm folded");
  EXPECT_EQ(onednn.stats.at("onednn_convolutions"), 21);
  expect_close(run(context.model, input), run(original, input));

  // Both forms timed on the example input; the faster one is kept, and said.
  params.set("choose_by_timing", true);
  context.model = original;
  context.example_input = input;
  const auto timed = pass.run(context);
  const double onednn_ms = timed.stats.at("onednn_ms"), channels_last_ms = timed.stats.at("channels_last_ms");
  EXPECT_GT(onednn_ms, 0);
  EXPECT_GT(channels_last_ms, 0);
  const bool onednn_kept = onednn_ms <= channels_last_ms;
  EXPECT_EQ(timed.stats.at("form_chosen_by_timing"), onednn_kept ? "onednn" : "channels_last");
  EXPECT_EQ(timed.stats.at("channels_last"), !onednn_kept);
  // Either way the classifier runs in oneDNN (a 1x1 convolution), not in BLAS.
  EXPECT_EQ(timed.stats.at("onednn_convolutions").get<int64_t>(), onednn_kept ? 21 : 1);
  EXPECT_NE(timed.summary.find(onednn_kept ? ", 21 oneDNN convolutions (faster"
                                           : ", channels-last, 20 convolutions calling oneDNN's (faster"),
            std::string::npos)
      << timed.summary;
  EXPECT_EQ(count_ops(context.model, "aten::linear") + count_ops(context.model, "aten::matmul"), 0);
  EXPECT_NE(timed.summary.find(fmt::format("(faster at batch 1: oneDNN {:.3f} ms, channels-last {:.3f} ms)",
                                           onednn_ms, channels_last_ms)),
            std::string::npos)
      << timed.summary;
  expect_close(run(context.model, input), run(original, input));
}

}  // namespace
