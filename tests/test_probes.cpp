// Model statistics (parameters, MACs), evaluation and the host's probes,
// checked against hand-computed numbers for the zoo models.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <sstream>
#include <string>
#include <vector>

#include "mcompress/framework/sources/fashion_mnist.h"
#include "mcompress/framework/probes/probes.h"
#include "mcompress/framework/sources/zoo.h"
#include "mcompress/sdk/error.h"
#include "mcompress/models/evaluate.h"
#include "mcompress/models/model_stats.h"
#include "test_support.h"

namespace mcompress {
namespace {

const torch::Tensor kSample = torch::zeros({1, 1, 28, 28});

// mlp, width 64: 784 -> 256 -> 128 -> 10.
constexpr int64_t kMlpParams = (784 * 256 + 256) + (256 * 128 + 128) + (128 * 10 + 10);
constexpr int64_t kMlpMacs = 784 * 256 + 256 * 128 + 128 * 10;
// cnn, width 16: conv 1->16 at 28x28, conv 16->32 at 14x14, fc 32*7*7 -> 64 -> 10.
constexpr int64_t kCnnParams =
    16 * 9 + 2 * 16 + 32 * 16 * 9 + 2 * 32 + (1568 * 64 + 64) + (64 * 10 + 10);
constexpr int64_t kCnnMacs = 28 * 28 * 16 * 9 + 14 * 14 * 32 * 16 * 9 + 1568 * 64 + 64 * 10;
// resnet, width 16, one block per stage: stem, two 16->16 convs at 28x28,
// then 16->32 (stride 2), 32->32 and the 1x1 projection at 14x14, fc 32 -> 10.
constexpr int64_t kResnetMacs = 28 * 28 * 16 * 9 + 2 * (28 * 28 * 16 * 16 * 9) +
                                14 * 14 * 32 * 16 * 9 + 14 * 14 * 32 * 32 * 9 +
                                14 * 14 * 32 * 16 + 32 * 10;

TEST(ModelStats, ParameterCountsMatchHandCount) {
  EXPECT_EQ(count_parameters(build_zoo_model("mlp", {}, 10, 0)), kMlpParams);
  EXPECT_EQ(count_parameters(build_zoo_model("cnn", {}, 10, 0)), kCnnParams);
}

TEST(ModelStats, MacsMatchHandCount) {
  EXPECT_EQ(count_macs(build_zoo_model("mlp", {}, 10, 0), kSample), kMlpMacs);
  EXPECT_EQ(count_macs(build_zoo_model("cnn", {}, 10, 0), kSample), kCnnMacs);
  EXPECT_EQ(count_macs(build_zoo_model("resnet", {}, 10, 0), kSample), kResnetMacs);
}

TEST(ModelStats, MacsArePerSampleWhateverTheExampleBatch) {
  auto model = build_zoo_model("cnn", {}, 10, 0);
  EXPECT_EQ(count_macs(model, torch::randn({8, 1, 28, 28})), kCnnMacs);
}

TEST(ModelStats, LayerCostsNameTheOwningModules) {
  auto costs = layer_costs(build_zoo_model("cnn", {}, 10, 0), kSample);
  ASSERT_EQ(costs.size(), 4u);
  std::vector<std::string> paths, ops;
  for (const auto& c : costs) {
    paths.push_back(c.module_path);
    ops.push_back(c.op);
  }
  EXPECT_EQ(paths, (std::vector<std::string>{"conv1", "conv2", "fc1", "fc2"}));
  EXPECT_EQ(ops, (std::vector<std::string>{"conv2d", "conv2d", "linear", "linear"}));
  EXPECT_EQ(costs[1].params, 32 * 16 * 9);
  EXPECT_EQ(costs[1].out_channels, 32);
  EXPECT_EQ(costs[2].params, 1568 * 64 + 64);
  EXPECT_EQ(costs[3].macs, 64 * 10);

  paths.clear();
  for (const auto& c : layer_costs(build_zoo_model("resnet", {}, 10, 0), kSample)) {
    paths.push_back(c.module_path);
  }
  EXPECT_EQ(paths, (std::vector<std::string>{"conv1", "layer1.block0.conv1", "layer1.block0.conv2",
                                             "layer2.block0.conv1", "layer2.block0.conv2",
                                             "layer2.block0.downsample.conv", "fc"}));
}

TEST(ModelStats, CountsMatmulAndGroupedConvolution) {
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  torch::jit::Module model(c10::QualifiedName("__torch__.Custom"), cu, true);
  model.register_attribute("training", c10::BoolType::get(), false);
  model.register_parameter("proj", torch::randn({4 * 8 * 8, 5}), false);
  model.register_parameter("depthwise", torch::randn({4, 1, 3, 3}), false);
  model.define(R"(
def forward(self, x: Tensor) -> Tensor:
    x = torch.conv2d(x, self.depthwise, None, [1, 1], [1, 1], [1, 1], 4)
    return torch.matmul(torch.flatten(x, 1), self.proj)
)");
  auto costs = layer_costs(model, torch::randn({1, 4, 8, 8}));
  ASSERT_EQ(costs.size(), 2u);
  EXPECT_EQ(costs[0].macs, 4 * 8 * 8 * 9);  // each output reads one channel's 3x3
  EXPECT_EQ(costs[1].op, "matmul");
  EXPECT_EQ(costs[1].macs, 256 * 5);
  EXPECT_EQ(costs[1].params, 256 * 5);
}

// Real architectures scripted by PyTorch: MACs agree with forward hooks on
// nn.Conv2d/nn.Linear computed in Python (grouped convs included).
TEST(ModelStats, MacsOfScriptedTorchvisionModelsMatchPythonHooks) {
  testing::TempDir dir("stats");
  const std::string script = R"(
import sys, torch, torchvision
name, path = sys.argv[1], sys.argv[2]
model = getattr(torchvision.models, name)(num_classes=10).eval()
macs = []
def hook(m, inp, out):
    k = m.weight[0].numel() if isinstance(m, torch.nn.Conv2d) else m.in_features
    macs.append(out.numel() * k)
handles = [m.register_forward_hook(hook) for m in model.modules()
           if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
with torch.no_grad():
    model(torch.zeros(1, 3, 64, 64))
for h in handles:
    h.remove()
torch.jit.script(model).save(path)
print("MACS", sum(macs), "PARAMS", sum(p.numel() for p in model.parameters()))
)";
  testing::write_text(dir.path() / "export.py", script);
  for (const std::string name : {"resnet18", "mobilenet_v2"}) {
    const auto path = (dir.path() / (name + ".pt")).string();
    auto result = testing::run_command(std::string(MCOMPRESS_PYTHON) + " " +
                                       (dir.path() / "export.py").string() + " " + name + " " + path);
    ASSERT_EQ(result.exit_code, 0) << result.output;
    std::istringstream out(result.output.substr(result.output.rfind("MACS")));
    std::string label;
    int64_t macs = 0, params = 0;
    out >> label >> macs >> label >> params;
    auto model = torch::jit::load(path);
    EXPECT_EQ(count_macs(model, torch::zeros({1, 3, 64, 64})), macs) << name;
    EXPECT_EQ(count_parameters(model), params) << name;
  }
}

TEST(ModelStats, MacCountingLeavesTrainingStateAlone) {
  auto model = build_zoo_model("cnn", {}, 10, 0);
  auto running_mean = [&] { return model.attr("bn1").toModule().attr("running_mean").toTensor(); };
  const auto before = running_mean().clone();
  count_macs(model, torch::randn({1, 1, 28, 28}));
  EXPECT_TRUE(model.is_training());
  EXPECT_TRUE(torch::equal(running_mean(), before));
}

TEST(Evaluate, ForwardTensorRejectsNonTensorOutputs) {
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  torch::jit::Module model(c10::QualifiedName("__torch__.Pair"), cu, true);
  model.register_attribute("training", c10::BoolType::get(), false);
  model.define(R"(
def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
    return x, x
)");
  try {
    forward_tensor(model, torch::zeros({1}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Tensor was expected"), std::string::npos) << e.what();
  }
}

// Real evaluation data, loaded once.
class WithEvalData : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    eval_ = load_fashion_mnist(MCOMPRESS_FASHION_MNIST_DIR, Split::Test, 1000);
  }
  static void TearDownTestSuite() { eval_.reset(); }
  static DatasetPtr eval_;
  NullProgress progress_;
};
DatasetPtr WithEvalData::eval_;

TEST_F(WithEvalData, UntrainedAccuracyIsAboutChanceAndRestoresTrainingMode) {
  auto model = build_zoo_model("cnn", {}, 10, 3);
  const double accuracy = evaluate_accuracy(model, *eval_, 256, progress_);
  EXPECT_GE(accuracy, 0.0);
  EXPECT_LE(accuracy, 0.35);  // 10 balanced classes: chance is 0.1
  EXPECT_TRUE(model.is_training());
  model.eval();
  EXPECT_EQ(evaluate_accuracy(model, *eval_, 100, progress_), accuracy);  // batch-size independent
  EXPECT_FALSE(model.is_training());
}

ProbeSpec quick_spec() {
  ProbeSpec spec;
  spec.latency_batch_sizes = {1, 8};
  spec.latency_warmup = 2;
  spec.latency_runs = 5;
  return spec;
}

TEST_F(WithEvalData, AllProbesReportPlausibleValues) {
  auto model = build_zoo_model("mlp", {}, 10, 3);
  auto metrics = run_probes(model, eval_.get(), kSample, quick_spec(), progress_);
  for (const char* key : {"accuracy", "latency_b1_median_ms", "latency_b1_p95_ms",
                          "latency_b8_median_ms", "latency_b8_p95_ms", "params", "macs",
                          "size_bytes", "threads"}) {
    ASSERT_TRUE(metrics.count(key)) << key;
    EXPECT_GT(metrics[key], 0.0) << key;
  }
  EXPECT_LE(metrics["accuracy"], 1.0);
  EXPECT_LE(metrics["latency_b1_median_ms"], metrics["latency_b1_p95_ms"]);
  EXPECT_EQ(metrics["params"], double(kMlpParams));
  EXPECT_EQ(metrics["macs"], double(kMlpMacs));
  // float32 weights dominate the archive; code and metadata add a few KB.
  EXPECT_GE(metrics["size_bytes"], 4.0 * kMlpParams);
  EXPECT_LE(metrics["size_bytes"], 4.0 * kMlpParams + 64 * 1024);
  EXPECT_GE(metrics["threads"], 1.0);
  EXPECT_TRUE(model.is_training());
}

TEST(Probes, WithoutDataAccuracyIsSkippedAndOnlyEnabledProbesRun) {
  auto model = build_zoo_model("cnn", {{"width", 4}}, 10, 3);
  NullProgress progress;
  ProbeSpec spec = quick_spec();
  spec.enabled = {"accuracy", "latency", "params"};
  const auto before = model.attr("bn1").toModule().attr("running_mean").toTensor().clone();
  auto metrics = run_probes(model, nullptr, kSample, spec, progress);
  EXPECT_FALSE(metrics.count("accuracy"));
  EXPECT_FALSE(metrics.count("macs"));
  EXPECT_FALSE(metrics.count("size_bytes"));
  EXPECT_GT(metrics.at("latency_b8_median_ms"), 0.0);
  EXPECT_TRUE(metrics.count("params"));
  EXPECT_TRUE(metrics.count("threads"));
  // Latency runs in eval mode: BN statistics stay put.
  EXPECT_TRUE(torch::equal(model.attr("bn1").toModule().attr("running_mean").toTensor(), before));
}

}  // namespace
}  // namespace mcompress
