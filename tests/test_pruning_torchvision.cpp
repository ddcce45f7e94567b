// Proof on real architectures: torchvision classification models (Debian's
// python3-torchvision, random weights, scripted to TorchScript and cached in
// the build tree) pruned by each criterion plugin at 30% and 50% of their
// channels, then saved and run by plain PyTorch in a fresh process. Inputs are
// 64x64 to keep the suite fast; the architectures are the real ones.
#include <unistd.h>
#include <gtest/gtest.h>
#include <torch/script.h>

#include <filesystem>
#include <iostream>
#include <optional>
#include <map>
#include <sstream>

#include <mcompress/sdk/error.h>
#include <mcompress/models/evaluate.h>
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

constexpr int64_t kResolution = 64;

fs::path scripted_model(const std::string& name) { return mcompress::testing::scripted_torchvision_model(name); }

const mcompress::Pass& pass_named(const std::string& name) { return mcompress::testing::plugin_pass(name); }

torch::Tensor deterministic_input(int64_t batch) {
  const int64_t numel = batch * 3 * kResolution * kResolution;
  return torch::linspace(-1, 1, numel).reshape({batch, 3, kResolution, kResolution});
}

torch::Tensor run(const Module& model, const torch::Tensor& input) {
  mcompress::EvalModeGuard eval(model);
  torch::NoGradGuard no_grad;
  return mcompress::forward_tensor(model, input);
}

struct Pruned {
  Module model;
  nlohmann::json stats;
};

Pruned prune(const Module& original, const std::string& pass_name, double sparsity) {
  const mcompress::Pass& pass = pass_named(pass_name);
  mcompress::Params params;
  for (const auto& spec : pass.info().params) params.set(spec.name, *spec.default_value);
  params.set("sparsity", sparsity);
  if (params.has("calibration_batches")) {
    params.set("calibration_batches", int64_t{2});
    params.set("calibration_batch_size", int64_t{4});
  }
  torch::manual_seed(1);
  auto data = std::make_shared<mcompress::Dataset>();
  data->inputs = torch::randn({8, 3, kResolution, kResolution});
  data->targets = torch::randint(10, {8}, torch::kLong);
  data->num_classes = 10;
  mcompress::NullLogger log;
  mcompress::NullProgress progress;
  mcompress::PassContext context;
  context.model = mcompress::deep_copy(original);
  context.original = original;
  context.example_input = torch::randn({1, 3, kResolution, kResolution});
  context.calibration = data;
  context.params = &params;
  context.log = &log;
  context.progress = &progress;
  auto result = pass.run(context);
  return {context.model, result.stats};
}

// Outputs of saved models computed by plain PyTorch in one fresh process.
std::map<std::string, torch::Tensor> python_outputs(const std::vector<fs::path>& files, int64_t batch) {
  std::ostringstream script;
  script << "import torch\n"
         << "x = torch.linspace(-1, 1, " << batch * 3 * kResolution * kResolution << ").reshape(" << batch
         << ", 3, " << kResolution << ", " << kResolution << ")\n"
         << "for f in [";
  for (const auto& file : files) script << "r'" << file.string() << "', ";
  script << "]:\n"
         << "    m = torch.jit.load(f)\n"
         << "    m.eval()\n"
         << "    with torch.no_grad():\n"
         << "        y = m(x)\n"
         << "    print('OUTPUT', f, ' '.join(repr(v) for v in y.flatten().tolist()))\n";
  const fs::path script_file = files.front().parent_path() / "run_models.py";
  mcompress::testing::write_text(script_file, script.str());
  const auto result = run_command(std::string(MCOMPRESS_PYTHON) + " " + script_file.string());
  EXPECT_EQ(result.exit_code, 0) << result.output;
  std::map<std::string, torch::Tensor> outputs;
  std::istringstream lines(result.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("OUTPUT ", 0) != 0) continue;
    std::istringstream fields(line.substr(7));
    std::string file;
    fields >> file;
    std::vector<double> values;
    for (double v; fields >> v;) values.push_back(v);
    outputs[file] = torch::tensor(values, torch::kDouble);
  }
  return outputs;
}

void expect_same_output(const torch::Tensor& cpp, const torch::Tensor& python, const std::string& label) {
  ASSERT_TRUE(python.defined()) << label << ": no output from Python";
  ASSERT_EQ(cpp.numel(), python.numel()) << label;
  const auto expected = cpp.flatten().to(torch::kDouble);
  const double scale = expected.abs().max().item<double>() + 1e-6;
  EXPECT_LE((python - expected).abs().max().item<double>(), 1e-4 * scale) << label;
}

class CoreArchitectures : public ::testing::TestWithParam<std::string> {};

// Every criterion at 30% and 50%: parameters and MACs drop, the output shape
// stays, the saved model runs in plain PyTorch with the same outputs; at 0%
// the output is bit-identical.
TEST_P(CoreArchitectures, PruneSaveReloadAndRunWithEveryCriterion) {
  const std::string name = GetParam();
  const Module original = torch::jit::load(scripted_model(name).string());
  const torch::Tensor example = torch::randn({1, 3, kResolution, kResolution});
  const int64_t params_before = mcompress::count_parameters(original);
  const int64_t macs_before = mcompress::count_macs(original, example);
  const torch::Tensor input = deterministic_input(2);
  const torch::Tensor output_before = run(original, input);

  TempDir tmp("pruned-" + name);
  std::vector<fs::path> files;
  std::map<std::string, torch::Tensor> expected;
  for (const std::string pass : {"magnitude_prune", "gradient_prune", "activation_prune"}) {
    {
      const Pruned unchanged = prune(original, pass, 0.0);
      EXPECT_TRUE(torch::equal(run(unchanged.model, input), output_before)) << name << " " << pass;
    }
    for (double sparsity : {0.3, 0.5}) {
      const std::string label = name + " " + pass + " " + std::to_string(sparsity);
      SCOPED_TRACE(label);
      const Pruned pruned = prune(original, pass, sparsity);
      const auto& stats = pruned.stats;
      EXPECT_GT(stats.at("groups_pruned").get<int64_t>(), 0) << stats.at("frozen_groups").dump(2);
      EXPECT_EQ(stats.at("params_before").get<int64_t>(), params_before);
      EXPECT_LT(mcompress::count_parameters(pruned.model), params_before * (1.0 - sparsity * 0.8));
      EXPECT_LT(mcompress::count_macs(pruned.model, example), macs_before * (1.0 - sparsity * 0.8));
      const torch::Tensor output = run(pruned.model, input);
      EXPECT_EQ(output.sizes(), output_before.sizes());
      const fs::path file = tmp.path() / (pass + "-" + std::to_string(int(sparsity * 100)) + ".pt");
      pruned.model.save(file.string());
      files.push_back(file);
      expected[file.string()] = output;
    }
  }
  const auto outputs = python_outputs(files, 2);
  for (const auto& file : files) expect_same_output(expected[file.string()], outputs.count(file.string()) ? outputs.at(file.string()) : torch::Tensor(), file.string());
}

INSTANTIATE_TEST_SUITE_P(Torchvision, CoreArchitectures,
                         ::testing::Values("resnet18", "resnet50", "vgg16_bn", "mobilenet_v2", "densenet121"),
                         [](const auto& info) { return info.param; });

// The grouped convolutions of a model (groups > 1, not depthwise) by module
// path, with their groups and weight shape.
struct GroupedConv {
  int64_t groups = 1;
  std::vector<int64_t> weight_shape;
};

std::map<std::string, GroupedConv> grouped_convs(const Module& model) {
  std::map<std::string, GroupedConv> result;
  for (const auto& named : model.named_modules()) {
    const auto type = named.value.type();
    if (!type->hasConstant("groups") || !named.value.hasattr("weight")) continue;
    const int64_t groups = type->getConstant("groups").toInt();
    const torch::Tensor weight = named.value.attr("weight").toTensor();
    if (groups > 1 && weight.size(1) > 1) result[named.name] = {groups, weight.sizes().vec()};
  }
  return result;
}

// ResNeXt's 32 groups and RegNet's group width of 8 prune within their
// groups: every grouped conv keeps its groups and loses the same number of
// input and output channels per group, the MACs drop about as much as a plain
// ResNet-50's at the same ratio, and the result runs here and in plain
// PyTorch. RegNet also with the two criteria that run the model.
TEST(TorchvisionArchitectures, GroupedConvolutionsPruneWithinTheirGroups) {
  const torch::Tensor example = torch::randn({1, 3, kResolution, kResolution});
  const torch::Tensor input = deterministic_input(2);
  auto mac_ratio = [&](const Module& original, const Module& pruned) {
    return static_cast<double>(mcompress::count_macs(pruned, example)) / mcompress::count_macs(original, example);
  };
  const Module resnet = torch::jit::load(scripted_model("resnet50").string());
  const double resnet_ratio = mac_ratio(resnet, prune(resnet, "magnitude_prune", 0.5).model);
  std::cout << "resnet50 at 50%: MACs x" << resnet_ratio << "\n";

  TempDir tmp("pruned-grouped");
  std::vector<fs::path> files;
  std::map<std::string, torch::Tensor> expected;
  const std::vector<std::pair<std::string, std::string>> runs = {
      {"resnext50_32x4d", "magnitude_prune"},
      {"regnet_y_400mf", "magnitude_prune"},
      {"regnet_y_400mf", "gradient_prune"},
      {"regnet_y_400mf", "activation_prune"}};
  for (const auto& [name, pass] : runs) {
    SCOPED_TRACE(name + " " + pass);
    const Module original = torch::jit::load(scripted_model(name).string());
    const auto before = grouped_convs(original);
    ASSERT_FALSE(before.empty());
    const Pruned pruned = prune(original, pass, 0.5);
    const double ratio = mac_ratio(original, pruned.model);
    std::cout << name << " " << pass << " at 50%: MACs x" << ratio << ", params "
              << pruned.stats.at("params_before") << " -> " << pruned.stats.at("params_after") << "\n";
    EXPECT_LT(ratio, resnet_ratio + 0.05);
    for (const auto& frozen : pruned.stats.at("frozen_groups")) {
      EXPECT_EQ(frozen.at("reason").get<std::string>().find("grouped"), std::string::npos) << frozen.dump();
    }
    const auto after = grouped_convs(pruned.model);
    ASSERT_EQ(after.size(), before.size());
    for (const auto& [path, conv] : before) {
      const auto& now = after.at(path);
      EXPECT_EQ(now.groups, conv.groups) << path;
      EXPECT_EQ(now.weight_shape[0] % conv.groups, 0) << path;
      EXPECT_LT(now.weight_shape[0], conv.weight_shape[0]) << path;
      EXPECT_LT(now.weight_shape[1], conv.weight_shape[1]) << path;
    }
    const torch::Tensor output = run(pruned.model, input);
    EXPECT_EQ(output.sizes(), run(original, input).sizes());
    const fs::path file = tmp.path() / (name + "-" + pass + ".pt");
    pruned.model.save(file.string());
    files.push_back(file);
    expected[file.string()] = output;
  }
  const auto outputs = python_outputs(files, 2);
  for (const auto& file : files) {
    expect_same_output(expected[file.string()],
                       outputs.count(file.string()) ? outputs.at(file.string()) : torch::Tensor(), file.string());
  }
}

// MobileNetV2's inverted residuals (expansion, depthwise, projection) and
// DenseNet's concatenations prune; only the classifier is frozen.
TEST(TorchvisionArchitectures, MobileNetV2AndDenseNetFreezeOnlyTheirClassifier) {
  for (const std::string name : {"mobilenet_v2", "densenet121"}) {
    const Module original = torch::jit::load(scripted_model(name).string());
    const Pruned pruned = prune(original, "magnitude_prune", 0.5);
    ASSERT_EQ(pruned.stats.at("frozen_groups").size(), 1u) << name << pruned.stats.at("frozen_groups").dump(2);
    EXPECT_EQ(pruned.stats["frozen_groups"][0]["group"], "classifier" + std::string(name == "mobilenet_v2" ? ".1" : ""));
  }
}

// Other architectures: whatever the analysis does not understand is frozen
// with a reason; the rest prunes, and the result runs with the same output
// shape here and in plain PyTorch. A model the pass cannot take at all is
// refused with an mcompress::Error that says why. Never a crash or a broken model.
class OtherArchitectures : public ::testing::TestWithParam<std::string> {};

TEST_P(OtherArchitectures, PruneWhatIsSafeOrFreezeWithAReason) {
  const std::string name = GetParam();
  const Module original = torch::jit::load(scripted_model(name).string());
  const torch::Tensor input = deterministic_input(2);
  std::optional<Pruned> result;
  try {
    result = prune(original, "magnitude_prune", 0.5);
  } catch (const mcompress::Error& refused) {
    // A refusal must say why (e.g. GoogLeNet's forward returns a named tuple).
    std::cout << name << ": refused: " << refused.what() << "\n";
    EXPECT_GT(std::string(refused.what()).size(), 20u);
    return;
  }
  const Pruned& pruned = *result;
  std::cout << name << ": " << pruned.stats.at("groups_pruned") << " of " << pruned.stats.at("groups_total")
            << " groups pruned; params " << pruned.stats.at("params_before") << " -> "
            << pruned.stats.at("params_after") << "\n";
  for (const auto& frozen : pruned.stats.at("frozen_groups")) {
    EXPECT_FALSE(frozen.at("reason").get<std::string>().empty()) << frozen.dump();
    std::cout << "  frozen " << frozen.at("group").get<std::string>() << ": "
              << frozen.at("reason").get<std::string>().substr(0, 160) << "\n";
  }
  const torch::Tensor output_before = run(original, input);
  const torch::Tensor output = run(pruned.model, input);
  EXPECT_EQ(output.sizes(), output_before.sizes());
  TempDir tmp("pruned-" + name);
  const fs::path file = tmp.path() / "model.pt";
  pruned.model.save(file.string());
  const auto outputs = python_outputs({file}, 2);
  expect_same_output(output, outputs.count(file.string()) ? outputs.at(file.string()) : torch::Tensor(), name);
}

INSTANTIATE_TEST_SUITE_P(Torchvision, OtherArchitectures,
                         ::testing::Values("squeezenet1_1", "googlenet", "shufflenet_v2_x0_5", "mnasnet0_5",
                                           "efficientnet_b0", "regnet_x_400mf", "convnext_tiny"),
                         [](const auto& info) { return info.param; });

}  // namespace
