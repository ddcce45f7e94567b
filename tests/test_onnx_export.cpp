// The ONNX exporter (mcompress/formats/onnx_export.h, `mcompress export onnx`)
// checked by real consumers:
//  - onnx's own checker (Debian's python3-onnx, full_check: types and shapes
//    inferred through the whole graph),
//  - ONNX Runtime (the onnxruntime-node package through
//    tests/js/onnx_runtime_reference.mjs), whose outputs must match
//    LibTorch's forward of the original model within 1e-4 of the largest
//    output, at another batch size than the export's (the batch is dynamic).
// Models: the zoo's mlp, cnn and resnet, an optimize_for_cpu_inference
// output (frozen, channels-last), a pruned torchvision ResNet-18, and
// torchvision's ResNet-18, MobileNetV2 and EfficientNet-B0 (random weights,
// 10 classes). int8 models (int8_quant's quantize_static_int8: the zoo CNN
// trained briefly on real Fashion-MNIST, torchvision's ResNet-18) export as
// QDQ and must agree with LibTorch's int8 forward within int8 rounding.
// A missing reference (node, onnxruntime-node, python3-onnx) skips the
// tests that need it, saying what to install.
#include <gtest/gtest.h>
#include <torch/csrc/jit/frontend/resolver.h>
#include <torch/csrc/jit/frontend/sugared_value.h>
#include <torch/script.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <functional>

#include "mcompress/formats/onnx_export.h"
#include "mcompress/formats/onnx_model.h"
#include "mcompress/framework/sources/fashion_mnist.h"
#include "mcompress/framework/sources/zoo.h"
#include "mcompress/models/inference_optimization.h"
#include "mcompress/pruning/channel_pruning.h"
#include "mcompress/pruning/dependency_graph.h"
#include "mcompress/pruning/pruning_allocation.h"
#include "mcompress/quantization/static_int8.h"
#include "mcompress/sdk/error.h"
#include "mcompress/training/trainer.h"
#include "test_support.h"
#include "torchvision_models.h"

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

// ------------------------------------------------------------- references

bool onnx_runtime_available(std::string& why) {
  const auto version = run_command("node --version");
  if (version.exit_code != 0) {
    why = "node is not on PATH; ONNX Runtime runs here through onnxruntime-node (scripts/install-deps.sh --tests)";
    return false;
  }
  if (!fs::exists(kJsDir / "node_modules" / "onnxruntime-node" / "package.json")) {
    why = "onnxruntime-node is not installed: run `npm ci --ignore-scripts --omit=optional` in " + kJsDir.string() +
          " (or scripts/install-deps.sh --tests)";
    return false;
  }
  return true;
}

bool onnx_checker_available(std::string& why) {
  if (run_command(std::string(MCOMPRESS_PYTHON) + " -c 'import onnx'").exit_code != 0) {
    why = "python3-onnx is not installed (apt-get install python3-onnx, or scripts/install-deps.sh --tests)";
    return false;
  }
  return true;
}

// onnx.checker with full_check also runs shape inference over every node.
void expect_onnx_checker_accepts(const fs::path& file) {
  const auto result = run_command(std::string(MCOMPRESS_PYTHON) +
                                  " -c \"import onnx, sys; m = onnx.load(sys.argv[1]); "
                                  "onnx.checker.check_model(m, full_check=True); print('ok', m.ir_version, "
                                  "m.opset_import[0].version)\" " +
                                  quoted(file));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(contains(result.output, "ok 8 13")) << result.output;
}

void write_floats(const fs::path& path, const at::Tensor& tensor) {
  const at::Tensor values = tensor.contiguous().to(at::kFloat);
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(values.data_ptr()), static_cast<std::streamsize>(values.numel() * 4));
}

at::Tensor read_floats(const fs::path& path, const std::vector<int64_t>& dims) {
  const std::string bytes = read_text(path);
  at::Tensor out = at::empty(dims, at::kFloat);
  EXPECT_EQ(bytes.size(), static_cast<size_t>(out.numel() * 4)) << path;
  if (bytes.size() == static_cast<size_t>(out.numel() * 4)) std::memcpy(out.data_ptr(), bytes.data(), bytes.size());
  return out;
}

// `optimized`: where ONNX Runtime writes the graph it ran after its fusions.
at::Tensor run_onnx_runtime(const fs::path& model, const at::Tensor& input, const fs::path& optimized = {}) {
  const fs::path dir = model.parent_path();
  const fs::path input_file = dir / "input.f32";
  const fs::path output_file = dir / "output.f32";
  write_floats(input_file, input);
  const std::string dims = fmt::format("{}", fmt::join(input.sizes(), ","));
  const auto result = run_command("node " + quoted(kJsDir / "onnx_runtime_reference.mjs") + " " + quoted(model) + " " +
                                  quoted(input_file) + " " + dims + " " + quoted(output_file) +
                                  (optimized.empty() ? "" : " " + quoted(optimized)));
  if (result.exit_code != 0) throw std::runtime_error("onnx_runtime_reference.mjs failed: " + result.output);
  const json printed = json::parse(result.output.substr(result.output.find('{')));
  return read_floats(output_file, printed["outputs"][0]["dims"].get<std::vector<int64_t>>());
}

at::Tensor libtorch_forward(torch::jit::Module& model, const at::Tensor& input) {
  torch::NoGradGuard no_grad;
  model.eval();
  return model.forward({input}).toTensor();
}

// Exports at batch 1, checks the file, runs it at batch 2 and compares.
void expect_matches_libtorch(torch::jit::Module model, const std::vector<int64_t>& input_shape,
                             const std::string& label) {
  std::string why;
  if (!onnx_runtime_available(why)) GTEST_SKIP() << why;
  if (!onnx_checker_available(why)) GTEST_SKIP() << why;
  TempDir dir("onnx-" + label);
  const fs::path file = dir.path() / (label + ".onnx");
  OnnxExportOptions options;
  options.input_shape = input_shape;
  const OnnxExportSummary summary = export_onnx(model, file, options);
  EXPECT_EQ(summary.bytes, static_cast<int64_t>(fs::file_size(file)));
  EXPECT_EQ(summary.opset, 13);
  expect_onnx_checker_accepts(file);

  std::vector<int64_t> run_shape = input_shape;
  run_shape[0] = 2;
  const at::Tensor input = at::randn(run_shape, at::detail::createCPUGenerator(7));
  const at::Tensor expected = libtorch_forward(model, input);
  const at::Tensor actual = run_onnx_runtime(file, input);
  ASSERT_EQ(actual.sizes(), expected.sizes()) << label;
  EXPECT_FALSE(at::equal(expected[0], expected[1])) << label << ": the output does not depend on the input";
  const double scale = expected.abs().max().item<double>();
  const double difference = (actual - expected).abs().max().item<double>();
  EXPECT_LE(difference, 1e-4 * scale) << label << ": ONNX Runtime differs from LibTorch by " << difference
                                      << " (largest |y| " << scale << ")";
  std::cout << fmt::format("[{}] {} nodes, {} weights, {:.2f} MB, max |ORT - LibTorch| {:.3g} of max |y| {:.3g}\n",
                           label, summary.nodes, summary.initializer_values, summary.bytes / 1e6, difference, scale);
}

torch::jit::Module zoo(const std::string& name) { return build_zoo_model(name, {}, 10, 1); }

// Freshly initialised BatchNorm statistics (mean 0, variance 1) let
// MobileNetV2's and EfficientNet's activations fade to ~1e-10 by the output;
// statistics that mostly come from real batches (momentum 0.1 is a
// constant of the scripted module, so a few training-mode passes) keep them
// near 1, so the comparison sees every layer.
torch::jit::Module torchvision(const std::string& name) {
  torch::jit::Module model = torch::jit::load(testing::scripted_torchvision_model(name).string());
  torch::NoGradGuard no_grad;
  model.train();
  const at::Tensor batch = at::randn({2, 3, 32, 32}, at::detail::createCPUGenerator(3));
  for (int pass = 0; pass < 20; ++pass) model.forward({batch});
  model.eval();
  return model;
}

// ------------------------------------------------------------- encoding

TEST(OnnxModelEncoding, HandWrittenGraphRunsInOnnxRuntime) {
  std::string why;
  if (!onnx_runtime_available(why)) GTEST_SKIP() << why;
  if (!onnx_checker_available(why)) GTEST_SKIP() << why;
  // y = Relu(x + b) * 2 over [batch, 3]: every message kind the exporter writes.
  OnnxModel model;
  model.graph.name = "tiny";
  const std::vector<float> bias{0.5f, -1.0f, 2.0f};
  const float two = 2.0f;
  model.graph.initializers.push_back(
      {"bias", OnnxDataType::Float, {3}, std::string(reinterpret_cast<const char*>(bias.data()), 12)});
  model.graph.initializers.push_back(
      {"two", OnnxDataType::Float, {}, std::string(reinterpret_cast<const char*>(&two), 4)});
  model.graph.nodes.push_back({"Add", "add", {"x", "bias"}, {"sum"}, {}, ""});
  model.graph.nodes.push_back({"Relu", "relu", {"sum"}, {"positive"}, {}, ""});
  model.graph.nodes.push_back({"Mul", "mul", {"positive", "two"}, {"output"}, {}, "doubles"});
  model.graph.inputs.push_back({"x", OnnxDataType::Float, {std::string("batch"), int64_t{3}}});
  model.graph.outputs.push_back({"output", OnnxDataType::Float, {std::string("batch"), int64_t{3}}});
  model.metadata.emplace_back("source", "test");
  TempDir dir("onnx-encoding");
  const fs::path file = dir.path() / "tiny.onnx";
  write_text(file, encode_onnx_model(model));
  expect_onnx_checker_accepts(file);
  const at::Tensor x = at::tensor({1.0f, 2.0f, -5.0f, -3.0f, 0.0f, 1.0f}).reshape({2, 3});
  const at::Tensor expected = at::relu(x + at::tensor(bias)) * 2;
  EXPECT_TRUE(at::allclose(run_onnx_runtime(file, x), expected));
}

// ------------------------------------------------------------- models

TEST(OnnxExport, ZooMlp) { expect_matches_libtorch(zoo("mlp"), {1, 1, 28, 28}, "zoo-mlp"); }

TEST(OnnxExport, ZooCnn) { expect_matches_libtorch(zoo("cnn"), {1, 1, 28, 28}, "zoo-cnn"); }

TEST(OnnxExport, ZooResnet) { expect_matches_libtorch(zoo("resnet"), {1, 1, 28, 28}, "zoo-resnet"); }

// optimize_inference's output: frozen, BatchNorm folded, channels-last
// weights, and a wrapper that branches on the input's rank.
TEST(OnnxExport, OptimizedForCpuInference) {
  TempDir dir("onnx-optimized");
  const fs::path saved = dir.path() / "optimized.pt";
  optimize_for_cpu_inference(zoo("resnet")).save(saved.string());
  expect_matches_libtorch(torch::jit::load(saved.string()), {1, 1, 28, 28}, "zoo-resnet-optimized");
}

TEST(OnnxExport, TorchvisionResnet18) { expect_matches_libtorch(torchvision("resnet18"), {1, 3, 64, 64}, "resnet18"); }

TEST(OnnxExport, TorchvisionMobilenetV2) {
  expect_matches_libtorch(torchvision("mobilenet_v2"), {1, 3, 64, 64}, "mobilenet_v2");
}

TEST(OnnxExport, TorchvisionEfficientnetB0) {
  expect_matches_libtorch(torchvision("efficientnet_b0"), {1, 3, 64, 64}, "efficientnet_b0");
}

// Structured pruning gives convolutions of uneven widths; the export must not care.
TEST(OnnxExport, PrunedTorchvisionResnet18) {
  torch::jit::Module model = torchvision("resnet18");
  const at::Tensor example = at::randn({1, 3, 64, 64});
  const DependencyGraph graph = analyze_dependencies(model, example);
  PruneOptions options;
  options.sparsity = 0.4;
  const auto pruned = prune_groups(model, graph, options,
                                   [&](const ChannelGroup& group) { return group_l2_importance(model, group); });
  ASSERT_FALSE(pruned.empty());
  expect_matches_libtorch(model, {1, 3, 64, 64}, "resnet18-pruned");
}

// ------------------------------------------------------------- int8 (QDQ)

// What onnx itself reads in a file: nodes by op type, initializers by element type.
json onnx_file_contents(const fs::path& file) {
  const auto result = run_command(
      std::string(MCOMPRESS_PYTHON) +
      " -c \"import onnx, sys, json, collections; m = onnx.load(sys.argv[1]); print(json.dumps({"
      "'ops': collections.Counter(n.op_type for n in m.graph.node), 'initializers': collections.Counter("
      "onnx.TensorProto.DataType.Name(t.data_type) for t in m.graph.initializer)}))\" " +
      quoted(file));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  return json::parse(result.output);
}

int64_t count(const json& counts, const std::string& key) { return counts.value(key, int64_t{0}); }

// The output's quantization step: LibTorch's int8 outputs are multiples of
// it (from the zero point), so it is the smallest gap between two of them.
double output_step(const at::Tensor& int8_output) {
  const at::Tensor values = std::get<0>(at::_unique(int8_output.flatten(), /*sorted=*/true));
  const at::Tensor gaps = values.slice(0, 1) - values.slice(0, 0, -1);
  return gaps.min().item<double>();
}

struct Int8Agreement {
  double top1 = 0;        // share of inputs whose largest output is the same
  double max_steps = 0;   // largest |ORT - LibTorch| in output quantization steps
  double mean_steps = 0;  // mean |ORT - LibTorch| in output quantization steps
};

// Saves and loads `int8` (as `mcompress export onnx` gets it), exports it at
// `input_shape`, checks the file's QDQ form, runs `inputs` in ONNX Runtime
// and compares with LibTorch's int8 forward.
Int8Agreement export_int8_and_compare(const torch::jit::Module& int8, const at::Tensor& inputs,
                                      const std::vector<int64_t>& input_shape, int64_t layers,
                                      const std::string& label) {
  TempDir dir("onnx-" + label);
  const fs::path saved = dir.path() / (label + ".pt");
  int8.save(saved.string());
  torch::jit::Module model = torch::jit::load(saved.string());
  const fs::path file = dir.path() / (label + ".onnx");
  OnnxExportOptions options;
  options.input_shape = input_shape;
  const OnnxExportSummary summary = export_onnx(model, file, options);
  expect_onnx_checker_accepts(file);

  // Activations through QuantizeLinear/DequantizeLinear pairs; weights int8, biases int32.
  const json contents = onnx_file_contents(file);
  EXPECT_GT(count(contents["ops"], "QuantizeLinear"), layers) << contents.dump();
  EXPECT_GT(count(contents["ops"], "DequantizeLinear"), 2 * layers) << contents.dump();
  EXPECT_EQ(count(contents["initializers"], "INT8"), 2 * layers) << contents.dump();  // weights and their zero points
  EXPECT_GE(count(contents["initializers"], "INT32"), layers) << contents.dump();  // biases (and their zero points)

  const at::Tensor expected = libtorch_forward(model, inputs);
  const fs::path optimized = dir.path() / "optimized.onnx";
  const at::Tensor actual = run_onnx_runtime(file, inputs, optimized);
  EXPECT_EQ(actual.sizes(), expected.sizes()) << label;
  if (actual.sizes() != expected.sizes()) return {};
  const double step = output_step(expected);
  Int8Agreement agreement;
  agreement.top1 = actual.argmax(1).eq(expected.argmax(1)).to(at::kDouble).mean().item<double>();
  agreement.max_steps = (actual - expected).abs().max().item<double>() / step;
  agreement.mean_steps = (actual - expected).abs().mean().item<double>() / step;
  const json fused = onnx_file_contents(optimized)["ops"];
  std::cout << fmt::format(
      "[{}] {} nodes ({} QuantizeLinear, {} DequantizeLinear), {:.2f} MB; {} inputs: top-1 agreement {:.4f}, "
      "max |ORT - LibTorch| {:.3g} = {:.2f} output steps of {:.3g} (mean {:.2f} steps; max |y| {:.3g}); ONNX Runtime "
      "ran {}\n",
      label, summary.nodes, count(contents["ops"], "QuantizeLinear"), count(contents["ops"], "DequantizeLinear"),
      summary.bytes / 1e6, inputs.size(0), agreement.top1, agreement.max_steps * step, agreement.max_steps, step,
      agreement.mean_steps, expected.abs().max().item<double>(), fused.dump());
  return agreement;
}

// The zoo CNN, trained for one epoch on 6,000 real Fashion-MNIST images, to int8 as int8_quant does it.
TEST(OnnxExportInt8, ZooCnnExportsAsQdqAndAgreesWithLibTorch) {
  std::string why;
  if (!onnx_runtime_available(why)) GTEST_SKIP() << why;
  if (!onnx_checker_available(why)) GTEST_SKIP() << why;
  torch::manual_seed(0);
  const DatasetPtr train = load_fashion_mnist(MCOMPRESS_FASHION_MNIST_DIR, Split::Train, 6000);
  const DatasetPtr test = load_fashion_mnist(MCOMPRESS_FASHION_MNIST_DIR, Split::Test, 64);
  torch::jit::Module model = zoo("cnn");
  TrainOptions training;
  training.learning_rate = 0.05;
  training.keep_best = false;
  NullProgress progress;
  NullLogger log;
  train_model(model, *train, nullptr, training, cross_entropy_loss(), progress, log);
  model.eval();
  std::vector<at::Tensor> calibration;
  for (int64_t i = 0; i < 8; ++i) calibration.push_back(train->inputs.narrow(0, i * 32, 32));
  const StaticInt8Model int8 = quantize_static_int8(model, calibration);
  ASSERT_EQ(int8.quantize_calls, 1);  // everything between input and output in int8

  const Int8Agreement agreement = export_int8_and_compare(int8.model, test->inputs, {1, 1, 28, 28}, 4, "zoo-cnn-int8");
  EXPECT_GE(agreement.top1, 0.98);
  // ONNX Runtime and oneDNN may round a value the other way: a step there grows by a few steps at the output.
  EXPECT_LE(agreement.max_steps, 4.0);

  // The command line exports the saved int8 model too, and says what it wrote.
  TempDir dir("onnx-int8-cli");
  const fs::path saved = dir.path() / "int8.pt";
  int8.model.save(saved.string());
  const auto result = run_command(std::string(MCOMPRESS_CLI) + " export onnx " + quoted(saved) +
                                  " --input-shape 1,1,28,28 --json --out " + quoted(dir.path() / "int8.onnx"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const json summary = json::parse(result.output);
  EXPECT_EQ(summary["nodes_by_op"]["Conv"], 2);
  EXPECT_EQ(summary["nodes_by_op"]["Gemm"], 2);
  EXPECT_GT(summary["nodes_by_op"]["QuantizeLinear"].get<int64_t>(), 4);
}

// torchvision's ResNet-18 (random weights, BatchNorm statistics of random
// batches) to int8: residual quantized::add_relu, 21 layers.
TEST(OnnxExportInt8, TorchvisionResnet18ExportsAsQdqAndAgreesWithLibTorch) {
  std::string why;
  if (!onnx_runtime_available(why)) GTEST_SKIP() << why;
  if (!onnx_checker_available(why)) GTEST_SKIP() << why;
  const at::Tensor calibration = at::randn({8, 3, 64, 64}, at::detail::createCPUGenerator(11));
  const StaticInt8Model int8 =
      quantize_static_int8(torchvision("resnet18"), {calibration.narrow(0, 0, 4), calibration.narrow(0, 4, 4)});
  ASSERT_EQ(int8.quantize_calls, 1);
  const at::Tensor inputs = at::randn({16, 3, 64, 64}, at::detail::createCPUGenerator(12));
  const Int8Agreement agreement = export_int8_and_compare(int8.model, inputs, {1, 3, 64, 64}, 21, "resnet18-int8");
  // One rounding step apart early grows through 20 random-weight layers:
  // ONNX Runtime's own fused int8 kernels and its unfused QDQ reference
  // (graph optimizations off) differ by up to 5 output steps here, 1.6 on
  // average; LibTorch (measured: 10 steps, mean 1.9) must not be further off.
  EXPECT_GE(agreement.top1, 14.0 / 16);
  EXPECT_LE(agreement.mean_steps, 3.0);
  EXPECT_LE(agreement.max_steps, 16.0);
}

// MobileNetV2: depthwise convolutions, ReLU6 fused into them, residual adds.
TEST(OnnxExportInt8, TorchvisionMobilenetV2ExportsAsQdqAndAgreesWithLibTorch) {
  std::string why;
  if (!onnx_runtime_available(why)) GTEST_SKIP() << why;
  if (!onnx_checker_available(why)) GTEST_SKIP() << why;
  const at::Tensor calibration = at::randn({8, 3, 64, 64}, at::detail::createCPUGenerator(11));
  const StaticInt8Model int8 =
      quantize_static_int8(torchvision("mobilenet_v2"), {calibration.narrow(0, 0, 4), calibration.narrow(0, 4, 4)});
  ASSERT_EQ(int8.quantize_calls, 1);
  const at::Tensor inputs = at::randn({16, 3, 64, 64}, at::detail::createCPUGenerator(12));
  const Int8Agreement agreement = export_int8_and_compare(int8.model, inputs, {1, 3, 64, 64}, 53, "mobilenet_v2-int8");
  EXPECT_GE(agreement.top1, 14.0 / 16);  // measured: 16 of 16, 2 steps at most, 0.5 on average
  EXPECT_LE(agreement.mean_steps, 2.0);
  EXPECT_LE(agreement.max_steps, 8.0);
}

// A layer int8_quant kept in float (`ignore`): a float Conv between the
// input and the first QuantizeLinear.
TEST(OnnxExportInt8, LayerKeptInFloatStaysAFloatConv) {
  std::string why;
  if (!onnx_runtime_available(why)) GTEST_SKIP() << why;
  if (!onnx_checker_available(why)) GTEST_SKIP() << why;
  StaticInt8Options options;
  options.ignore = {"conv1"};
  const StaticInt8Model int8 =
      quantize_static_int8(zoo("cnn"), {at::randn({32, 1, 28, 28}, at::detail::createCPUGenerator(5))}, options);
  ASSERT_FALSE(int8.layers[0].quantized);
  const at::Tensor inputs = at::randn({16, 1, 28, 28}, at::detail::createCPUGenerator(6));
  const Int8Agreement agreement = export_int8_and_compare(int8.model, inputs, {1, 1, 28, 28}, 3, "zoo-cnn-partly-int8");
  EXPECT_GE(agreement.top1, 0.98);
  EXPECT_LE(agreement.max_steps, 4.0);
}

// ------------------------------------------------------------- refusals

torch::jit::Module module_with_forward(const std::string& source) {
  torch::jit::Module m("__torch__.OnnxTestModel");
  m.register_parameter("weight", at::randn({4, 4}), false);
  m.define(source);
  return m;
}

TEST(OnnxExport, UnsupportedOpNamesTheOpAndLeavesNoFile) {
  TempDir dir("onnx-unsupported");
  const fs::path file = dir.path() / "model.onnx";
  OnnxExportOptions options;
  options.input_shape = {1, 4};
  const torch::jit::Module m = module_with_forward(R"(
def forward(self, x):
    y = torch.linear(x, self.weight)
    return torch.cumsum(y, 1)
)");
  const std::string message = error_of([&] { export_onnx(m, file, options); });
  EXPECT_TRUE(contains(message, "aten::cumsum")) << message;
  EXPECT_TRUE(contains(message, ":4:")) << message;  // the source line of the op
  EXPECT_TRUE(contains(message, "docs/onnx.md")) << message;
  EXPECT_TRUE(fs::is_empty(dir.path())) << "a refused export left files behind";
}

// Source that calls LibTorch's quantized ops as `quantized.<op>`, as int8_quant's generated forward does.
struct QuantizedOpsResolver final : torch::jit::Resolver {
  std::shared_ptr<torch::jit::SugaredValue> resolveValue(const std::string& name, torch::jit::GraphFunction& function,
                                                         const torch::jit::SourceRange& location) override {
    if (name == "quantized") return std::make_shared<torch::jit::BuiltinModule>("quantized");
    return torch::jit::nativeResolver()->resolveValue(name, function, location);
  }
  c10::TypePtr resolveType(const std::string& name, const torch::jit::SourceRange& location) override {
    return torch::jit::nativeResolver()->resolveType(name, location);
  }
};

TEST(OnnxExport, UnsupportedQuantizedOpSaysWhatExports) {
  OnnxExportOptions options;
  options.input_shape = {1, 4};
  torch::jit::Module m("__torch__.OnnxTestQuantizedModel");
  m.define(R"(
def forward(self, x):
    q = torch.quantize_per_tensor(x, 0.1, 128, 13)
    return torch.dequantize(quantized.mul(q, q, 0.1, 128))
)",
           std::make_shared<QuantizedOpsResolver>());
  const std::string message = error_of([&] { torchscript_to_onnx(m, options); });
  EXPECT_TRUE(contains(message, "quantized::mul")) << message;
  EXPECT_TRUE(contains(message, "ignore")) << message;  // what to do: keep that layer in float
}

TEST(OnnxExport, RefusesWhatOnnxCannotExpress) {
  OnnxExportOptions options;
  options.input_shape = {1, 4};
  // A branch on the input's values is never decided by the example input.
  std::string message = error_of([&] {
    torchscript_to_onnx(module_with_forward(R"(
def forward(self, x):
    if bool(x.sum() > 0):
        return x
    return -x
)"),
                        options);
  });
  EXPECT_TRUE(contains(message, "aten::gt")) << message;  // the comparison, before the branch
  // Adaptive pooling whose windows do not tile the input.
  options.input_shape = {1, 1, 7, 7};
  message = error_of([&] {
    torchscript_to_onnx(module_with_forward(R"(
def forward(self, x):
    return torch.adaptive_avg_pool2d(x, [3, 3])
)"),
                        options);
  });
  EXPECT_TRUE(contains(message, "adaptive_avg_pool2d")) << message;
  EXPECT_TRUE(contains(message, "multiple of [3, 3]")) << message;
  // A shape that does not fit the model.
  options.input_shape = {1, 5};
  message = error_of([&] {
    torchscript_to_onnx(module_with_forward("def forward(self, x):\n    return torch.linear(x, self.weight)\n"), options);
  });
  EXPECT_TRUE(contains(message, "[1, 5]")) << message;
  options.input_shape = {};
  message = error_of([&] { torchscript_to_onnx(zoo("cnn"), options); });
  EXPECT_TRUE(contains(message, "input shape")) << message;
}

// ------------------------------------------------------------- command line

TEST(OnnxExport, CommandLine) {
  std::string why;
  if (!onnx_checker_available(why)) GTEST_SKIP() << why;
  TempDir dir("onnx-cli");
  const fs::path model = dir.path() / "cnn.pt";
  zoo("cnn").save(model.string());
  const std::string cli = std::string(MCOMPRESS_CLI) + " export onnx " + quoted(model);
  const fs::path out = dir.path() / "cnn.onnx";

  auto result = run_command(cli + " --input-shape 1,1,28,28 --out " + quoted(out));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(contains(result.output, "opset 13")) << result.output;
  EXPECT_TRUE(contains(result.output, "Conv")) << result.output;
  expect_onnx_checker_accepts(out);

  // An existing output needs --force; --json says what was written.
  result = run_command(cli + " --input-shape 1,1,28,28 --out " + quoted(out));
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_TRUE(contains(result.output, "--force")) << result.output;
  result = run_command(cli + " --input-shape 1,1,28,28 --force --json --out " + quoted(out));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const json summary = json::parse(result.output);
  EXPECT_EQ(summary["format"], "onnx");
  EXPECT_EQ(summary["opset"], 13);
  EXPECT_EQ(summary["input_shape"], json::array({1, 1, 28, 28}));
  EXPECT_EQ(summary["output_shapes"], json::array({json::array({1, 10})}));
  EXPECT_EQ(summary["bytes"].get<int64_t>(), int64_t(fs::file_size(out)));
  EXPECT_EQ(summary["nodes_by_op"]["Conv"], 2);
  EXPECT_FALSE(summary["nodes_by_op"].contains("BatchNormalization"));  // folded into the convolutions
  result = run_command(cli + " --input-shape 1,1,28,28 --quiet --force --out " + quoted(out));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output, "");

  // No --input-shape: the shape the run recorded beside the model, else a clear refusal.
  result = run_command(cli + " --out " + quoted(dir.path() / "x.onnx"));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_TRUE(contains(result.output, "--input-shape")) << result.output;
  EXPECT_FALSE(fs::exists(dir.path() / "x.onnx"));
  write_text(dir.path() / "run.json", R"({"recipe": {"model": {"input_shape": [1, 28, 28]}}})");
  result = run_command(cli + " --json --out " + quoted(dir.path() / "x.onnx"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(json::parse(result.output)["input_shape"], json::array({1, 1, 28, 28}));

  // Bad input: exit code 2, a message naming the problem, no file.
  result = run_command(cli + " --input-shape 1,1,28,x --out " + quoted(dir.path() / "y.onnx"));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_TRUE(contains(result.output, "'x'")) << result.output;
  result = run_command(cli + " --input-shape 1,3,28,28 --out " + quoted(dir.path() / "y.onnx"));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_TRUE(contains(result.output, "[1, 3, 28, 28]")) << result.output;
  result = run_command(std::string(MCOMPRESS_CLI) + " export onnx " + quoted(dir.path() / "nowhere.pt"));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_TRUE(contains(result.output, "nowhere.pt")) << result.output;
  const fs::path unsupported = dir.path() / "cumsum.pt";
  module_with_forward("def forward(self, x):\n    return torch.cumsum(x, 1)\n").save(unsupported.string());
  result = run_command(std::string(MCOMPRESS_CLI) + " export onnx " + quoted(unsupported) +
                       " --input-shape 1,4 --out " + quoted(dir.path() / "y.onnx"));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_TRUE(contains(result.output, "aten::cumsum")) << result.output;
  EXPECT_FALSE(fs::exists(dir.path() / "y.onnx"));
  for (const auto& entry : fs::directory_iterator(dir.path()))
    EXPECT_FALSE(contains(entry.path().filename().string(), ".tmp-")) << entry.path();
}

}  // namespace
}  // namespace mcompress
