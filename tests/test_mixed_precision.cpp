// Bits per layer from measured sensitivity (mixed_precision.h), on a seeded
// Llama checkpoint from tests/python/hf_reference.py.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "mcompress/formats/hf_model.h"
#include "mcompress/quantization/mixed_precision.h"
#include "mcompress/quantization/quantized_model.h"
#include "mcompress/sdk/error.h"
#include "test_support.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;

class MixedPrecision : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new testing::TempDir("mixed_precision");
    const auto result = testing::run_command(
        fmt::format("{} '{}/tests/python/hf_reference.py' make '{}'", MCOMPRESS_PYTHON, MCOMPRESS_SOURCE_DIR,
                    tmp_->path().string()));
    ASSERT_EQ(result.exit_code, 0) << result.output;
  }
  static void TearDownTestSuite() { delete tmp_; }

  void SetUp() override {
    model_ = load_hf_model(tmp_->path() / "llama3", "float32");
    for (const auto& layer : find_linear_layers(model_)) paths_.push_back(layer.path);
    torch::manual_seed(7);
    batches_ = {torch::randint(0, 97, {2, 16}, torch::kLong), torch::randint(0, 97, {2, 16}, torch::kLong)};
  }

  // Mean KL from the floating model to `plan` quantized, over the batches.
  double kl_of(const std::vector<LayerQuantization>& plan) {
    torch::NoGradGuard no_grad;
    auto quantized = quantize_linear_layers(model_, plan).model;
    double kl = 0;
    int64_t positions = 0;
    for (const auto& batch : batches_) {
      auto p = torch::log_softmax(model_.forward({batch}).toTensor().reshape({-1, 97}), -1);
      auto q = torch::log_softmax(quantized.forward({batch}).toTensor().reshape({-1, 97}), -1);
      kl += (p.exp() * (p - q)).sum().item<double>();
      positions += p.size(0);
    }
    return kl / double(positions);
  }

  static testing::TempDir* tmp_;
  torch::jit::Module model_;
  std::vector<std::string> paths_;
  std::vector<torch::Tensor> batches_;
};
testing::TempDir* MixedPrecision::tmp_ = nullptr;

TEST_F(MixedPrecision, MeetsTheBudgetAndSpendsItOnTheMostSensitiveLayers) {
  std::map<std::string, torch::Tensor> before;
  for (const auto& p : model_.named_parameters()) before[p.name] = p.value.clone();

  BitAllocationOptions options;
  options.low_bits = 2;
  options.high_bits = 4;
  options.group_size = 32;
  options.target_bits_per_weight = 3.0;
  const auto allocation = allocate_bits_by_sensitivity(model_, paths_, batches_, options);

  // The model is left exactly as it was.
  for (const auto& p : model_.named_parameters()) EXPECT_TRUE(torch::equal(p.value, before.at(p.name))) << p.name;

  ASSERT_EQ(allocation.plan.size(), paths_.size());
  EXPECT_LE(allocation.bits_per_weight, 3.0 + 1e-9);
  EXPECT_GE(allocation.bits_per_weight, 2.0);
  // Layers whose input (48) does not fit the group are not measured.
  for (const auto& layer : allocation.layers) {
    if (layer.path.find("down_proj") != std::string::npos) {
      EXPECT_EQ(layer.weights, 0) << layer.path;
    } else {
      EXPECT_GT(layer.weights, 0) << layer.path;
      EXPECT_GT(layer.kl, 0.0) << layer.path;
    }
  }
  // Greedy by harm per weight: no layer left at low bits is more harmful per
  // weight than one moved up, unless moving it too would break the budget.
  double worst_up = 1e300;
  for (const auto& layer : allocation.layers)
    if (layer.bits == 4) worst_up = std::min(worst_up, layer.kl / double(layer.weights));
  ASSERT_LT(worst_up, 1e300) << "no layer got more bits";
  for (const auto& layer : allocation.layers) {
    if (layer.bits != 2 || layer.weights == 0) continue;
    if (layer.kl / double(layer.weights) > worst_up) {
      const double spent = allocation.bits_per_weight;
      int64_t total = 0;
      for (const auto& l : allocation.layers) total += l.weights;
      EXPECT_GT(spent + 2.0 * double(layer.weights) / double(total), 3.0 + 1e-9) << layer.path;
    }
  }

  // Measured, not assumed: the allocation hurts less than the same number of
  // upgraded weights spent on the least sensitive layers instead.
  std::vector<LayerQuantization> inverted;
  std::vector<size_t> order(allocation.layers.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const auto& la = allocation.layers[a];
    const auto& lb = allocation.layers[b];
    return la.kl / double(std::max<int64_t>(la.weights, 1)) < lb.kl / double(std::max<int64_t>(lb.weights, 1));
  });
  int64_t upgraded = 0, budget = 0;
  for (const auto& layer : allocation.layers) budget += layer.bits == 4 ? layer.weights : 0;
  std::map<std::string, int> bits;
  for (size_t i : order) {
    const auto& layer = allocation.layers[i];
    const bool up = layer.weights > 0 && upgraded + layer.weights <= budget;
    if (up) upgraded += layer.weights;
    bits[layer.path] = up ? 4 : 2;
  }
  for (const auto& path : paths_) inverted.push_back({path, bits[path], 32});
  EXPECT_LT(kl_of(allocation.plan), kl_of(inverted));
}

TEST_F(MixedPrecision, RefusesWhatCannotBeAllocated) {
  auto expect_error = [&](BitAllocationOptions options, std::vector<torch::Tensor> batches, const std::string& what) {
    try {
      allocate_bits_by_sensitivity(model_, paths_, batches, options);
      ADD_FAILURE() << "expected an error about " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  BitAllocationOptions options;
  options.group_size = 32;
  options.target_bits_per_weight = 5.0;
  expect_error(options, batches_, "between 3 and 4");
  options.target_bits_per_weight = 3.5;
  options.low_bits = 7;
  options.high_bits = 8;
  expect_error(options, batches_, "bits");
  options.low_bits = 3;
  options.high_bits = 4;
  expect_error(options, {}, "no calibration batches");
  try {
    allocate_bits_by_sensitivity(model_, {"model.layers.9.mlp"}, batches_, options);
    ADD_FAILURE() << "a path that is not in the model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.9.mlp"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mcompress
