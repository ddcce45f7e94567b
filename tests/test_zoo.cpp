// Built-in zoo models: shapes, determinism, train/eval, gradients, and that a
// saved model runs in plain PyTorch.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <functional>
#include <set>
#include <sstream>

#include "mcompress/framework/sources/zoo.h"
#include "mcompress/sdk/error.h"
#include "mcompress/models/graph.h"
#include "test_support.h"

namespace mcompress {
namespace {

// Deterministic input both C++ and the Python check can build.
torch::Tensor ramp_input(int64_t batch) {
  return torch::linspace(-1.0, 1.0, batch * 28 * 28).reshape({batch, 1, 28, 28});
}

torch::Tensor run(torch::jit::Module& model, const torch::Tensor& x) {
  return model.forward({x}).toTensor();
}

class ZooModel : public ::testing::TestWithParam<std::string> {};

TEST_P(ZooModel, ForwardShapeIsBatchByClasses) {
  auto model = build_zoo_model(GetParam(), {}, 10, 1);
  EXPECT_EQ(run(model, torch::randn({3, 1, 28, 28})).sizes(), (std::vector<int64_t>{3, 10}));
  auto seven = build_zoo_model(GetParam(), {{"width", 4}}, 7, 1);
  EXPECT_EQ(run(seven, torch::randn({2, 1, 28, 28})).sizes(), (std::vector<int64_t>{2, 7}));
}

TEST_P(ZooModel, SameSeedSameWeightsOtherSeedOtherWeights) {
  auto a = build_zoo_model(GetParam(), {}, 10, 42);
  auto b = build_zoo_model(GetParam(), {}, 10, 42);
  auto c = build_zoo_model(GetParam(), {}, 10, 43);
  auto pa = a.named_parameters();
  auto pb = b.named_parameters();
  auto pc = c.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  bool any_differs = false;
  for (auto ia = pa.begin(), ib = pb.begin(), ic = pc.begin(); ia != pa.end(); ++ia, ++ib, ++ic) {
    EXPECT_EQ((*ia).name, (*ib).name);
    EXPECT_TRUE(torch::equal((*ia).value, (*ib).value)) << (*ia).name;
    EXPECT_TRUE((*ia).value.requires_grad()) << (*ia).name;
    any_differs = any_differs || !torch::equal((*ia).value, (*ic).value);
  }
  EXPECT_TRUE(any_differs);
}

TEST_P(ZooModel, TrainAndEvalSwitchEveryModule) {
  auto model = build_zoo_model(GetParam(), {}, 10, 1);
  EXPECT_TRUE(model.is_training());
  model.eval();
  for (const auto& m : model.modules()) EXPECT_FALSE(m.is_training());
  const auto x = ramp_input(4);
  EXPECT_TRUE(torch::equal(run(model, x), run(model, x)));  // eval: no state changes
  model.train();
  for (const auto& m : model.modules()) EXPECT_TRUE(m.is_training());
}

// Batch norm updates its running statistics in training mode only.
TEST_P(ZooModel, BatchNormStatisticsMoveOnlyWhileTraining) {
  auto model = build_zoo_model(GetParam(), {}, 10, 1);
  if (!model.hasattr("bn1")) GTEST_SKIP() << "no batch norm";
  auto running_mean = [&] {
    return model.attr("bn1").toModule().attr("running_mean").toTensor().clone();
  };
  const auto initial = running_mean();
  model.eval();
  run(model, torch::randn({4, 1, 28, 28}));
  EXPECT_TRUE(torch::equal(running_mean(), initial));
  model.train();
  run(model, torch::randn({4, 1, 28, 28}));
  EXPECT_FALSE(torch::equal(running_mean(), initial));
}

TEST_P(ZooModel, BackwardReachesEveryParameter) {
  auto model = build_zoo_model(GetParam(), {}, 10, 1);
  auto logits = run(model, torch::randn({4, 1, 28, 28}));
  auto loss = at::nll_loss(logits.log_softmax(1), torch::tensor({0, 1, 2, 3}));
  loss.backward();
  for (const auto& p : model.named_parameters()) {
    ASSERT_TRUE(p.value.grad().defined()) << p.name;
    EXPECT_GT(p.value.grad().abs().sum().item<double>(), 0.0) << p.name;
  }
}

// Pruning finds layers as GetAttr chains in the inlined graph: every weight
// used by a linear/conv must resolve to a registered parameter path.
TEST_P(ZooModel, WeightsAreReachableThroughAttributePaths) {
  auto model = build_zoo_model(GetParam(), {}, 10, 1);
  std::set<std::string> parameters;
  for (const auto& p : model.named_parameters()) parameters.insert(p.name);
  auto graph = inlined_forward_graph(model);
  int layers = 0;
  for (auto* node : graph->nodes()) {
    const std::string kind = node->kind().toQualString();
    if (kind != "aten::linear" && kind != "aten::conv2d") continue;
    auto path = attribute_path(node->input(1));
    ASSERT_TRUE(path) << kind;
    EXPECT_TRUE(parameters.count(path->full())) << path->full();
    ++layers;
  }
  EXPECT_GE(layers, 3);
}

TEST_P(ZooModel, SavedModelRunsInPlainPython) {
  testing::TempDir dir("zoo");
  auto model = build_zoo_model(GetParam(), {}, 10, 5);
  model.train();
  run(model, torch::randn({8, 1, 28, 28}));  // move BN statistics off their defaults
  model.eval();
  const auto expected = run(model, ramp_input(2));
  const auto path = (dir.path() / "model.pt").string();
  model.save(path);

  const std::string script =
      "import torch\n"
      "m = torch.jit.load('" + path + "')\n"
      "x = torch.linspace(-1.0, 1.0, 2 * 28 * 28).reshape(2, 1, 28, 28)\n"
      "y = m(x)\n"
      "print(list(y.shape), repr(y.sum().item()), repr(y.abs().sum().item()))\n";
  testing::write_text(dir.path() / "check.py", script);
  auto result = testing::run_command(std::string(MCOMPRESS_PYTHON) + " " +
                                     (dir.path() / "check.py").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::istringstream out(result.output.substr(result.output.rfind('[')));
  std::string shape_a, shape_b;
  double sum = 0, abs_sum = 0;
  out >> shape_a >> shape_b >> sum >> abs_sum;
  EXPECT_EQ(shape_a + shape_b, "[2,10]") << result.output;
  const double tolerance = 1e-4 * (1.0 + expected.abs().sum().item<double>());
  EXPECT_NEAR(sum, expected.sum().item<double>(), tolerance) << result.output;
  EXPECT_NEAR(abs_sum, expected.abs().sum().item<double>(), tolerance) << result.output;
}

INSTANTIATE_TEST_SUITE_P(Zoo, ZooModel, ::testing::Values("mlp", "cnn", "resnet"),
                         [](const auto& info) { return info.param; });

TEST(Zoo, ListsEveryModelWithItsOptions) {
  std::vector<std::string> names;
  for (const auto& info : zoo_models()) {
    names.push_back(info.name);
    EXPECT_FALSE(info.summary.empty());
    EXPECT_FALSE(info.options.empty());
  }
  EXPECT_EQ(names, (std::vector<std::string>{"mlp", "cnn", "resnet", "char_lm", "llama"}));
}

TEST(Zoo, WidthOptionScalesLayers) {
  auto model = build_zoo_model("mlp", {{"width", 8}}, 10, 1);
  EXPECT_EQ(model.attr("fc1").toModule().attr("weight").toTensor().sizes(),
            (std::vector<int64_t>{32, 784}));
  auto resnet = build_zoo_model("resnet", {{"width", 8}, {"blocks", 2}}, 10, 1);
  auto layer2 = resnet.attr("layer2").toModule();
  EXPECT_TRUE(layer2.attr("block0").toModule().hasattr("downsample"));
  EXPECT_FALSE(layer2.attr("block1").toModule().hasattr("downsample"));
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Zoo, UnknownModelOrOptionNamesWhatExists) {
  auto message = error_of([] { build_zoo_model("vgg", {}, 10, 1); });
  EXPECT_NE(message.find("'vgg'"), std::string::npos) << message;
  EXPECT_NE(message.find("mlp, cnn, resnet"), std::string::npos) << message;
  message = error_of([] { build_zoo_model("cnn", {{"depth", 3}}, 10, 1); });
  EXPECT_NE(message.find("'depth'"), std::string::npos) << message;
  EXPECT_NE(message.find("width"), std::string::npos) << message;
  message = error_of([] { build_zoo_model("mlp", {{"width", 0}}, 10, 1); });
  EXPECT_NE(message.find("width"), std::string::npos) << message;
  message = error_of([] { build_zoo_model("mlp", {}, 0, 1); });
  EXPECT_NE(message.find("num_classes"), std::string::npos) << message;
}

}  // namespace
}  // namespace mcompress
