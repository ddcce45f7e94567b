// Quantizing a model's linear layers (sdk/quantized_model.h): the result is
// a TorchScript module that computes what the dequantized weights compute,
// saves, reloads in C++ and in Python (with the runtime library loaded),
// says it needs the runtime, and is measured by the host's probes.
#include <gtest/gtest.h>

#include <torch/script.h>
#include <torch/torch.h>

#include <cstring>
#include <fstream>

#include "mcompress/framework/probes/probes.h"
#include "mcompress/framework/sources/zoo.h"
#include "mcompress/runtime/quantized_linear.h"
#include "mcompress/models/graph.h"
#include "mcompress/models/model_stats.h"
#include "mcompress/quantization/quantized_model.h"
#include "test_support.h"

namespace fs = std::filesystem;
using mcompress::testing::run_command;
using mcompress::testing::TempDir;
using mcompress::testing::write_text;

namespace {

torch::jit::Module char_lm() {
  return mcompress::build_zoo_model("char_lm", {{"width", 64}, {"layers", 2}, {"heads", 4}, {"context", 16}},
                                    65, 5);
}

torch::Tensor tokens(int64_t batch, int64_t length) {
  auto x = torch::empty({batch, length}, torch::kLong);
  for (int64_t i = 0; i < batch; ++i) {
    for (int64_t t = 0; t < length; ++t) x[i][t] = (i * 7 + t * 3) % 65;
  }
  return x;
}

std::vector<mcompress::LayerQuantization> plan_all(const torch::jit::Module& model, int bits, int group_size) {
  std::vector<mcompress::LayerQuantization> plan;
  for (const auto& layer : mcompress::find_linear_layers(model)) plan.push_back({layer.path, bits, group_size});
  return plan;
}

// The floating model with each quantized layer's weight replaced by its
// dequantized value: what the quantized model must compute.
torch::jit::Module fake_quantized(const torch::jit::Module& original, const torch::jit::Module& quantized) {
  auto copy = original.deepcopy();
  for (const auto& layer : mcompress::quantized_layers(quantized)) {
    auto module = mcompress::submodule_at(copy, layer.path);
    module.register_parameter(
        "weight",
        mcompress::runtime::dequantize_weight(layer.packed, layer.scales, layer.biases, layer.bits,
                                              layer.group_size),
        false);
  }
  return copy;
}

torch::Tensor run(const torch::jit::Module& model, const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  auto m = model;
  m.eval();
  return m.forward({x}).toTensor();
}

}  // namespace

TEST(QuantizedModel, FindsTheLinearLayersOfZooModels) {
  const auto layers = mcompress::find_linear_layers(char_lm());
  std::vector<std::string> paths;
  for (const auto& l : layers) paths.push_back(l.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"block0.attn.qkv", "block0.attn.proj", "block0.fc", "block0.proj",
                                             "block1.attn.qkv", "block1.attn.proj", "block1.fc", "block1.proj",
                                             "head"}));
  EXPECT_EQ(layers[0].in_features, 64);
  EXPECT_EQ(layers[0].out_features, 192);
  EXPECT_TRUE(layers[0].has_bias);
}

TEST(QuantizedModel, ComputesWhatTheDequantizedWeightsComputeAndLeavesTheInputAlone) {
  const auto model = char_lm();
  const auto x = tokens(2, 16);
  const auto before = run(model, x);
  for (int bits : {3, 4, 8}) {
    const auto q = mcompress::quantize_linear_layers(model, plan_all(model, bits, 32));
    ASSERT_EQ(q.layers.size(), 9u);
    for (const auto& layer : q.layers) {
      EXPECT_TRUE(layer.quantized) << layer.path << ": " << layer.reason;
      EXPECT_LT(layer.bytes_after, layer.bytes_before);
      EXPECT_GT(layer.max_abs_error, 0.0);
    }
    const auto y = run(q.model, x);
    EXPECT_TRUE(torch::allclose(y, run(fake_quantized(model, q.model), x), 1e-4, 1e-4)) << bits;
    // The code and weights of the input model are untouched.
    EXPECT_TRUE(torch::equal(run(model, x), before));
  }
  // Parameters still count the packed weights; MACs are the same.
  const auto q = mcompress::quantize_linear_layers(model, plan_all(model, 4, 64));
  EXPECT_EQ(mcompress::count_parameters(q.model), mcompress::count_parameters(model));
  EXPECT_EQ(mcompress::count_macs(q.model, tokens(1, 16)), mcompress::count_macs(model, tokens(1, 16)));
}

TEST(QuantizedModel, SavesReloadsAndRunsInPythonWithTheRuntimeLibrary) {
  TempDir tmp("quantized-model");
  const auto model = char_lm();
  auto q = mcompress::quantize_linear_layers(model, plan_all(model, 4, 64),
                                             {torch::kHalf});
  const auto file = tmp.path() / "model.pt";
  q.model.save(file.string());
  const auto x = tokens(3, 16);
  const auto expected = run(q.model, x);

  auto reloaded = torch::jit::load(file.string());
  EXPECT_TRUE(torch::equal(run(reloaded, x), expected));
  EXPECT_NE(reloaded.attr("mcompress_requires").toStringRef().find("libmcompress_runtime"), std::string::npos);
  ASSERT_EQ(mcompress::quantized_layers(reloaded).size(), 9u);
  EXPECT_EQ(mcompress::quantized_layers(reloaded)[0].scales.scalar_type(), torch::kHalf);
  // No floating weight is left in a quantized layer.
  EXPECT_FALSE(mcompress::submodule_at(reloaded, "head").hasattr("weight"));

  write_text(tmp.path() / "run.py", R"(import sys
import numpy as np
import torch
library, model_file, out_file = sys.argv[1:4]
try:
    torch.jit.load(model_file)
    print("loaded without the runtime library")
    sys.exit(3)
except RuntimeError as e:
    assert "quantized_linear" in str(e), e
torch.ops.load_library(library)
model = torch.jit.load(model_file)
model.eval()
x = torch.tensor([[(i * 7 + t * 3) % 65 for t in range(16)] for i in range(3)])
with torch.no_grad():
    model(x).numpy().astype(np.float32).tofile(out_file)
)");
  const auto out = tmp.path() / "python.bin";
  const auto result = run_command(std::string(MCOMPRESS_PYTHON) + " " + (tmp.path() / "run.py").string() + " " +
                                  mcompress::runtime::runtime_library_path() + " " + file.string() + " " +
                                  out.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::ifstream in(out, std::ios::binary);
  std::vector<float> values(size_t(expected.numel()));
  in.read(reinterpret_cast<char*>(values.data()), std::streamsize(values.size() * sizeof(float)));
  ASSERT_TRUE(in) << "python wrote too little";
  const auto from_python = torch::from_blob(values.data(), expected.sizes(), torch::kFloat).clone();
  EXPECT_TRUE(torch::allclose(from_python, expected, 1e-5, 1e-5));
}

TEST(QuantizedModel, SkipsLayersItCannotQuantizeAndSaysWhy) {
  // The CNN's fc1 has 2 * 16 * 7 * 7 = 1568 inputs: a multiple of 32, not of 64.
  const auto cnn = mcompress::build_zoo_model("cnn", {{"width", 16}}, 10, 1);
  const auto q = mcompress::quantize_linear_layers(cnn, {{"fc1", 4, 64}, {"fc2", 4, 64}});
  ASSERT_EQ(q.layers.size(), 2u);
  EXPECT_FALSE(q.layers[0].quantized);
  EXPECT_EQ(q.layers[0].reason, "its input size 1568 is not a multiple of the group size 64");
  EXPECT_EQ(q.layers[0].bytes_after, q.layers[0].bytes_before);
  EXPECT_TRUE(q.layers[1].quantized);
  const auto x = torch::randn({2, 1, 28, 28});
  EXPECT_EQ(run(q.model, x).sizes(), (std::vector<int64_t>{2, 10}));

  try {
    mcompress::quantize_linear_layers(cnn, {{"conv1", 4, 64}});
    ADD_FAILURE() << "a convolution was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("`conv1` is not a linear layer"), std::string::npos) << e.what();
  }
}

TEST(QuantizedModel, LayersSharingAClassAreQuantizedAllOrNone) {
  // Scripted nn.Linear layers of the same shape share one class and its code.
  TempDir tmp("shared-class");
  const auto file = tmp.path() / "mlp.pt";
  write_text(tmp.path() / "make.py", R"(import sys
import torch
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                            torch.nn.ReLU(), torch.nn.Linear(64, 8))
torch.jit.script(model).save(sys.argv[1])
)");
  const auto made = run_command(std::string(MCOMPRESS_PYTHON) + " " + (tmp.path() / "make.py").string() + " " +
                                file.string());
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const auto model = torch::jit::load(file.string());
  ASSERT_EQ(mcompress::find_linear_layers(model).size(), 3u);
  ASSERT_EQ(mcompress::submodule_at(model, "0").type(), mcompress::submodule_at(model, "2").type());

  const auto one = mcompress::quantize_linear_layers(model, {{"0", 4, 32}, {"4", 4, 32}});
  EXPECT_FALSE(one.layers[0].quantized);
  EXPECT_NE(one.layers[0].reason.find("shares its class"), std::string::npos) << one.layers[0].reason;
  EXPECT_NE(one.layers[0].reason.find("`2`, which is not selected"), std::string::npos) << one.layers[0].reason;
  EXPECT_TRUE(one.layers[1].quantized) << one.layers[1].reason;

  const auto both = mcompress::quantize_linear_layers(model, {{"0", 4, 32}, {"2", 8, 32}});
  EXPECT_TRUE(both.layers[0].quantized) << both.layers[0].reason;
  EXPECT_TRUE(both.layers[1].quantized) << both.layers[1].reason;
  const auto x = torch::randn({5, 64});
  EXPECT_TRUE(torch::allclose(run(both.model, x), run(fake_quantized(model, both.model), x), 1e-4, 1e-4));
  // Different bits per module of one class: the code reads them per module.
  EXPECT_EQ(mcompress::quantized_layers(both.model)[1].bits, 8);
  // The input model still runs its floating code.
  EXPECT_TRUE(mcompress::submodule_at(model, "0").hasattr("weight"));
}

TEST(QuantizedModel, TheHostsProbesMeasureAQuantizedModel) {
  const auto model = char_lm();
  const auto q = mcompress::quantize_linear_layers(model, plan_all(model, 4, 64), {torch::kHalf});
  mcompress::Dataset data;
  data.inputs = tokens(8, 16);
  data.targets = tokens(8, 16).roll(-1, 1);
  data.num_classes = 65;
  mcompress::ProbeSpec spec;
  spec.enabled = {"accuracy", "latency", "params", "macs", "size"};
  spec.latency_batch_sizes = {1};
  spec.latency_runs = 2;
  spec.latency_warmup = 1;
  mcompress::NullProgress progress;
  const auto example = tokens(1, 16);
  const auto before = mcompress::run_probes(model, &data, example, spec, progress);
  const auto after = mcompress::run_probes(q.model, &data, example, spec, progress);
  EXPECT_GT(after.at("latency_b1_median_ms"), 0.0);
  EXPECT_EQ(after.at("params"), before.at("params"));
  EXPECT_EQ(after.at("macs"), before.at("macs"));
  EXPECT_GE(after.at("accuracy"), 0.0);
  // The serialized archive holds the packed bytes: 4.5 bits instead of 32 per linear weight.
  int64_t linear_weights = 0;
  for (const auto& l : mcompress::find_linear_layers(model)) linear_weights += l.in_features * l.out_features;
  const double saved = before.at("size_bytes") - after.at("size_bytes");
  EXPECT_GT(saved, 0.8 * linear_weights * (32.0 - 4.5) / 8.0);
}
