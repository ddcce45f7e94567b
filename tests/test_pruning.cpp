// Structured pruning: channel-group discovery (dependency_graph.h), slicing and
// selection (channel_pruning.h) and the magnitude_prune plugin. Models are
// small TorchScript modules defined here plus real torchvision architectures
// scripted by Python; pruned models are checked in a fresh Python process.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>

#include <mcompress/pruning/channel_count_rewrite.h>
#include <mcompress/pruning/channel_pruning.h>
#include <mcompress/pruning/pruning_criteria.h>
#include <mcompress/pruning/structured_pruning.h>
#include <mcompress/pruning/dependency_graph.h>
#include <mcompress/sdk/error.h>
#include <mcompress/models/evaluate.h>
#include <mcompress/models/graph.h>
#include <mcompress/models/model_stats.h>
#include <mcompress/sdk/pass.h>

#include "pass_loading.h"
#include "test_support.h"

namespace fs = std::filesystem;
using mcompress::ChannelGroup;
using mcompress::ChannelMember;
using mcompress::DependencyGraph;
using mcompress::MemberKind;
using mcompress::MemberRole;
using mcompress::testing::run_command;
using mcompress::testing::TempDir;
using torch::jit::Module;

namespace {

// ---------------------------------------------------------------------------
// Small TorchScript models, built the way the zoo builds them.

class ModelBuilder {
 public:
  ModelBuilder() : unit_(std::make_shared<torch::jit::CompilationUnit>()) { torch::manual_seed(0); }

  Module module(const std::string& kind) {
    Module m(c10::QualifiedName("__torch__.pruning_test." + kind), unit_, /*shouldMangle=*/true);
    m.register_attribute("training", c10::BoolType::get(), false);
    return m;
  }

  // Trainable like nn.Parameter, except where a test freezes one on purpose.
  static void add_parameter(Module& m, const std::string& name, torch::Tensor value) {
    m.register_parameter(name, value.set_requires_grad(true), /*is_buffer=*/false);
  }

  Module linear(int64_t in, int64_t out) {
    Module m = module("Linear");
    add_parameter(m, "weight", torch::randn({out, in}) / std::sqrt(double(in)));
    add_parameter(m, "bias", torch::randn({out}) * 0.1);
    m.register_attribute("in_features", c10::IntType::get(), in);
    m.register_attribute("out_features", c10::IntType::get(), out);
    m.define("def forward(self, x):\n    return torch.linear(x, self.weight, self.bias)\n");
    return m;
  }

  Module conv(int64_t in, int64_t out) {
    Module m = module("Conv2d");
    add_parameter(m, "weight", torch::randn({out, in, 3, 3}) / std::sqrt(9.0 * in));
    add_parameter(m, "bias", torch::randn({out}) * 0.1);
    m.register_attribute("in_channels", c10::IntType::get(), in);
    m.register_attribute("out_channels", c10::IntType::get(), out);
    m.define("def forward(self, x):\n"
             "    return torch.conv2d(x, self.weight, self.bias, [1, 1], [1, 1], [1, 1], 1)\n");
    return m;
  }

  // groups read from an attribute can follow pruning; a literal cannot.
  Module depthwise_conv(int64_t channels, bool groups_in_attribute) {
    Module m = module("DepthwiseConv2d");
    add_parameter(m, "weight", torch::randn({channels, 1, 3, 3}));
    add_parameter(m, "bias", torch::randn({channels}) * 0.1);
    m.register_attribute("groups", c10::IntType::get(), channels);
    const std::string groups = groups_in_attribute ? "self.groups" : std::to_string(channels);
    m.define("def forward(self, x):\n"
             "    return torch.conv2d(x, self.weight, self.bias, [1, 1], [1, 1], [1, 1], " +
             groups + ")\n");
    return m;
  }

  Module batch_norm(int64_t channels) {
    Module m = module("BatchNorm2d");
    add_parameter(m, "weight", torch::rand({channels}) + 0.5);
    add_parameter(m, "bias", torch::randn({channels}) * 0.1);
    m.register_buffer("running_mean", torch::randn({channels}) * 0.1);
    m.register_buffer("running_var", torch::rand({channels}) + 0.5);
    m.register_attribute("num_features", c10::IntType::get(), channels);
    m.define("def forward(self, x):\n"
             "    return torch.batch_norm(x, self.weight, self.bias, self.running_mean,"
             " self.running_var, self.training, 0.1, 1e-05, False)\n");
    return m;
  }

  Module layer_norm(int64_t channels) {
    Module m = module("LayerNorm");
    add_parameter(m, "weight", torch::rand({channels}) + 0.5);
    add_parameter(m, "bias", torch::randn({channels}) * 0.1);
    m.register_attribute("normalized_shape", c10::ListType::ofInts(),
                         c10::List<int64_t>({channels}));
    m.define("def forward(self, x):\n"
             "    return torch.layer_norm(x, self.normalized_shape, self.weight, self.bias, 1e-05,"
             " False)\n");
    return m;
  }

 private:
  std::shared_ptr<torch::jit::CompilationUnit> unit_;
};

Module make_mlp(int64_t hidden1 = 16, int64_t hidden2 = 12) {
  ModelBuilder b;
  Module m = b.module("MLP");
  m.register_module("fc1", b.linear(8, hidden1));
  m.register_module("fc2", b.linear(hidden1, hidden2));
  m.register_module("fc3", b.linear(hidden2, 4));
  m.define(R"(
def forward(self, x):
    x = torch.relu(self.fc1.forward(x))
    x = torch.relu(self.fc2.forward(x))
    return self.fc3.forward(x)
)");
  return m;
}

// conv-bn-relu-pool, conv-bn-relu, flatten into a linear: input [1, 3, 8, 8].
Module make_cnn() {
  ModelBuilder b;
  Module m = b.module("CNN");
  m.register_module("conv1", b.conv(3, 8));
  m.register_module("bn1", b.batch_norm(8));
  m.register_module("conv2", b.conv(8, 16));
  m.register_module("bn2", b.batch_norm(16));
  m.register_module("fc", b.linear(16 * 4 * 4, 10));
  m.define(R"(
def forward(self, x):
    x = torch.relu(self.bn1.forward(self.conv1.forward(x)))
    x = torch.max_pool2d(x, [2, 2], [2, 2], [0, 0], [1, 1], False)
    x = torch.relu(self.bn2.forward(self.conv2.forward(x)))
    x = torch.flatten(x, 1)
    return self.fc.forward(x)
)");
  return m;
}

// A stem and one residual block: stem's channels and conv_b's are added.
Module make_residual() {
  ModelBuilder b;
  Module m = b.module("Residual");
  m.register_module("stem", b.conv(3, 8));
  m.register_module("bn0", b.batch_norm(8));
  m.register_module("conv_a", b.conv(8, 6));
  m.register_module("bn_a", b.batch_norm(6));
  m.register_module("conv_b", b.conv(6, 8));
  m.register_module("bn_b", b.batch_norm(8));
  m.register_module("fc", b.linear(8, 10));
  m.define(R"(
def forward(self, x):
    x = torch.relu(self.bn0.forward(self.stem.forward(x)))
    y = torch.relu(self.bn_a.forward(self.conv_a.forward(x)))
    y = self.bn_b.forward(self.conv_b.forward(y))
    x = torch.relu(x + y)
    x = torch.adaptive_avg_pool2d(x, [1, 1])
    x = torch.flatten(x, 1)
    return self.fc.forward(x)
)");
  return m;
}

torch::Tensor image_input() { return torch::randn({1, 3, 8, 8}); }

const ChannelGroup* group_named(const DependencyGraph& graph, const std::string& producer) {
  for (const auto& group : graph.groups) {
    auto layers = group.producer_layers();
    if (std::find(layers.begin(), layers.end(), producer) != layers.end()) return &group;
  }
  return nullptr;
}

bool has_member(const ChannelGroup& group, const std::string& name, int64_t dim, int64_t block = 1) {
  return std::any_of(group.members.begin(), group.members.end(), [&](const ChannelMember& m) {
    return m.full_name() == name && m.dim == dim && m.block_size == block;
  });
}

std::string describe(const DependencyGraph& graph) {
  std::ostringstream out;
  for (const auto& group : graph.groups) {
    out << group.id << " " << group.name << " size=" << group.size
        << (group.frozen ? " FROZEN: " + group.frozen_reason : "") << "\n";
    for (const auto& m : group.members) {
      out << "    " << m.full_name() << " dim=" << m.dim << " block=" << m.block_size << " "
          << mcompress::to_string(m.kind) << " " << mcompress::to_string(m.role) << "\n";
    }
  }
  return out.str();
}

torch::Tensor run(const Module& model, const torch::Tensor& input) {
  mcompress::EvalModeGuard eval(model);
  torch::NoGradGuard no_grad;
  return mcompress::forward_tensor(model, input);
}

Module deep_copy(const Module& model) { return model.deepcopy(); }

std::vector<mcompress::GroupPruneResult> prune_by_l2(Module& model, const torch::Tensor& input,
                                                     double sparsity) {
  auto graph = mcompress::analyze_dependencies(model, input);
  mcompress::PruneOptions options;
  options.sparsity = sparsity;
  return mcompress::prune_groups(model, graph, options, [&](const ChannelGroup& group) {
    return mcompress::group_l2_importance(model, group);
  });
}

torch::Tensor attr(const Module& model, const std::string& module, const std::string& name) {
  return mcompress::submodule_at(model, module).attr(name).toTensor();
}

int64_t int_attr(const Module& model, const std::string& module, const std::string& name) {
  return mcompress::submodule_at(model, module).attr(name).toInt();
}

// The model's output on a deterministic input, computed by plain PyTorch in a
// fresh process that knows nothing about mcompress.
torch::Tensor python_output(const fs::path& model_file, at::IntArrayRef shape) {
  std::ostringstream shape_text;
  int64_t numel = 1;
  for (int64_t s : shape) {
    shape_text << s << ",";
    numel *= s;
  }
  const fs::path script = model_file.parent_path() / "run_model.py";
  mcompress::testing::write_text(
      script, "import torch\n"
              "m = torch.jit.load(r'" + model_file.string() + "')\n"
              "m.eval()\n"
              "x = torch.linspace(-1, 1, " + std::to_string(numel) + ").reshape(" + shape_text.str() + ")\n"
              "with torch.no_grad():\n"
              "    y = m(x)\n"
              "print('OUTPUT', ' '.join(repr(v) for v in y.flatten().tolist()))\n");
  const auto result = run_command(std::string(MCOMPRESS_PYTHON) + " " + script.string());
  EXPECT_EQ(result.exit_code, 0) << result.output;
  const auto at = result.output.find("OUTPUT ");
  if (at == std::string::npos) return {};
  std::istringstream values(result.output.substr(at + 7));
  std::vector<double> parsed;
  for (double v; values >> v;) parsed.push_back(v);
  return torch::tensor(parsed, torch::kDouble);
}

torch::Tensor deterministic_input(at::IntArrayRef shape) {
  int64_t numel = 1;
  for (int64_t s : shape) numel *= s;
  return torch::linspace(-1, 1, numel).reshape(shape);
}

void expect_python_agrees(const Module& model, at::IntArrayRef shape, const std::string& label) {
  TempDir tmp("pruning-python-" + label);
  const fs::path file = tmp.path() / (label + ".pt");
  model.save(file.string());
  const torch::Tensor expected = run(model, deterministic_input(shape)).flatten().to(torch::kDouble);
  const torch::Tensor actual = python_output(file, shape);
  ASSERT_EQ(actual.numel(), expected.numel()) << label;
  EXPECT_TRUE(torch::allclose(actual, expected, 1e-4, 1e-5))
      << label << "\nC++:    " << expected << "\nPython: " << actual;
}

// Removing a channel is the same as cutting it off at every consumer: the
// removed channel then only flows through per-channel ops (BN, activations,
// pooling, residual adds) into other removed channels. So the pruned model
// must compute what the original computes with every consumer's input slice
// of the removed channels zeroed. Prunes a random half of every group.
void expect_pruning_equals_cutting_channels_off(const Module& model, const torch::Tensor& input) {
  Module pruned = deep_copy(model);
  Module reference = deep_copy(model);
  const auto graph = mcompress::analyze_dependencies(pruned, input);
  torch::NoGradGuard no_grad;
  std::vector<mcompress::GroupSelection> selections;
  for (const ChannelGroup* group : graph.prunable_groups()) {
    const torch::Tensor order = torch::randperm(group->size);
    int64_t keep = group->size / 2 + 1;
    keep = (keep + group->parts - 1) / group->parts * group->parts;
    torch::Tensor kept = group->parts > 1
                             ? mcompress::select_channels(torch::rand({group->size}), keep, group->parts)
                             : std::get<0>(order.slice(0, 0, keep).sort());
    auto mask = torch::ones({group->size}, torch::kBool);
    mask.index_fill_(0, kept, false);
    const torch::Tensor removed = mask.nonzero().reshape({-1});
    selections.push_back({group, std::vector<int64_t>(kept.data_ptr<int64_t>(), kept.data_ptr<int64_t>() + kept.numel())});
    for (const auto& member : group->members) {
      if (member.role != MemberRole::Consumer || member.kind != MemberKind::Parameter) continue;
      const auto entries = (removed.unsqueeze(1) * member.block_size +
                            torch::arange(member.block_size).unsqueeze(0)).reshape({-1}) + member.offset;
      attr(reference, member.module_path, member.attribute).index_fill_(member.dim, entries, 0);
    }
  }
  mcompress::apply_selections(pruned, selections);
  const torch::Tensor expected = run(reference, input);
  const torch::Tensor actual = run(pruned, input);
  ASSERT_EQ(actual.sizes(), expected.sizes());
  const double scale = expected.abs().max().item<double>();
  EXPECT_LE((actual - expected).abs().max().item<double>(), 1e-5 * scale + 1e-7)
      << "pruned:\n" << actual << "\nreference:\n" << expected;
}

// ---------------------------------------------------------------------------
// Group discovery

TEST(DependencyGraph, MlpHasTwoPrunableGroupsAndAFrozenOutputGroup) {
  const Module model = make_mlp();
  const auto graph = mcompress::analyze_dependencies(model, torch::randn({1, 8}));
  ASSERT_EQ(graph.groups.size(), 3u) << describe(graph);
  EXPECT_EQ(graph.prunable_groups().size(), 2u) << describe(graph);

  const auto& fc1 = graph.groups[0];
  EXPECT_EQ(fc1.name, "fc1");
  EXPECT_EQ(fc1.size, 16);
  EXPECT_FALSE(fc1.frozen);
  EXPECT_TRUE(has_member(fc1, "fc1.weight", 0));
  EXPECT_TRUE(has_member(fc1, "fc1.bias", 0));
  EXPECT_TRUE(has_member(fc1, "fc2.weight", 1));
  EXPECT_TRUE(has_member(fc1, "fc1.out_features", 0));
  EXPECT_TRUE(has_member(fc1, "fc2.in_features", 0));
  EXPECT_FALSE(has_member(fc1, "fc3.weight", 1));

  const auto& output = graph.groups[2];
  EXPECT_EQ(output.name, "fc3");
  EXPECT_TRUE(output.frozen);
  EXPECT_NE(output.frozen_reason.find("model output"), std::string::npos) << output.frozen_reason;
}

TEST(DependencyGraph, ConvBatchNormChainFlattensIntoLinearAsSpatialBlocks) {
  const Module model = make_cnn();
  const auto graph = mcompress::analyze_dependencies(model, image_input());
  const auto* conv1 = group_named(graph, "conv1");
  const auto* conv2 = group_named(graph, "conv2");
  ASSERT_TRUE(conv1 && conv2) << describe(graph);
  EXPECT_FALSE(conv1->frozen) << describe(graph);
  EXPECT_TRUE(has_member(*conv1, "bn1.weight", 0));
  EXPECT_TRUE(has_member(*conv1, "bn1.running_var", 0));
  EXPECT_TRUE(has_member(*conv1, "conv2.weight", 1));
  EXPECT_FALSE(conv2->frozen) << describe(graph);
  // After the 2x2 pool the activation is [16, 4, 4]: channel c is fc inputs [16c, 16c+16).
  EXPECT_TRUE(has_member(*conv2, "fc.weight", 1, /*block=*/16)) << describe(graph);
  EXPECT_TRUE(has_member(*conv2, "fc.in_features", 0, /*block=*/16)) << describe(graph);
  for (const auto& member : conv2->members) {
    if (member.attribute == "running_mean") {
      EXPECT_TRUE(member.is_buffer());
    }
    if (member.full_name() == "bn2.weight") {
      EXPECT_EQ(member.role, MemberRole::Normalization);
    }
  }
  EXPECT_TRUE(group_named(graph, "fc")->frozen);
}

TEST(DependencyGraph, ResidualAddMergesTheGroupsItAdds) {
  const Module model = make_residual();
  const auto graph = mcompress::analyze_dependencies(model, image_input());
  const auto* stem = group_named(graph, "stem");
  ASSERT_NE(stem, nullptr) << describe(graph);
  EXPECT_EQ(stem, group_named(graph, "conv_b")) << describe(graph);
  EXPECT_EQ(stem->name, "stem (+1 coupled)");
  EXPECT_FALSE(stem->frozen) << describe(graph);
  EXPECT_TRUE(has_member(*stem, "bn_b.running_mean", 0));
  EXPECT_TRUE(has_member(*stem, "conv_a.weight", 1));
  EXPECT_TRUE(has_member(*stem, "fc.weight", 1));
  const auto* conv_a = group_named(graph, "conv_a");
  ASSERT_NE(conv_a, stem);
  EXPECT_EQ(graph.prunable_groups().size(), 2u) << describe(graph);
}

TEST(DependencyGraph, AnalysisLeavesTheModelAsItWas) {
  Module model = make_cnn();
  model.train(true);
  const torch::Tensor mean_before = attr(model, "bn1", "running_mean").clone();
  mcompress::analyze_dependencies(model, image_input());
  EXPECT_TRUE(model.is_training());
  EXPECT_TRUE(mcompress::submodule_at(model, "bn1").is_training());
  EXPECT_TRUE(torch::equal(mean_before, attr(model, "bn1", "running_mean")));
}

TEST(DependencyGraph, ConcatenationGivesEachInputItsIndexRange) {
  ModelBuilder b;
  Module m = b.module("Branches");
  m.register_module("left", b.conv(3, 4));
  m.register_module("right", b.conv(3, 6));
  m.register_module("bn", b.batch_norm(13));
  m.register_module("merge", b.conv(13, 6));
  m.register_module("fc", b.linear(6, 10));
  // The raw input (3 channels, no group) sits between the two branches.
  m.define(R"(
def forward(self, x):
    x = torch.cat([torch.relu(self.left.forward(x)), x, torch.relu(self.right.forward(x))], 1)
    x = torch.relu(self.merge.forward(torch.relu(self.bn.forward(x))))
    x = torch.flatten(torch.adaptive_avg_pool2d(x, [1, 1]), 1)
    return self.fc.forward(x)
)");
  const torch::Tensor input = image_input();
  const auto graph = mcompress::analyze_dependencies(m, input);
  const auto* left = group_named(graph, "left");
  const auto* right = group_named(graph, "right");
  ASSERT_TRUE(left && right) << describe(graph);
  EXPECT_FALSE(left->frozen) << describe(graph);
  EXPECT_FALSE(right->frozen) << describe(graph);
  auto member = [](const ChannelGroup& g, const std::string& name) {
    return *std::find_if(g.members.begin(), g.members.end(),
                         [&](const ChannelMember& x) { return x.full_name() == name; });
  };
  EXPECT_EQ(member(*left, "merge.weight").offset, 0);
  EXPECT_EQ(member(*right, "merge.weight").offset, 7);  // after 4 + 3 channels
  EXPECT_EQ(member(*right, "merge.weight").extent, 13);
  EXPECT_EQ(member(*right, "bn.running_mean").offset, 7);
  expect_pruning_equals_cutting_channels_off(m, input);

  prune_by_l2(m, input, 0.5);
  EXPECT_EQ(attr(m, "left", "weight").size(0), 2);
  EXPECT_EQ(attr(m, "right", "weight").size(0), 3);
  EXPECT_EQ(attr(m, "bn", "weight").size(0), 2 + 3 + 3);
  EXPECT_EQ(attr(m, "merge", "weight").sizes(), (std::vector<int64_t>{3, 8, 3, 3}));
  EXPECT_EQ(run(m, input).sizes(), (std::vector<int64_t>{1, 10}));
}

// DenseNet's pattern: features = [x]; features.append(layer(features)); cat(features).
TEST(DependencyGraph, ListsBuiltWithAppendConcatenateWhatTheyHoldAtThatPoint) {
  ModelBuilder b;
  Module m = b.module("Dense");
  m.register_module("stem", b.conv(3, 4));
  m.register_module("layer1", b.conv(4, 2));
  m.register_module("layer2", b.conv(6, 2));
  m.register_module("head", b.conv(8, 5));
  m.register_module("fc", b.linear(5, 10));
  m.define(R"(
def forward(self, x):
    features = [torch.relu(self.stem.forward(x))]
    features.append(torch.relu(self.layer1.forward(torch.cat(features, 1))))
    features.append(torch.relu(self.layer2.forward(torch.cat(features, 1))))
    x = torch.relu(self.head.forward(torch.cat(features, 1)))
    return self.fc.forward(torch.flatten(torch.adaptive_avg_pool2d(x, [1, 1]), 1))
)");
  const torch::Tensor input = image_input();
  const auto graph = mcompress::analyze_dependencies(m, input);
  for (const char* layer : {"stem", "layer1", "layer2", "head"}) {
    ASSERT_NE(group_named(graph, layer), nullptr) << describe(graph);
    EXPECT_FALSE(group_named(graph, layer)->frozen) << describe(graph);
  }
  EXPECT_TRUE(has_member(*group_named(graph, "stem"), "layer2.weight", 1));
  EXPECT_TRUE(has_member(*group_named(graph, "layer1"), "head.weight", 1));
  expect_pruning_equals_cutting_channels_off(m, input);
}

TEST(DependencyGraph, ListsUsedInOtherWaysFreezeWhatTheyHold) {
  ModelBuilder b;
  Module m = b.module("Stacked");
  m.register_module("a", b.conv(3, 4));
  m.register_module("c", b.conv(3, 4));
  m.register_module("fc", b.linear(4, 10));
  m.define(R"(
def forward(self, x):
    y = torch.stack([self.a.forward(x), self.c.forward(x)], 0).sum(0)
    return self.fc.forward(torch.flatten(torch.adaptive_avg_pool2d(y, [1, 1]), 1))
)");
  const auto graph = mcompress::analyze_dependencies(m, image_input());
  ASSERT_NE(group_named(graph, "a"), nullptr);
  EXPECT_TRUE(group_named(graph, "a")->frozen);
  EXPECT_NE(group_named(graph, "a")->frozen_reason.find("aten::stack"), std::string::npos)
      << group_named(graph, "a")->frozen_reason;
}

TEST(DependencyGraph, GroupNormKeepsItsGroupsAndPrunesEqualPartsOfEach) {
  ModelBuilder b;
  Module m = b.module("WithGroupNorm");
  m.register_module("conv", b.conv(3, 8));
  Module gn = b.module("GroupNorm");
  ModelBuilder::add_parameter(gn, "weight", torch::rand({8}) + 0.5);
  ModelBuilder::add_parameter(gn, "bias", torch::randn({8}) * 0.1);
  gn.define("def forward(self, x):\n    return torch.group_norm(x, 2, self.weight, self.bias, 1e-05, False)\n");
  m.register_module("gn", gn);
  m.register_module("conv2", b.conv(8, 4));
  m.register_module("fc", b.linear(4, 10));
  m.define(R"(
def forward(self, x):
    x = torch.relu(self.gn.forward(self.conv.forward(x)))
    x = torch.relu(self.conv2.forward(x))
    return self.fc.forward(torch.flatten(torch.adaptive_avg_pool2d(x, [1, 1]), 1))
)");
  const torch::Tensor input = image_input();
  const auto graph = mcompress::analyze_dependencies(m, input);
  const auto* conv = group_named(graph, "conv");
  ASSERT_NE(conv, nullptr);
  EXPECT_FALSE(conv->frozen) << describe(graph);
  EXPECT_EQ(conv->parts, 2);
  EXPECT_TRUE(has_member(*conv, "gn.weight", 0));
  // Channels 0..3 form GroupNorm group 0: the best two of each half survive.
  const auto kept = mcompress::select_channels(torch::tensor({9., 1., 8., 2., 0.5, 0.6, 0.7, 0.1}), 4, 2);
  EXPECT_TRUE(torch::equal(kept, torch::tensor({0, 2, 5, 6}, torch::kLong)));
  Module copy = deep_copy(m);
  auto results = prune_by_l2(copy, input, 0.3);  // 5.6 -> rounded to a multiple of 2
  EXPECT_EQ(attr(copy, "gn", "weight").size(0), 6);
  EXPECT_EQ(run(copy, input).sizes(), (std::vector<int64_t>{1, 10}));
}

// Large images are first observed at small sizes; a flatten whose block
// follows the input size needs the real one, and gets it.
TEST(DependencyGraph, FlattenBlocksAreThoseOfTheRealInputSize) {
  for (bool adaptive : {false, true}) {
    SCOPED_TRACE(adaptive ? "adaptive pooling" : "fixed-size flatten");
    ModelBuilder b;
    Module m = b.module("LargeInput");
    m.register_module("conv", b.conv(3, 4));
    m.register_module("fc", b.linear(adaptive ? 4 * 3 * 3 : 4 * 25 * 25, 10));
    m.define(adaptive ? R"(
def forward(self, x):
    x = torch.relu(self.conv.forward(x))
    return self.fc.forward(torch.flatten(torch.adaptive_avg_pool2d(x, [3, 3]), 1))
)" : R"(
def forward(self, x):
    x = torch.max_pool2d(torch.relu(self.conv.forward(x)), [4, 4], [4, 4], [0, 0], [1, 1], False)
    return self.fc.forward(torch.flatten(x, 1))
)");
    const torch::Tensor input = torch::randn({1, 3, 100, 100});
    const auto graph = mcompress::analyze_dependencies(m, input);
    const auto* conv = group_named(graph, "conv");
    ASSERT_NE(conv, nullptr);
    EXPECT_FALSE(conv->frozen) << describe(graph);
    EXPECT_TRUE(has_member(*conv, "fc.weight", 1, adaptive ? 9 : 625)) << describe(graph);
    expect_pruning_equals_cutting_channels_off(m, input);
  }
}

// Stochastic depth multiplies a residual branch by per-sample noise in
// training only: [N, 1, 1, 1] broadcasts over the channels.
TEST(DependencyGraph, PerSampleNoiseCreatedInATrainingBranchDoesNotFreeze) {
  ModelBuilder b;
  Module m = b.module("StochasticDepth");
  m.register_module("stem", b.conv(3, 4));
  m.register_module("branch", b.conv(4, 4));
  m.register_module("fc", b.linear(4, 10));
  m.define(R"(
def forward(self, x):
    x = torch.relu(self.stem.forward(x))
    y = self.branch.forward(x)
    if self.training:
        size = [y.size(0)] + [1] * (y.dim() - 1)
        noise = torch.empty(size, dtype=y.dtype, device=y.device).bernoulli_(0.9)
        y = y * noise.div_(0.9)
    x = x + y
    return self.fc.forward(torch.flatten(torch.adaptive_avg_pool2d(x, [1, 1]), 1))
)");
  const auto graph = mcompress::analyze_dependencies(m, image_input());
  const auto* stem = group_named(graph, "stem");
  ASSERT_NE(stem, nullptr);
  EXPECT_FALSE(stem->frozen) << describe(graph);
  EXPECT_EQ(stem, group_named(graph, "branch"));
}

TEST(DependencyGraph, ViewThatHardCodesTheChannelCountFreezesItsGroup) {
  ModelBuilder b;
  Module m = b.module("HardCodedView");
  m.register_module("conv", b.conv(3, 4));
  m.register_module("fc", b.linear(4 * 8 * 8, 10));
  m.register_module("conv2", b.conv(3, 5));
  m.register_module("fc2", b.linear(5 * 8 * 8, 10));
  m.define(R"(
def forward(self, x):
    a = torch.relu(self.conv.forward(x)).view(-1, 256)
    b = torch.relu(self.conv2.forward(x))
    b = b.view(b.size(0), -1)
    return self.fc.forward(a) + self.fc2.forward(b)
)");
  const auto graph = mcompress::analyze_dependencies(m, image_input());
  const auto* hard_coded = group_named(graph, "conv");
  ASSERT_NE(hard_coded, nullptr);
  EXPECT_TRUE(hard_coded->frozen);
  EXPECT_NE(hard_coded->frozen_reason.find("aten::view"), std::string::npos) << hard_coded->frozen_reason;
  const auto* inferred = group_named(graph, "conv2");
  ASSERT_NE(inferred, nullptr);
  EXPECT_FALSE(inferred->frozen) << describe(graph);
  EXPECT_TRUE(has_member(*inferred, "fc2.weight", 1, 64));
}

TEST(DependencyGraph, UnknownOpsAndParametersUsedOutsideTheirLayerFreeze) {
  ModelBuilder b;
  Module m = b.module("Odd");
  m.register_module("fc1", b.linear(8, 16));
  m.register_module("fc2", b.linear(16, 12));
  m.register_module("fc3", b.linear(12, 4));
  ModelBuilder::add_parameter(m, "mix", torch::randn({12, 12}));
  m.define(R"(
def forward(self, x):
    h = torch.relu(self.fc1.forward(x)) * self.fc1.weight.mean()
    h = torch.matmul(self.fc2.forward(h), self.mix)
    return self.fc3.forward(h)
)");
  const auto graph = mcompress::analyze_dependencies(m, torch::randn({1, 8}));
  const auto* fc1 = group_named(graph, "fc1");
  const auto* fc2 = group_named(graph, "fc2");
  ASSERT_TRUE(fc1 && fc2);
  EXPECT_TRUE(fc1->frozen);
  EXPECT_NE(fc1->frozen_reason.find("fc1.weight is also used by aten::mean"), std::string::npos)
      << fc1->frozen_reason;
  EXPECT_TRUE(fc2->frozen);
  EXPECT_NE(fc2->frozen_reason.find("aten::matmul"), std::string::npos) << fc2->frozen_reason;
  Module copy = deep_copy(m);
  const auto results = prune_by_l2(copy, torch::randn({1, 8}), 0.5);
  EXPECT_TRUE(results.empty());
}

TEST(DependencyGraph, CodeThatReadsTheChannelCountFreezesTheGroup) {
  ModelBuilder b;
  Module m = b.module("ReadsChannels");
  m.register_module("fc1", b.linear(8, 16));
  m.register_module("fc2", b.linear(16, 4));
  m.register_module("fc3", b.linear(16, 4));
  m.register_module("fc4", b.linear(8, 6));
  m.register_module("fc5", b.linear(6, 4));
  // torch.ones([1, h.size(1)]) would have the old width after pruning fc1.
  m.define(R"(
def forward(self, x):
    h = torch.relu(self.fc1.forward(x))
    g = torch.relu(self.fc4.forward(x))
    ones = torch.ones([h.size(0), h.size(1)])
    return self.fc2.forward(h) + self.fc3.forward(ones) + self.fc5.forward(g.view(g.size(0), -1))
)");
  const auto graph = mcompress::analyze_dependencies(m, torch::randn({1, 8}));
  const auto* fc1 = group_named(graph, "fc1");
  ASSERT_NE(fc1, nullptr);
  EXPECT_TRUE(fc1->frozen);
  EXPECT_NE(fc1->frozen_reason.find("aten::size"), std::string::npos) << fc1->frozen_reason;
  EXPECT_FALSE(group_named(graph, "fc4")->frozen) << describe(graph);  // size(0) is harmless
}

TEST(DependencyGraph, DepthwiseConvTiesInputToOutputOnlyWhenGroupsCanFollow) {
  for (bool groups_in_attribute : {false, true}) {
    ModelBuilder b;
    Module m = b.module("Depthwise");
    m.register_module("conv", b.conv(3, 8));
    m.register_module("dw", b.depthwise_conv(8, groups_in_attribute));
    m.register_module("pw", b.conv(8, 4));
    m.define(R"(
def forward(self, x):
    x = self.pw.forward(torch.relu(self.dw.forward(torch.relu(self.conv.forward(x)))))
    return torch.flatten(torch.adaptive_avg_pool2d(x, [1, 1]), 1)
)");
    const torch::Tensor input = image_input();
    const auto graph = mcompress::analyze_dependencies(m, input);
    const auto* conv = group_named(graph, "conv");
    ASSERT_NE(conv, nullptr);
    if (!groups_in_attribute) {
      EXPECT_TRUE(conv->frozen);
      EXPECT_NE(conv->frozen_reason.find("groups count fixed"), std::string::npos) << conv->frozen_reason;
      continue;
    }
    EXPECT_FALSE(conv->frozen) << describe(graph);
    EXPECT_EQ(conv, group_named(graph, "dw"));
    EXPECT_TRUE(has_member(*conv, "pw.weight", 1));
    EXPECT_TRUE(has_member(*conv, "dw.groups", 0));
    prune_by_l2(m, input, 0.5);
    EXPECT_EQ(attr(m, "dw", "weight").size(0), 4);
    EXPECT_EQ(int_attr(m, "dw", "groups"), 4);
    EXPECT_EQ(run(m, input).sizes(), (std::vector<int64_t>{1, 4}));
  }
}

TEST(DependencyGraph, LayerNormPrunesWhenItsShapeIsAnAttribute) {
  ModelBuilder b;
  Module m = b.module("WithLayerNorm");
  m.register_module("fc1", b.linear(8, 16));
  m.register_module("ln", b.layer_norm(16));
  m.register_module("fc2", b.linear(16, 4));
  m.define(R"(
def forward(self, x):
    return self.fc2.forward(torch.gelu(self.ln.forward(self.fc1.forward(x))))
)");
  const torch::Tensor input = torch::randn({2, 5, 8});
  const auto graph = mcompress::analyze_dependencies(m, input);
  const auto* fc1 = group_named(graph, "fc1");
  ASSERT_NE(fc1, nullptr);
  EXPECT_FALSE(fc1->frozen) << describe(graph);
  EXPECT_TRUE(has_member(*fc1, "ln.weight", 0));
  EXPECT_TRUE(has_member(*fc1, "ln.normalized_shape", 0));
  prune_by_l2(m, input, 0.25);
  EXPECT_EQ(attr(m, "ln", "bias").size(0), 12);
  EXPECT_EQ(run(m, input).sizes(), (std::vector<int64_t>{2, 5, 4}));
}

// Scripted nn.Conv2d / nn.LayerNorm keep groups and normalized_shape as
// constants in their code; the rewrite makes them follow the weights.
TEST(ChannelCountRewrite, ConstantDepthwiseGroupsAndLayerNormShapesBecomePrunable) {
  ModelBuilder b;
  Module m = b.module("ConstantCounts");
  m.register_module("conv", b.conv(3, 8));
  m.register_module("dw", b.depthwise_conv(8, /*groups_in_attribute=*/false));
  m.register_module("pw", b.conv(8, 6));
  Module ln = b.module("ConstantLayerNorm");
  ModelBuilder::add_parameter(ln, "weight", torch::rand({6}) + 0.5);
  ModelBuilder::add_parameter(ln, "bias", torch::randn({6}) * 0.1);
  ln.define("def forward(self, x):\n    return torch.layer_norm(x, [6], self.weight, self.bias, 1e-05, False)\n");
  m.register_module("ln", ln);
  m.register_module("fc", b.linear(6, 4));
  m.define(R"(
def forward(self, x):
    x = self.pw.forward(torch.relu(self.dw.forward(torch.relu(self.conv.forward(x)))))
    x = torch.flatten(torch.adaptive_avg_pool2d(x, [1, 1]), 1)
    return self.fc.forward(torch.gelu(self.ln.forward(x)))
)");
  const torch::Tensor input = image_input();
  const torch::Tensor before = run(m, input);  // compiles the original code first
  const auto frozen = mcompress::analyze_dependencies(m, input);
  EXPECT_TRUE(group_named(frozen, "conv")->frozen);
  EXPECT_TRUE(group_named(frozen, "pw")->frozen);

  std::vector<std::string> rewrites;
  Module rewritten = mcompress::with_channel_counts_following_weights(m, &rewrites);
  EXPECT_EQ(rewrites, (std::vector<std::string>{"dw: groups", "ln: normalized_shape"}));
  EXPECT_TRUE(torch::equal(run(rewritten, input), before));
  const auto graph = mcompress::analyze_dependencies(rewritten, input);
  EXPECT_FALSE(group_named(graph, "conv")->frozen) << describe(graph);
  EXPECT_FALSE(group_named(graph, "pw")->frozen) << describe(graph);
  EXPECT_EQ(group_named(graph, "conv"), group_named(graph, "dw"));

  prune_by_l2(rewritten, input, 0.5);
  EXPECT_EQ(attr(rewritten, "dw", "weight").size(0), 4);
  EXPECT_EQ(attr(rewritten, "ln", "weight").size(0), 3);
  EXPECT_EQ(run(rewritten, input).sizes(), (std::vector<int64_t>{1, 4}));
  // The original shares no code with the rewritten copy and still runs as before.
  EXPECT_TRUE(torch::equal(run(m, input), before));
  expect_python_agrees(rewritten, {2, 3, 8, 8}, "rewritten");
}

TEST(ChannelCountRewrite, LeavesGroupedConvolutionsThatAreNotDepthwiseAlone) {
  ModelBuilder b;
  Module m = b.module("Grouped");
  Module grouped = b.module("GroupedConv");
  ModelBuilder::add_parameter(grouped, "weight", torch::randn({8, 4, 3, 3}));
  grouped.define("def forward(self, x):\n    return torch.conv2d(x, self.weight, None, [1, 1], [1, 1], [1, 1], 2)\n");
  m.register_module("grouped", grouped);
  m.define("def forward(self, x):\n    return self.grouped.forward(x)\n");
  std::vector<std::string> rewrites;
  Module rewritten = mcompress::with_channel_counts_following_weights(m, &rewrites);
  EXPECT_TRUE(rewrites.empty());
  const torch::Tensor input = torch::randn({1, 8, 6, 6});
  EXPECT_TRUE(torch::equal(run(rewritten, input), run(m, input)));
}

// ---------------------------------------------------------------------------
// Allocation

// fc1 -> fc2 -> fc3 -> out, with all of fc1's weak channels made obvious.
Module make_deep_mlp() {
  ModelBuilder b;
  Module m = b.module("DeepMLP");
  m.register_module("fc1", b.linear(8, 32));
  m.register_module("fc2", b.linear(32, 32));
  m.register_module("fc3", b.linear(32, 16));
  m.register_module("out", b.linear(16, 4));
  m.define(R"(
def forward(self, x):
    x = torch.relu(self.fc1.forward(x))
    x = torch.relu(self.fc2.forward(x))
    x = torch.relu(self.fc3.forward(x))
    return self.out.forward(x)
)");
  return m;
}

int64_t rows(const Module& m, const std::string& layer) { return attr(m, layer, "weight").size(0); }

std::vector<mcompress::GroupPruneResult> prune_with(Module& model, const torch::Tensor& input,
                                                    const mcompress::PruneOptions& options) {
  auto graph = mcompress::analyze_dependencies(model, input);
  return mcompress::prune_groups(model, graph, options, [&](const ChannelGroup& group) {
    return mcompress::group_l2_importance(model, group);
  }, input);
}

TEST(Allocation, GlobalRemovesTheWeakestChannelsWhereverTheyAre) {
  Module model = make_deep_mlp();
  {
    torch::NoGradGuard no_grad;
    // Half of fc1's channels are almost dead; fc2 and fc3 are uniform.
    attr(model, "fc1", "weight").slice(0, 0, 16).mul_(1e-3);
    attr(model, "fc1", "bias").slice(0, 0, 16).mul_(1e-3);
    attr(model, "fc2", "weight").slice(1, 0, 16).mul_(1e-3);
  }
  mcompress::PruneOptions options;
  options.sparsity = 0.2;  // 16 of 80 channels
  options.allocation = mcompress::Allocation::Global;
  const auto results = prune_with(model, torch::randn({1, 8}), options);
  EXPECT_EQ(rows(model, "fc1"), 16);
  EXPECT_EQ(rows(model, "fc2"), 32);
  EXPECT_EQ(rows(model, "fc3"), 16);
  EXPECT_EQ(results[0].allocation, "global");
}

TEST(Allocation, GlobalNeverEmptiesAGroupBeyondItsCap) {
  Module model = make_deep_mlp();
  {
    torch::NoGradGuard no_grad;
    // 28 of fc1's 32 channels are weak next to the other four.
    attr(model, "fc1", "weight").slice(0, 0, 28).mul_(1e-3);
    attr(model, "fc1", "bias").slice(0, 0, 28).mul_(1e-3);
    attr(model, "fc2", "weight").slice(1, 0, 28).mul_(1e-3);
  }
  mcompress::PruneOptions options;
  options.sparsity = 0.5;
  options.allocation = mcompress::Allocation::Global;
  options.max_group_sparsity = 0.75;
  prune_with(model, torch::randn({1, 8}), options);
  EXPECT_EQ(rows(model, "fc1"), 8);  // at most 75% of 32 removed
  EXPECT_EQ(rows(model, "fc1") + rows(model, "fc2") + rows(model, "fc3"), 40);
}

TEST(Allocation, MacsTargetsRemoveThatFractionOfTheMacs) {
  for (auto allocation : {mcompress::Allocation::Uniform, mcompress::Allocation::Global}) {
    Module model = make_cnn();
    const torch::Tensor input = image_input();
    const double before = static_cast<double>(mcompress::count_macs(model, input));
    mcompress::PruneOptions options;
    options.sparsity = 0.6;
    options.target = mcompress::SparsityTarget::Macs;
    options.allocation = allocation;
    prune_with(model, input, options);
    const double after = static_cast<double>(mcompress::count_macs(model, input));
    EXPECT_LE(after, 0.4 * before * 1.001);
    EXPECT_GE(after, 0.3 * before);  // close to the target, not far beyond it
  }
}

TEST(Allocation, MacEstimateMatchesTheMacsOfThePrunedModel) {
  Module model = make_residual();
  const torch::Tensor input = image_input();
  const auto graph = mcompress::analyze_dependencies(model, input);
  const mcompress::MacEstimator macs(model, graph, input);
  EXPECT_EQ(macs.total(), mcompress::count_macs(model, input));
  std::vector<int64_t> kept;
  for (const auto& g : graph.groups) kept.push_back(g.frozen ? g.size : g.size / 2);
  const int64_t estimate = macs.estimate(kept);
  prune_by_l2(model, input, 0.5);
  EXPECT_EQ(estimate, mcompress::count_macs(model, input));
}

TEST(Allocation, OverridesTargetsIgnoreAndRoundTo) {
  const torch::Tensor input = torch::randn({1, 8});
  {
    Module model = make_deep_mlp();
    mcompress::PruneOptions options;
    options.sparsity = 0.5;
    options.overrides = {mcompress::parse_sparsity_override("fc2=0.25"),
                         mcompress::parse_sparsity_override("fc*=0")};
    const auto results = prune_with(model, input, options);
    EXPECT_EQ(rows(model, "fc1"), 32);
    EXPECT_EQ(rows(model, "fc2"), 24);
    EXPECT_EQ(results[1].allocation, "override fc2");
  }
  {
    Module model = make_deep_mlp();
    mcompress::PruneOptions options;
    options.sparsity = 0.5;
    options.targets = {"fc1", "fc3"};
    options.ignore = {"fc3"};
    const auto results = prune_with(model, input, options);
    EXPECT_EQ(rows(model, "fc1"), 16);
    EXPECT_EQ(rows(model, "fc2"), 32);
    EXPECT_EQ(rows(model, "fc3"), 16);
    EXPECT_EQ(results[1].allocation, "not targeted");
    EXPECT_EQ(results[2].allocation, "ignored (fc3)");
  }
  {
    Module model = make_deep_mlp();
    mcompress::PruneOptions options;
    options.sparsity = 0.3;
    options.allocation = mcompress::Allocation::Global;
    options.round_to = 8;
    prune_with(model, input, options);
    for (const char* layer : {"fc1", "fc2", "fc3"}) EXPECT_EQ(rows(model, layer) % 8, 0) << layer;
  }
  EXPECT_THROW(mcompress::parse_sparsity_override("fc1"), mcompress::Error);
  EXPECT_THROW(mcompress::parse_sparsity_override("fc1=x"), mcompress::Error);
  EXPECT_THROW(mcompress::parse_sparsity_override("fc1=1.5"), mcompress::Error);
  EXPECT_TRUE(mcompress::matches_pattern("layer4.*", "layer4.0.conv1"));
  EXPECT_FALSE(mcompress::matches_pattern("layer4.*", "layer3.0.conv1"));
}

TEST(Allocation, StepSparsitiesCompoundToTheTarget) {
  double remaining = 1.0;
  for (int64_t step = 1; step <= 3; ++step) remaining *= 1.0 - mcompress::step_sparsity(0.6, step, 3);
  EXPECT_NEAR(remaining, 0.4, 1e-12);
  EXPECT_NEAR(mcompress::step_sparsity(0.5, 1, 1), 0.5, 1e-12);
}

// ---------------------------------------------------------------------------
// Criteria that run the model

mcompress::Dataset random_dataset(at::IntArrayRef sample_shape, int64_t n, int64_t classes) {
  mcompress::Dataset data;
  std::vector<int64_t> shape{n};
  shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
  data.inputs = torch::randn(shape);
  data.targets = torch::randint(classes, {n}, torch::kLong);
  data.num_classes = classes;
  return data;
}

TEST(Criteria, TaylorAndActivationScoresRankADeadChannelLowest) {
  Module model = make_cnn();
  {
    torch::NoGradGuard no_grad;
    attr(model, "conv1", "weight")[3].zero_();
    attr(model, "conv1", "bias")[3].fill_(-1.0);  // always negative before the ReLU
  }
  const auto graph = mcompress::analyze_dependencies(model, image_input());
  const auto data = random_dataset({3, 8, 8}, 64, 10);
  mcompress::CalibrationOptions calibration;
  calibration.batches = 2;
  calibration.batch_size = 16;
  const int64_t conv1 = group_named(graph, "conv1")->id;
  const torch::Tensor weight_before = attr(model, "conv2", "weight").clone();

  const auto taylor = mcompress::taylor_importance(model, graph, data, calibration);
  ASSERT_EQ(taylor.size(), graph.groups.size());
  EXPECT_EQ(taylor[conv1].argmin().item<int64_t>(), 3) << taylor[conv1];
  EXPECT_FALSE(taylor[group_named(graph, "fc")->id].defined());  // frozen
  // The model is as it was: no gradients left, flags restored, weights unchanged.
  EXPECT_FALSE(attr(model, "conv2", "weight").grad().defined());
  EXPECT_TRUE(attr(model, "conv2", "weight").requires_grad());
  EXPECT_TRUE(torch::equal(attr(model, "conv2", "weight"), weight_before));

  for (auto statistic : {mcompress::ActivationStatistic::MeanAbsolute, mcompress::ActivationStatistic::NonZero}) {
    const auto scores = mcompress::activation_importance(model, graph, data, statistic, calibration);
    EXPECT_EQ(scores[conv1].argmin().item<int64_t>(), 3) << scores[conv1];
    EXPECT_EQ(scores[conv1][3].item<double>(), 0.0);
  }
}

// ---------------------------------------------------------------------------
// Selection helpers

TEST(ChannelPruning, KeepCountRoundsAndClamps) {
  EXPECT_EQ(mcompress::keep_count(64, 0.5, 1), 32);
  EXPECT_EQ(mcompress::keep_count(10, 0.3, 1), 7);
  EXPECT_EQ(mcompress::keep_count(64, 0.0, 8), 64);  // sparsity 0 never rounds
  EXPECT_EQ(mcompress::keep_count(10, 0.0, 4), 10);
  EXPECT_EQ(mcompress::keep_count(64, 0.3, 8), 48);  // 44.8 -> nearest multiple of 8
  EXPECT_EQ(mcompress::keep_count(5, 0.95, 8), 5);   // one multiple is more than there is
  EXPECT_EQ(mcompress::keep_count(4, 0.95, 1), 1);   // never empty
  EXPECT_EQ(mcompress::keep_count(16, 0.95, 1, 4), 4);
}

TEST(ChannelPruning, ImportanceRanksWeakChannelsLowestAndIsNormalisedPerGroup) {
  Module model = make_mlp();
  auto graph = mcompress::analyze_dependencies(model, torch::randn({1, 8}));
  const ChannelGroup& fc1 = graph.groups[0];
  {
    torch::NoGradGuard no_grad;
    attr(model, "fc1", "weight")[5].mul_(0.01);
    attr(model, "fc1", "bias")[5].mul_(0.01);
    attr(model, "fc2", "weight").select(1, 5).mul_(0.01);
    attr(model, "fc1", "weight")[9].mul_(100);  // scale must not break the average
  }
  for (auto norm : {mcompress::ImportanceNorm::L1, mcompress::ImportanceNorm::L2}) {
    const torch::Tensor scores = mcompress::group_importance(model, fc1, norm);
    ASSERT_EQ(scores.numel(), 16);
    EXPECT_EQ(scores.argmin().item<int64_t>(), 5);
  }
  const torch::Tensor l1 = mcompress::group_importance(model, fc1, mcompress::ImportanceNorm::L1);
  EXPECT_NEAR(l1.mean().item<double>(), 1.0, 1e-9);
  const auto kept = mcompress::select_channels(torch::tensor({0.5, 2.0, 1.0, 2.0}), 2);
  EXPECT_TRUE(torch::equal(kept, torch::tensor({1, 3}, torch::kLong)));
}

TEST(ChannelPruning, PruneChannelsRejectsBadInputWithoutChangingTheModel) {
  Module model = make_mlp();
  auto graph = mcompress::analyze_dependencies(model, torch::randn({1, 8}));
  const torch::Tensor before = attr(model, "fc1", "weight").clone();
  EXPECT_THROW(mcompress::prune_channels(model, graph.groups[0], torch::tensor({0, 0}, torch::kLong)),
               mcompress::Error);
  EXPECT_THROW(mcompress::prune_channels(model, graph.groups[0], torch::tensor({16}, torch::kLong)),
               mcompress::Error);
  EXPECT_THROW(mcompress::prune_channels(model, graph.groups[2], torch::tensor({0}, torch::kLong)),
               mcompress::Error);  // frozen output group
  mcompress::prune_channels(model, graph.groups[0], torch::tensor({1, 3}, torch::kLong));
  // The group's sizes have changed: a second prune of the stale group is refused.
  EXPECT_THROW(mcompress::prune_channels(model, graph.groups[0], torch::tensor({1}, torch::kLong)),
               mcompress::Error);
  EXPECT_TRUE(torch::equal(attr(model, "fc1", "weight"), before.index_select(0, torch::tensor({1, 3}))));
}

// ---------------------------------------------------------------------------
// Pruning

TEST(ChannelPruning, HalfSparsityHalvesChannelsAndKeepsTheOutputShape) {
  Module model = make_cnn();
  const torch::Tensor input = image_input();
  const int64_t params_before = mcompress::count_parameters(model);
  const int64_t macs_before = mcompress::count_macs(model, input);
  const auto results = prune_by_l2(model, input, 0.5);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].channels_before, 8);
  EXPECT_EQ(results[0].channels_after, 4);
  EXPECT_EQ(attr(model, "conv1", "weight").sizes(), (std::vector<int64_t>{4, 3, 3, 3}));
  EXPECT_EQ(attr(model, "bn1", "running_mean").size(0), 4);
  EXPECT_EQ(attr(model, "conv2", "weight").sizes(), (std::vector<int64_t>{8, 4, 3, 3}));
  EXPECT_EQ(attr(model, "fc", "weight").sizes(), (std::vector<int64_t>{10, 128}));
  EXPECT_EQ(int_attr(model, "fc", "in_features"), 128);
  EXPECT_EQ(int_attr(model, "bn2", "num_features"), 8);
  EXPECT_EQ(int_attr(model, "conv2", "out_channels"), 8);
  EXPECT_TRUE(attr(model, "conv2", "weight").requires_grad());
  EXPECT_FALSE(attr(model, "bn2", "running_var").requires_grad());
  EXPECT_LT(mcompress::count_parameters(model), params_before * 6 / 10);
  EXPECT_LT(mcompress::count_macs(model, input), macs_before * 6 / 10);
  EXPECT_EQ(run(model, input).sizes(), (std::vector<int64_t>{1, 10}));
}

// Removing a channel is the same as cutting it off at every consumer: the
// pruned model must compute exactly what the original computes with those
// consumer inputs zeroed. This checks the slicing, including flatten blocks.
TEST(ChannelPruning, PrunedModelEqualsTheOriginalWithRemovedChannelsCutOff) {
  Module original = make_cnn();
  Module pruned = deep_copy(original);
  const torch::Tensor input = image_input();
  auto graph = mcompress::analyze_dependencies(pruned, input);
  const auto keep1 = torch::tensor({0, 2, 5, 7}, torch::kLong);
  const auto keep2 = torch::tensor({1, 3, 4, 8, 9, 15}, torch::kLong);
  mcompress::prune_channels(pruned, *group_named(graph, "conv1"), keep1);
  mcompress::prune_channels(pruned, *group_named(graph, "conv2"), keep2);
  {
    torch::NoGradGuard no_grad;
    auto cut1 = torch::ones({8});
    cut1.index_fill_(0, keep1, 0);
    attr(original, "conv2", "weight").mul_((1 - cut1).view({1, 8, 1, 1}));
    auto cut2 = torch::ones({16});
    cut2.index_fill_(0, keep2, 0);
    attr(original, "fc", "weight").mul_((1 - cut2).repeat_interleave(16).view({1, 256}));
  }
  EXPECT_TRUE(torch::allclose(run(pruned, input), run(original, input), 1e-5, 1e-6));
}

TEST(ChannelPruning, PruningEqualsCuttingChannelsOffForEveryGroup) {
  expect_pruning_equals_cutting_channels_off(make_cnn(), image_input());
  expect_pruning_equals_cutting_channels_off(make_residual(), image_input());
  expect_pruning_equals_cutting_channels_off(make_mlp(), torch::randn({3, 8}));
}

// fc2's 64 MB weight loses rows and columns: sliced row by row into the
// result instead of through a half-sliced copy, with the same outcome.
TEST(ChannelPruning, ALargeWeightLosingOutputsAndInputsIsSlicedLikeASmallOne) {
  expect_pruning_equals_cutting_channels_off(make_mlp(4096, 4096), torch::randn({3, 8}));
}

TEST(ChannelPruning, ZeroSparsityIsBitIdentical) {
  Module model = make_residual();
  const torch::Tensor input = image_input();
  const torch::Tensor before = run(model, input);
  const torch::Tensor weight = attr(model, "stem", "weight");
  const auto results = prune_by_l2(model, input, 0.0);
  for (const auto& result : results) EXPECT_EQ(result.channels_after, result.channels_before);
  EXPECT_TRUE(torch::equal(run(model, input), before));
  EXPECT_TRUE(attr(model, "stem", "weight").is_same(weight));
}

TEST(ChannelPruning, ResidualGroupPrunesConsistently) {
  Module model = make_residual();
  const torch::Tensor input = image_input();
  prune_by_l2(model, input, 0.5);
  EXPECT_EQ(attr(model, "stem", "weight").size(0), 4);
  EXPECT_EQ(attr(model, "conv_b", "weight").size(0), 4);
  EXPECT_EQ(attr(model, "conv_a", "weight").sizes(), (std::vector<int64_t>{3, 4, 3, 3}));
  EXPECT_EQ(attr(model, "fc", "weight").sizes(), (std::vector<int64_t>{10, 4}));
  EXPECT_EQ(run(model, input).sizes(), (std::vector<int64_t>{1, 10}));
}

TEST(ChannelPruning, PrunedModelRunsInAFreshPythonProcessWithTheSameOutput) {
  Module model = make_cnn();
  prune_by_l2(model, image_input(), 0.5);
  expect_python_agrees(model, {2, 3, 8, 8}, "cnn");
}

// ---------------------------------------------------------------------------
// Real torchvision architectures, scripted by Python.

class TorchvisionModels : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("pruning-torchvision");
    const auto result = run_command(
        std::string(MCOMPRESS_PYTHON) +
        " -c \"import torch, torchvision; torch.manual_seed(0); "
        "[torch.jit.script(getattr(torchvision.models, n)(num_classes=10)).save(r'" +
        dir_->path().string() + "/' + n + '.pt') for n in ('resnet18', 'mobilenet_v2', 'squeezenet1_1')]\"");
    ASSERT_EQ(result.exit_code, 0) << result.output;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static Module load(const std::string& name) {
    return torch::jit::load((dir_->path() / (name + ".pt")).string());
  }
  static inline TempDir* dir_ = nullptr;
};

TEST_F(TorchvisionModels, Resnet18ResidualStagesAreMergedGroups) {
  const Module model = load("resnet18");
  const auto graph = mcompress::analyze_dependencies(model, torch::randn({1, 3, 32, 32}));
  // The stem and layer1 share one residual stream; layer2..4 each start a new one.
  const auto* stem = group_named(graph, "conv1");
  ASSERT_NE(stem, nullptr) << describe(graph);
  EXPECT_EQ(stem, group_named(graph, "layer1.0.conv2"));
  EXPECT_EQ(stem, group_named(graph, "layer1.1.conv2"));
  EXPECT_EQ(group_named(graph, "layer2.0.downsample.0"), group_named(graph, "layer2.1.conv2"));
  EXPECT_TRUE(has_member(*stem, "layer2.0.downsample.0.weight", 1));
  EXPECT_TRUE(has_member(*stem, "bn1.running_var", 0));
  EXPECT_EQ(graph.prunable_groups().size(), 12u) << describe(graph);  // 8 block-internal + 4 streams
  EXPECT_EQ(graph.frozen_groups().size(), 1u) << describe(graph);     // fc: the model output
}

TEST_F(TorchvisionModels, PruningEqualsCuttingChannelsOff) {
  for (const std::string name : {"resnet18", "mobilenet_v2", "squeezenet1_1"}) {
    SCOPED_TRACE(name);
    const Module model = mcompress::with_channel_counts_following_weights(load(name));
    expect_pruning_equals_cutting_channels_off(model, torch::randn({1, 3, 32, 32}));
  }
}

TEST_F(TorchvisionModels, MobileNetV2DepthwiseAndSqueezeNetConcatenationGroupsArePrunable) {
  const torch::Tensor input = torch::randn({1, 3, 32, 32});
  {
    const Module model = mcompress::with_channel_counts_following_weights(load("mobilenet_v2"));
    const auto graph = mcompress::analyze_dependencies(model, input);
    // The expansion conv, its depthwise conv and the projection's input are one group.
    const auto* expand = group_named(graph, "features.2.conv.0.0");
    ASSERT_NE(expand, nullptr) << describe(graph);
    EXPECT_FALSE(expand->frozen) << describe(graph);
    EXPECT_TRUE(has_member(*expand, "features.2.conv.1.0.weight", 0));
    EXPECT_TRUE(has_member(*expand, "features.2.conv.2.weight", 1));
    EXPECT_EQ(graph.frozen_groups().size(), 1u) << describe(graph);  // only the classifier
  }
  {
    const Module model = load("squeezenet1_1");
    const auto graph = mcompress::analyze_dependencies(model, input);
    const auto* expand = group_named(graph, "features.3.expand3x3");
    ASSERT_NE(expand, nullptr) << describe(graph);
    EXPECT_FALSE(expand->frozen) << describe(graph);
    EXPECT_TRUE(has_member(*expand, "features.4.squeeze.weight", 1));
  }
}

// ---------------------------------------------------------------------------
// The plugins, loaded the way a host loads them.

class RecordingLogger : public mcompress::Logger {
 public:
  void log(mcompress::LogLevel, const std::string& message) override { lines.push_back(message); }
  std::vector<std::string> lines;
};

const mcompress::Pass& pruning_pass(const std::string& name) { return mcompress::testing::plugin_pass(name); }

const mcompress::Pass& magnitude_prune_pass() { return pruning_pass("magnitude_prune"); }

mcompress::Params default_params(const mcompress::PassInfo& info) {
  mcompress::Params params;
  for (const auto& spec : info.params) params.set(spec.name, *spec.default_value);
  return params;
}

const mcompress::ParamSpec* spec_named(const mcompress::PassInfo& info, const std::string& name) {
  for (const auto& spec : info.params) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

TEST(PruningPlugins, DeclareTheCommonParametersAndTheirCriterion) {
  for (const std::string name : {"magnitude_prune", "gradient_prune", "activation_prune"}) {
    const auto& info = pruning_pass(name).info();
    EXPECT_EQ(info.name, name);
    EXPECT_EQ(info.kind, mcompress::PassKind::Prune);
    EXPECT_FALSE(info.summary.empty());
    for (const auto& common : mcompress::pruning_param_specs()) {
      EXPECT_NE(spec_named(info, common.name), nullptr) << name << " lacks " << common.name;
    }
    EXPECT_EQ(info.needs.calibration_data, name != "magnitude_prune") << name;
  }
  const auto& magnitude = magnitude_prune_pass().info();
  EXPECT_EQ(std::get<double>(*spec_named(magnitude, "sparsity")->default_value), 0.5);
  EXPECT_EQ(*spec_named(magnitude, "sparsity")->max, 0.95);
  EXPECT_EQ(spec_named(magnitude, "norm")->choices, (std::vector<std::string>{"l1", "l2"}));
  EXPECT_EQ(*spec_named(magnitude, "round_to")->max, 1024);
  EXPECT_EQ(spec_named(pruning_pass("activation_prune").info(), "statistic")->choices,
            (std::vector<std::string>{"mean_abs", "apoz"}));
  EXPECT_NE(spec_named(pruning_pass("gradient_prune").info(), "calibration_batches"), nullptr);
}

struct PluginRun {
  mcompress::PassResult result;
  RecordingLogger log;
};

PluginRun run_plugin(const mcompress::Pass& pass, Module& model, const torch::Tensor& input,
                     mcompress::Params params, mcompress::DatasetPtr data = nullptr) {
  PluginRun run;
  mcompress::NullProgress progress;
  mcompress::PassContext context;
  context.model = model;
  context.original = model;
  context.example_input = input;
  context.params = &params;
  context.log = &run.log;
  context.progress = &progress;
  context.calibration = data;
  context.train = data;
  run.result = pass.run(context);
  model = context.model;
  return run;
}

PluginRun run_plugin(Module& model, const torch::Tensor& input, mcompress::Params params) {
  return run_plugin(magnitude_prune_pass(), model, input, std::move(params));
}

TEST(MagnitudePrunePlugin, PrunesThroughThePassInterfaceAndReportsWhatItDid) {
  Module model = make_cnn();
  const torch::Tensor input = image_input();
  auto params = default_params(magnitude_prune_pass().info());
  params.set("norm", std::string("l1"));
  const auto run = run_plugin(model, input, params);
  EXPECT_EQ(run.result.summary.rfind("pruned 12 of 24 channels in 2 groups; params ", 0), 0u)
      << run.result.summary;
  EXPECT_NE(run.result.summary.find("MACs "), std::string::npos) << run.result.summary;
  const auto& stats = run.result.stats;
  ASSERT_EQ(stats.at("layers").size(), 3u) << stats.dump(2);
  EXPECT_EQ(stats["layers"][1]["layer"], "conv2");
  EXPECT_EQ(stats["layers"][1]["channels_before"], 16);
  EXPECT_EQ(stats["layers"][1]["channels_after"], 8);
  EXPECT_LT(stats["layers"][1]["macs_after"].get<int64_t>(), stats["layers"][1]["macs_before"].get<int64_t>());
  EXPECT_LT(stats["layers"][2]["params_after"].get<int64_t>(), stats["layers"][2]["params_before"].get<int64_t>());
  ASSERT_EQ(stats.at("groups").size(), 2u) << stats.dump(2);
  EXPECT_EQ(stats["groups"][0]["allocation"], "uniform");
  EXPECT_LT(stats["params_after"].get<int64_t>(), stats["params_before"].get<int64_t>());
  EXPECT_LT(stats["macs_after"].get<int64_t>(), stats["macs_before"].get<int64_t>());
  ASSERT_EQ(stats.at("frozen_groups").size(), 1u);
  EXPECT_EQ(stats["frozen_groups"][0]["group"], "fc");
  EXPECT_NE(stats["frozen_groups"][0]["reason"].get<std::string>().find("model output"), std::string::npos);
  EXPECT_EQ(stats["criterion"], "l1");
  ASSERT_FALSE(run.log.lines.empty());
  EXPECT_NE(run.log.lines[0].find("fc"), std::string::npos);
  EXPECT_EQ(mcompress::forward_tensor(model, input).sizes(), (std::vector<int64_t>{1, 10}));
}

TEST_F(TorchvisionModels, Resnet18PrunedAt30PercentByThePluginRunsHereAndInPlainPyTorch) {
  Module model = load("resnet18");
  const torch::Tensor input = torch::randn({1, 3, 32, 32});
  auto params = default_params(magnitude_prune_pass().info());
  params.set("sparsity", 0.3);
  const auto run_result = run_plugin(model, input, params);
  const auto& stats = run_result.result.stats;
  EXPECT_EQ(stats.at("groups_pruned"), 12) << stats.dump(2);
  EXPECT_EQ(attr(model, "conv1", "weight").size(0), 45);  // 64 * 0.7 = 44.8
  EXPECT_LT(stats.at("params_after").get<double>(), 0.6 * stats.at("params_before").get<double>());
  EXPECT_LT(stats.at("macs_after").get<double>(), 0.6 * stats.at("macs_before").get<double>());
  EXPECT_EQ(run(model, input).sizes(), (std::vector<int64_t>{1, 10}));
  expect_python_agrees(model, {1, 3, 32, 32}, "resnet18");
}

TEST(MagnitudePrunePlugin, SparsityZeroLeavesTheModelBitIdentical) {
  Module model = make_residual();
  const torch::Tensor input = image_input();
  const torch::Tensor before = run(model, input);
  auto params = default_params(magnitude_prune_pass().info());
  params.set("sparsity", 0.0);
  const auto run_result = run_plugin(model, input, params);
  EXPECT_EQ(run_result.result.summary.rfind("pruned 0 of ", 0), 0u) << run_result.result.summary;
  EXPECT_TRUE(torch::equal(run(model, input), before));
}

TEST(MagnitudePrunePlugin, RoundToKeepsMultiples) {
  Module model = make_mlp();
  auto params = default_params(magnitude_prune_pass().info());
  params.set("sparsity", 0.3);
  params.set("round_to", int64_t{4});
  run_plugin(model, torch::randn({1, 8}), params);
  EXPECT_EQ(attr(model, "fc1", "weight").size(0), 12);  // 11.2 -> 12
  EXPECT_EQ(attr(model, "fc2", "weight").size(0), 8);   // 8.4 -> 8
}

TEST(PruningPlugins, CalibrationCriteriaPruneWithDataAndRefuseWithoutIt) {
  const auto data = std::make_shared<mcompress::Dataset>(random_dataset({3, 8, 8}, 64, 10));
  for (const std::string name : {"gradient_prune", "activation_prune"}) {
    const auto& pass = pruning_pass(name);
    auto params = default_params(pass.info());
    params.set("calibration_batches", int64_t{2});
    params.set("calibration_batch_size", int64_t{16});
    params.set("allocation", std::string("global"));
    Module model = make_cnn();
    const torch::Tensor input = image_input();
    const auto run_result = run_plugin(pass, model, input, params, data);
    EXPECT_EQ(run_result.result.summary.rfind("pruned 12 of 24 channels", 0), 0u) << run_result.result.summary;
    EXPECT_EQ(run(model, input).sizes(), (std::vector<int64_t>{1, 10}));
    Module untouched = make_cnn();
    EXPECT_THROW(run_plugin(pass, untouched, input, params), mcompress::Error) << name;
  }
}

TEST(PruningPlugins, IterativeStepsFineTuneBetweenStepsAndReachTheTarget) {
  const auto data = std::make_shared<mcompress::Dataset>(random_dataset({3, 8, 8}, 64, 10));
  auto params = default_params(magnitude_prune_pass().info());
  params.set("steps", int64_t{3});
  params.set("sparsity", 0.5);
  params.set("finetune_batch_size", int64_t{32});
  Module model = make_cnn();
  const torch::Tensor input = image_input();
  Module without_data = make_cnn();
  EXPECT_THROW(run_plugin(magnitude_prune_pass(), without_data, input, params), mcompress::Error);
  const auto run_result = run_plugin(magnitude_prune_pass(), model, input, params, data);
  EXPECT_EQ(run_result.result.stats.at("steps"), 3);
  EXPECT_NE(run_result.result.summary.find("in 3 steps"), std::string::npos) << run_result.result.summary;
  EXPECT_EQ(attr(model, "conv1", "weight").size(0), 4);
  EXPECT_EQ(attr(model, "conv2", "weight").size(0), 8);
  // Fine-tuning ran between the steps, not after the last one.
  const auto& lines = run_result.log.lines;
  EXPECT_EQ(std::count_if(lines.begin(), lines.end(),
                          [](const std::string& l) { return l.find("fine-tuning after step") != std::string::npos; }),
            2);
}

}  // namespace
