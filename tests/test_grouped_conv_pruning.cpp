// Grouped convolutions (groups = G, not depthwise) in the dependency analysis
// and slicing: a conv keeps its G groups, its output channels lose the same
// number in every group, and its input channels (the producing layer's group)
// lose the same positions in every block, so its weight's input dim loses
// whole columns. The kept channels are checked against a reference computed
// here from the weights.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <cmath>
#include <vector>

#include <fmt/format.h>

#include <mcompress/models/evaluate.h>
#include <mcompress/models/module_copy.h>
#include <mcompress/models/model_stats.h>
#include <mcompress/pruning/channel_pruning.h>
#include <mcompress/pruning/dependency_graph.h>
#include <mcompress/pruning/pruning_allocation.h>
#include <mcompress/sdk/error.h>

namespace {

using mcompress::ChannelGroup;
using torch::jit::Module;

constexpr int64_t kInputChannels = 3;
constexpr int64_t kConvGroups = 4;
constexpr int64_t kMiddle = 12;  // 3 per convolution group
constexpr int64_t kWide = 16;    // 4 per convolution group
constexpr int64_t kOutputs = 5;

Module conv_module(const std::shared_ptr<torch::jit::CompilationUnit>& unit, int64_t in, int64_t out,
                   int64_t kernel, int64_t groups) {
  Module m(c10::QualifiedName("__torch__.grouped_conv_test.Conv"), unit, /*shouldMangle=*/true);
  m.register_attribute("training", c10::BoolType::get(), false);
  m.register_parameter("weight", torch::randn({out, in / groups, kernel, kernel}), false);
  m.register_parameter("bias", torch::randn({out}) * 0.1, false);
  m.register_attribute("in_channels", c10::IntType::get(), in);
  m.register_attribute("out_channels", c10::IntType::get(), out);
  const int64_t padding = kernel / 2;
  m.define(fmt::format("def forward(self, x):\n"
                       "    return torch.conv2d(x, self.weight, self.bias, [1, 1], [{0}, {0}], [1, 1], {1})\n",
                       padding, groups));
  return m;
}

// stem (1x1) -> relu -> grouped (3x3, 4 groups) -> relu -> head (1x1).
Module make_grouped_model() {
  torch::manual_seed(3);
  auto unit = std::make_shared<torch::jit::CompilationUnit>();
  Module m(c10::QualifiedName("__torch__.grouped_conv_test.Net"), unit, /*shouldMangle=*/true);
  m.register_attribute("training", c10::BoolType::get(), false);
  m.register_module("stem", conv_module(unit, kInputChannels, kMiddle, 1, 1));
  m.register_module("grouped", conv_module(unit, kMiddle, kWide, 3, kConvGroups));
  m.register_module("head", conv_module(unit, kWide, kOutputs, 1, 1));
  m.define("def forward(self, x):\n"
           "    x = torch.relu(self.stem.forward(x))\n"
           "    x = torch.relu(self.grouped.forward(x))\n"
           "    return self.head.forward(x)\n");
  return m;
}

torch::Tensor weight_of(const Module& model, const std::string& layer, const std::string& name = "weight") {
  return model.attr(layer).toModule().attr(name).toTensor().detach().clone();
}

torch::Tensor run(const Module& model, const torch::Tensor& input) {
  torch::NoGradGuard no_grad;
  return mcompress::forward_tensor(model, input);
}

const ChannelGroup& group_of(const mcompress::DependencyGraph& graph, const std::string& producer) {
  for (const auto& group : graph.groups) {
    if (group.name == producer) return group;
  }
  throw std::runtime_error("no group produced by " + producer);
}

// The L2 importance group_importance documents, computed independently:
// per member, the squared norm of what each channel owns, divided by its
// mean over the channels; members averaged; square root.
torch::Tensor reference_importance(const std::vector<torch::Tensor>& per_member) {
  torch::Tensor total = torch::zeros_like(per_member.front());
  for (const auto& scores : per_member) total += scores / scores.mean();
  return (total / static_cast<double>(per_member.size())).sqrt();
}

torch::Tensor row_norms(const torch::Tensor& weight) { return weight.reshape({weight.size(0), -1}).square().sum(1); }

// stem's channel c = g * 3 + j is read by column j of the grouped conv's rows of group g.
torch::Tensor grouped_input_norms(const torch::Tensor& grouped_weight) {
  const int64_t out_per_group = kWide / kConvGroups;
  const int64_t in_per_group = kMiddle / kConvGroups;
  auto scores = torch::zeros({kMiddle}, torch::kDouble);
  for (int64_t g = 0; g < kConvGroups; ++g) {
    for (int64_t j = 0; j < in_per_group; ++j) {
      scores[g * in_per_group + j] =
          grouped_weight.slice(0, g * out_per_group, (g + 1) * out_per_group).select(1, j).square().sum();
    }
  }
  return scores;
}

TEST(GroupedConvolution, AnalysisTiesInputPositionsAndSplitsOutputsIntoTheConvGroups) {
  const Module model = make_grouped_model();
  const auto graph = mcompress::analyze_dependencies(model, torch::randn({1, kInputChannels, 8, 8}));
  const ChannelGroup& stem = group_of(graph, "stem");
  EXPECT_FALSE(stem.frozen) << stem.frozen_reason;
  EXPECT_EQ(stem.parts, kConvGroups);
  EXPECT_EQ(stem.tied_parts, kConvGroups);
  bool has_grouped_input = false;
  for (const auto& member : stem.members) {
    if (member.full_name() == "grouped.weight") {
      EXPECT_EQ(member.dim, 1);
      EXPECT_EQ(member.conv_groups, kConvGroups);
      EXPECT_EQ(member.entries(stem.size), kMiddle / kConvGroups);
      has_grouped_input = true;
    }
  }
  EXPECT_TRUE(has_grouped_input);
  const ChannelGroup& grouped = group_of(graph, "grouped");
  EXPECT_FALSE(grouped.frozen) << grouped.frozen_reason;
  EXPECT_EQ(grouped.parts, kConvGroups);
  EXPECT_EQ(grouped.tied_parts, 1);
}

TEST(GroupedConvolution, HalfSparsityKeepsTheReferenceChannelsAndTheGroups) {
  Module model = make_grouped_model();
  const Module original = mcompress::deep_copy(model);
  const torch::Tensor input = torch::randn({2, kInputChannels, 8, 8});
  const auto graph = mcompress::analyze_dependencies(model, input.slice(0, 0, 1));

  // Reference selection. stem: positions ranked by their importance summed
  // over the 4 blocks; half of 12 rounds to 8 (a multiple of 4): 2 positions.
  const torch::Tensor stem_w = weight_of(original, "stem").to(torch::kDouble);
  const torch::Tensor stem_b = weight_of(original, "stem", "bias").to(torch::kDouble);
  const torch::Tensor grouped_w = weight_of(original, "grouped").to(torch::kDouble);
  const torch::Tensor grouped_b = weight_of(original, "grouped", "bias").to(torch::kDouble);
  const torch::Tensor head_w = weight_of(original, "head").to(torch::kDouble);
  const auto stem_scores =
      reference_importance({row_norms(stem_w), stem_b.square(), grouped_input_norms(grouped_w)});
  const auto position_scores = stem_scores.reshape({kConvGroups, kMiddle / kConvGroups}).sum(0);
  const auto positions = std::get<0>(std::get<1>(position_scores.topk(2)).sort());
  std::vector<int64_t> stem_keep;
  for (int64_t g = 0; g < kConvGroups; ++g) {
    for (int64_t i = 0; i < positions.numel(); ++i) {
      stem_keep.push_back(g * (kMiddle / kConvGroups) + positions[i].item<int64_t>());
    }
  }
  // grouped: each convolution group keeps its own 2 best of 4 output channels.
  const auto grouped_scores = reference_importance(
      {row_norms(grouped_w), grouped_b.square(), head_w.reshape({kOutputs, kWide}).square().sum(0)});
  std::vector<int64_t> grouped_keep;
  for (int64_t g = 0; g < kConvGroups; ++g) {
    const auto best = std::get<0>(std::get<1>(grouped_scores.slice(0, g * 4, g * 4 + 4).topk(2)).sort());
    for (int64_t i = 0; i < best.numel(); ++i) grouped_keep.push_back(g * 4 + best[i].item<int64_t>());
  }

  mcompress::PruneOptions options;
  options.sparsity = 0.5;
  const auto results = mcompress::prune_groups(model, graph, options, [&](const ChannelGroup& group) {
    return mcompress::group_l2_importance(model, group);
  });
  ASSERT_EQ(results.size(), 2u);

  const auto stem_index = torch::tensor(stem_keep, torch::kLong);
  const auto grouped_index = torch::tensor(grouped_keep, torch::kLong);
  EXPECT_TRUE(torch::equal(weight_of(model, "stem"), weight_of(original, "stem").index_select(0, stem_index)));
  EXPECT_TRUE(torch::equal(weight_of(model, "grouped"), weight_of(original, "grouped")
                                                            .index_select(0, grouped_index)
                                                            .index_select(1, positions)));
  EXPECT_TRUE(torch::equal(weight_of(model, "head"), weight_of(original, "head").index_select(1, grouped_index)));
  EXPECT_EQ(model.attr("grouped").toModule().attr("in_channels").toInt(), 8);
  EXPECT_EQ(model.attr("grouped").toModule().attr("out_channels").toInt(), 8);

  // Pruning equals zeroing the removed channels (relu(0) = 0 feeds nothing on).
  Module masked = mcompress::deep_copy(original);
  {
    torch::NoGradGuard no_grad;
    auto zero_rows_except = [&](const std::string& layer, const std::vector<int64_t>& keep) {
      auto mask = torch::ones({weight_of(original, layer).size(0)}, torch::kBool);
      mask.index_fill_(0, torch::tensor(keep, torch::kLong), false);
      auto module = masked.attr(layer).toModule();
      module.attr("weight").toTensor().index_put_({mask}, 0.0);
      module.attr("bias").toTensor().index_put_({mask}, 0.0);
    };
    zero_rows_except("stem", stem_keep);
    zero_rows_except("grouped", grouped_keep);
  }
  const torch::Tensor expected = run(masked, input);
  const torch::Tensor output = run(model, input);
  ASSERT_EQ(output.sizes(), expected.sizes());
  EXPECT_TRUE(torch::allclose(output, expected, 1e-5, 1e-5));
}

TEST(GroupedConvolution, MacEstimateMatchesThePrunedModel) {
  Module model = make_grouped_model();
  const torch::Tensor input = torch::randn({1, kInputChannels, 8, 8});
  const auto graph = mcompress::analyze_dependencies(model, input);
  const mcompress::MacEstimator macs(model, graph, input);
  EXPECT_EQ(macs.total(), mcompress::count_macs(model, input));
  mcompress::PruneOptions options;
  options.sparsity = 0.5;
  const auto results = mcompress::prune_groups(model, graph, options, [&](const ChannelGroup& group) {
    return mcompress::group_l2_importance(model, group);
  });
  std::vector<int64_t> kept;
  for (const auto& group : graph.groups) kept.push_back(group.size);
  for (const auto& result : results) kept[result.group_id] = result.channels_after;
  EXPECT_EQ(kept[group_of(graph, "stem").id], 8);  // half of 12, rounded to a multiple of 4
  EXPECT_EQ(macs.estimate(kept), mcompress::count_macs(model, input));
}

TEST(GroupedConvolution, SelectionsThatDifferBetweenBlocksAreRefusedAndChangeNothing) {
  Module model = make_grouped_model();
  const torch::Tensor input = torch::randn({1, kInputChannels, 8, 8});
  const auto graph = mcompress::analyze_dependencies(model, input);
  const ChannelGroup& stem = group_of(graph, "stem");
  const torch::Tensor before = weight_of(model, "stem");
  // Position 0 in blocks 0 and 1, position 1 in blocks 2 and 3.
  const auto uneven = torch::tensor(std::vector<int64_t>{0, 3, 7, 10}, torch::kLong);
  EXPECT_THROW(mcompress::prune_channels(model, stem, uneven), mcompress::Error);
  EXPECT_TRUE(torch::equal(weight_of(model, "stem"), before));
  const auto tied = torch::tensor(std::vector<int64_t>{1, 4, 7, 10}, torch::kLong);
  mcompress::prune_channels(model, stem, tied);
  EXPECT_EQ(weight_of(model, "grouped").size(1), 1);
  EXPECT_EQ(run(model, input).size(1), kOutputs);
}

}  // namespace
