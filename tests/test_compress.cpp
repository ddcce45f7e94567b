// `mcompress compress`: the plan it makes for a size and an accuracy target,
// the inputs it refuses, and one real search on Fashion-MNIST that writes the
// fastest model meeting both targets.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "mcompress/framework/loader/plugin_host.h"
#include "mcompress/framework/sources/zoo.h"
#include "mcompress/framework/strategy/compression_search.h"
#include "mcompress/framework/sweep/sweep.h"
#include "mcompress/sdk/error.h"
#include "test_support.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;
using testing::run_command;
using testing::TempDir;

const std::string kCli = MCOMPRESS_CLI;

TEST(CompressionPlan, SparsityAimsBeyondTheSizeRatioAndStaysInRange) {
  // (1 - s)^2 = 1 / (1.25 * ratio): 4x asks 0.553, which keeps 20% of a middle layer's weights.
  EXPECT_NEAR(sparsity_for_size_ratio(4.0), 1.0 - 1.0 / std::sqrt(5.0), 1e-12);
  EXPECT_LT(sparsity_for_size_ratio(2.0), sparsity_for_size_ratio(4.0));
  EXPECT_GE(sparsity_for_size_ratio(1.0), 0.1);
  EXPECT_DOUBLE_EQ(sparsity_for_size_ratio(0.5), sparsity_for_size_ratio(1.0));
  EXPECT_DOUBLE_EQ(sparsity_for_size_ratio(1000.0), 0.9);
}

TEST(CompressionPlan, PercentagesAndFractionsAreRead) {
  EXPECT_DOUBLE_EQ(parse_fraction("1%", "--max-accuracy-loss"), 0.01);
  EXPECT_DOUBLE_EQ(parse_fraction("0.015", "--max-accuracy-loss"), 0.015);
  EXPECT_DOUBLE_EQ(parse_fraction("4", "--target-ratio"), 4.0);
  for (const char* bad : {"", "%", "one", "1%%", "2x", "nan"}) {
    try {
      parse_fraction(bad, "--max-accuracy-loss");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--max-accuracy-loss"), std::string::npos) << e.what();
    }
  }
}

TEST(CompressionPlan, TargetsThatCannotBePlannedAreRefused) {
  CompressionRequest request;
  request.model = "/models/net.pt";
  request.target_ratio = 1.0;
  EXPECT_THROW(plan_compression(request, 1000), Error);
  request.target_ratio = 4.0;
  request.max_accuracy_loss = 1.0;
  EXPECT_THROW(plan_compression(request, 1000), Error);
  request.max_accuracy_loss = -0.01;
  EXPECT_THROW(plan_compression(request, 1000), Error);
}

// The plan is a recipe and a sweep the comparison machinery reads and
// validates against the loaded passes; int8 candidates appear only where
// the int8_quant pass is loaded, and cover the size the pruning leaves.
TEST(CompressionPlan, ThePlanIsAValidSweepOfPruningRecoveryAndInt8Candidates) {
  PluginHost plugins;
  plugins.load_directories(PluginHost::search_path({}));
  TempDir tmp("compress_plan");
  for (bool int8 : {false, true}) {
    if (int8 && !plugins.find("int8_quant")) continue;
    for (bool thorough : {false, true}) {
      CompressionRequest request;
      request.model = tmp.path() / "net.pt";
      request.target_ratio = 8.0;
      request.max_accuracy_loss = 0.01;
      request.thorough = thorough;
      request.int8_available = int8;
      const auto plan = plan_compression(request, 8 << 20);
      EXPECT_DOUBLE_EQ(plan.max_size_mb, 1.0);
      // Criteria x {fine-tuning, distillation} x sparsities, plus two pruned-and-int8 candidates.
      const size_t floats = thorough ? 3 * 2 * 2 : 2 * 2;
      ASSERT_EQ(plan.candidates.size(), floats + (int8 ? 2 : 0)) << plan.sweep_yaml;
      std::ofstream(tmp.path() / "net.pt") << "placeholder: the recipe only checks that the file exists";
      std::ofstream(tmp.path() / "recipe.yaml") << plan.recipe_yaml;
      std::ofstream(tmp.path() / "sweep.yaml") << plan.sweep_yaml;
      const Sweep sweep = load_sweep((tmp.path() / "sweep.yaml").string());
      EXPECT_NO_THROW(validate_candidates(sweep, plugins)) << plan.sweep_yaml;
      ASSERT_EQ(sweep.candidates.size(), plan.candidates.size());
      EXPECT_EQ(sweep.objective.reference, "baseline");
      EXPECT_NE(plan.sweep_yaml.find("max_accuracy_drop: 0.01"), std::string::npos) << plan.sweep_yaml;
      EXPECT_NE(plan.sweep_yaml.find(fmt::format("sparsity: {:g}", std::round(100 * sparsity_for_size_ratio(8)) / 100)),
                std::string::npos)
          << plan.sweep_yaml;
      if (int8) {
        EXPECT_NE(plan.sweep_yaml.find("pass: int8_quant"), std::string::npos);
      }
    }
  }
  // 3x smaller is within int8's reach alone.
  if (plugins.find("int8_quant")) {
    CompressionRequest request;
    request.model = tmp.path() / "net.pt";
    request.target_ratio = 3.0;
    request.int8_available = true;
    const auto plan = plan_compression(request, 1 << 20);
    EXPECT_NE(std::find(plan.candidates.begin(), plan.candidates.end(), "int8"), plan.candidates.end());
  }
}

TEST(CompressCommand, BadInputIsRefusedWithExitCode2AndNothingIsRun) {
  TempDir tmp("compress_bad");
  const fs::path not_a_model = tmp.path() / "notes.pt";
  std::ofstream(not_a_model) << "not a TorchScript archive";
  const fs::path out = tmp.path() / "out";
  struct Case {
    std::string args, message;
  };
  for (const auto& [args, message] : std::vector<Case>{
           {not_a_model.string() + " --max-accuracy-loss 1%", "--target-ratio is required"},
           {not_a_model.string() + " --target-ratio 4", "--max-accuracy-loss is required"},
           {(tmp.path() / "absent.pt").string() + " --target-ratio 4 --max-accuracy-loss 1%", "no such file"},
           {not_a_model.string() + " --target-ratio 4 --max-accuracy-loss 1%", "not a TorchScript model"},
           {not_a_model.string() + " --target-ratio four --max-accuracy-loss 1%", "--target-ratio must be"},
       }) {
    const auto result = run_command(kCli + " compress " + args + " --out " + out.string());
    EXPECT_EQ(result.exit_code, 2) << args << "\n" << result.output;
    EXPECT_NE(result.output.find(message), std::string::npos) << args << "\n" << result.output;
    EXPECT_FALSE(fs::exists(out)) << args;
  }
  // A target that cannot be planned, on a real model.
  auto model = build_zoo_model("cnn", {{"width", 4}}, 10, 1);
  model.save((tmp.path() / "cnn.pt").string());
  const auto result =
      run_command(kCli + " compress " + (tmp.path() / "cnn.pt").string() + " --target-ratio 0.5 --max-accuracy-loss 1%");
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("target ratio must be above 1"), std::string::npos) << result.output;
}

// A real search, kept small: a zoo CNN trained for a moment, 600 training
// samples. Whatever the candidates reach, the command either writes the
// fastest one that meets both targets or writes nothing and names the
// closest; here the targets are loose enough to be met.
TEST(CompressCommand, WritesTheFastestModelMeetingBothTargetsOrNamesTheClosest) {
  TempDir tmp("compress_run");
  auto model = build_zoo_model("cnn", {{"width", 8}}, 10, 1);
  const fs::path input = tmp.path() / "cnn.pt";
  model.save(input.string());
  const auto common = fmt::format(" --data-path {} --train-limit 600 --epochs 1 --threads 1 --no-isolate --quiet",
                                  MCOMPRESS_FASHION_MNIST_DIR);
  const fs::path out = tmp.path() / "met";
  const auto met = run_command(kCli + " compress " + input.string() + " --target-ratio 2 --max-accuracy-loss 0.9" +
                               common + " --out " + out.string() + " --json");
  ASSERT_EQ(met.exit_code, 0) << met.output;
  for (const char* file : {"recipe.yaml", "sweep.yaml", "comparison.json", "comparison.md", "model.pt"})
    EXPECT_TRUE(fs::exists(out / file)) << file;
  const auto summary = nlohmann::json::parse(met.output.substr(met.output.find('{')));
  EXPECT_TRUE(summary["met"].get<bool>());
  EXPECT_GE(summary["size_ratio"].get<double>(), 2.0);
  EXPECT_GE(double(fs::file_size(input)) / double(fs::file_size(out / "model.pt")), 2.0);
  // The model written is the first of the ranking, and it loads.
  std::ifstream in(out / "comparison.json");
  const auto comparison = nlohmann::json::parse(in);
  EXPECT_EQ(comparison["candidates"][0]["name"], summary["candidate"]) << comparison.dump(1).substr(0, 2000);
  auto written = torch::jit::load((out / "model.pt").string());
  EXPECT_EQ(written.forward({torch::randn({2, 1, 28, 28})}).toTensor().sizes(), (std::vector<int64_t>{2, 10}));

  // 1000x smaller losing nothing: no candidate gets there, nothing is written, the closest is named.
  const fs::path missed = tmp.path() / "missed";
  const auto none = run_command(kCli + " compress " + input.string() + " --target-ratio 1000 --max-accuracy-loss 0" +
                                common + " --out " + missed.string());
  EXPECT_EQ(none.exit_code, 1) << none.output;
  EXPECT_NE(none.output.find("no candidate met both targets"), std::string::npos) << none.output;
  EXPECT_NE(none.output.find("Closest: `"), std::string::npos) << none.output;
  EXPECT_FALSE(fs::exists(missed / "model.pt"));
}

}  // namespace
}  // namespace mcompress
