// The latency probe in ONNX Runtime: the library loaded at run time through
// its C API (tests/js's onnxruntime-node ships one), a zoo CNN exported and
// run there with LibTorch's outputs, the probe's onnxruntime_latency_* metrics,
// and nothing recorded (and nothing failing) where the library is missing.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <fmt/format.h>

#include "mcompress/formats/onnx_export.h"
#include "mcompress/framework/probes/probes.h"
#include "mcompress/framework/sources/zoo.h"
#include "mcompress/models/evaluate.h"
#include "mcompress/sdk/error.h"
#include "probes/onnx_runtime_session.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;

const fs::path kNpmLibrary = fs::path(MCOMPRESS_SOURCE_DIR) /
                             "tests/js/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1";

// Points MCOMPRESS_ONNXRUNTIME_LIBRARY at `library` for the life of this
// object, with ONNX Runtime switched on.
class OnnxRuntimeLibraryVariable {
 public:
  explicit OnnxRuntimeLibraryVariable(const fs::path& library) {
    setenv("MCOMPRESS_ONNXRUNTIME_LIBRARY", library.c_str(), 1);
    unsetenv("MCOMPRESS_ONNXRUNTIME");
  }
  ~OnnxRuntimeLibraryVariable() { unsetenv("MCOMPRESS_ONNXRUNTIME_LIBRARY"); }
};

#define SKIP_WITHOUT_NPM_ONNX_RUNTIME()                                                                     \
  if (!fs::exists(kNpmLibrary))                                                                             \
  GTEST_SKIP() << kNpmLibrary << " is missing: run `npm install` in tests/js (scripts/install-deps.sh --tests " \
                  "does) to test ONNX Runtime"

// What the probes said when they finished a task.
class RecordingProgress final : public Progress {
 public:
  void start(const std::string& label, int64_t) override { label_ = label; }
  void update(int64_t, const std::string&) override {}
  void finish(const std::string& status) override { said += label_ + ": " + status + "\n"; }
  std::string said;

 private:
  std::string label_;
};

ProbeSpec quick_latency_probe() {
  ProbeSpec spec;
  spec.enabled = {"latency"};
  spec.latency_batch_sizes = {1};
  spec.latency_warmup = 2;
  spec.latency_runs = 8;
  return spec;
}

TEST(OnnxRuntimeSession, LoadsTheNpmLibraryThroughItsCApi) {
  SKIP_WITHOUT_NPM_ONNX_RUNTIME();
  OnnxRuntimeLibraryVariable variable(kNpmLibrary);
  const auto runtime = load_onnx_runtime();
  ASSERT_TRUE(runtime.library) << runtime.why_not;
  EXPECT_EQ(runtime.version, "1.30.0");
  EXPECT_EQ(runtime.library_path, kNpmLibrary.string());
  EXPECT_NE(onnx_runtime_description().find("1.30.0"), std::string::npos) << onnx_runtime_description();
}

TEST(OnnxRuntimeSession, RunsAnExportedZooCnnWithLibTorchsOutputs) {
  SKIP_WITHOUT_NPM_ONNX_RUNTIME();
  OnnxRuntimeLibraryVariable variable(kNpmLibrary);
  const auto runtime = load_onnx_runtime();
  ASSERT_TRUE(runtime.library) << runtime.why_not;
  const auto model = build_zoo_model("cnn", {{"width", 8}}, 10, 1);
  OnnxExportOptions options;
  options.input_shape = {1, 1, 28, 28};
  const OnnxModel onnx = torchscript_to_onnx(model, options);
  OnnxRuntimeSession session(runtime.library, encode_onnx_model(onnx), onnx.graph.inputs.at(0).name,
                             {onnx.graph.outputs.at(0).name}, 2);
  torch::manual_seed(3);
  // Batch 3: the exported batch dimension is dynamic.
  const auto input = torch::randn({3, 1, 28, 28});
  torch::Tensor expected;
  {
    torch::NoGradGuard no_grad;
    EvalModeGuard eval_mode(model);
    expected = forward_tensor(model, input);
  }
  const auto actual = session.run(input);
  ASSERT_EQ(actual.sizes(), expected.sizes());
  EXPECT_LE((actual - expected).abs().max().item<double>(), 1e-4);
  // The result stays valid after more runs (it owns ONNX Runtime's buffer).
  const auto again = session.run(input);
  EXPECT_TRUE(torch::equal(actual, again));
}

TEST(OnnxRuntimeSession, RefusesAModelThatIsNotOnnxWithItsMessage) {
  SKIP_WITHOUT_NPM_ONNX_RUNTIME();
  OnnxRuntimeLibraryVariable variable(kNpmLibrary);
  const auto runtime = load_onnx_runtime();
  ASSERT_TRUE(runtime.library) << runtime.why_not;
  try {
    OnnxRuntimeSession session(runtime.library, "not a model", "input", {"output"}, 1);
    FAIL() << "a session was created from bytes that are not a model";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("load the model"), std::string::npos) << error.what();
  }
}

TEST(OnnxRuntimeLatencyProbe, RecordsOnnxRuntimeLatencyBesideLibTorchs) {
  SKIP_WITHOUT_NPM_ONNX_RUNTIME();
  OnnxRuntimeLibraryVariable variable(kNpmLibrary);
  const auto model = build_zoo_model("cnn", {{"width", 8}}, 10, 1);
  NullProgress quiet;
  const auto metrics = run_probes(model, nullptr, torch::randn({1, 1, 28, 28}), quick_latency_probe(), quiet);
  for (const char* what : {"median_ms", "p25_ms", "p75_ms", "p95_ms", "warmup_runs"}) {
    ASSERT_TRUE(metrics.count(fmt::format("onnxruntime_latency_b1_{}", what))) << what;
  }
  EXPECT_GT(metrics.at("onnxruntime_latency_b1_median_ms"), 0.0);
  EXPECT_LE(metrics.at("onnxruntime_latency_b1_p25_ms"), metrics.at("onnxruntime_latency_b1_median_ms"));
  EXPECT_LE(metrics.at("onnxruntime_latency_b1_median_ms"), metrics.at("onnxruntime_latency_b1_p75_ms"));
  EXPECT_GT(metrics.at("latency_b1_median_ms"), 0.0);
  std::printf("zoo cnn width 8, batch 1, %d thread(s): LibTorch %.4f ms, ONNX Runtime 1.30.0 %.4f ms (medians)\n",
              int(metrics.at("threads")), metrics.at("latency_b1_median_ms"),
              metrics.at("onnxruntime_latency_b1_median_ms"));
}

TEST(OnnxRuntimeLatencyProbe, SkipsAModelThatDoesNotExport) {
  SKIP_WITHOUT_NPM_ONNX_RUNTIME();
  OnnxRuntimeLibraryVariable variable(kNpmLibrary);
  torch::jit::Module model("CumulativeSum");
  model.define(R"(
    def forward(self, x):
        return torch.cumsum(x, 1)
  )");
  RecordingProgress progress;
  const auto metrics = run_probes(model, nullptr, torch::randn({1, 16}), quick_latency_probe(), progress);
  EXPECT_TRUE(metrics.count("latency_b1_median_ms"));
  EXPECT_FALSE(metrics.count("onnxruntime_latency_b1_median_ms"));
  EXPECT_NE(progress.said.find("ONNX Runtime latency: not timed: the model does not export to ONNX: aten::cumsum"),
            std::string::npos)
      << progress.said;
  // Said once: the next stage's probes do not repeat it.
  RecordingProgress next_stage;
  run_probes(model, nullptr, torch::randn({1, 16}), quick_latency_probe(), next_stage);
  EXPECT_EQ(next_stage.said.find("ONNX Runtime"), std::string::npos) << next_stage.said;
}

TEST(OnnxRuntimeLatencyProbe, IsOffWhenTheEnvironmentSaysSo) {
  SKIP_WITHOUT_NPM_ONNX_RUNTIME();
  OnnxRuntimeLibraryVariable variable(kNpmLibrary);
  setenv("MCOMPRESS_ONNXRUNTIME", "0", 1);
  const auto model = build_zoo_model("cnn", {{"width", 8}}, 10, 1);
  NullProgress quiet;
  const auto metrics = run_probes(model, nullptr, torch::randn({1, 1, 28, 28}), quick_latency_probe(), quiet);
  unsetenv("MCOMPRESS_ONNXRUNTIME");
  EXPECT_TRUE(metrics.count("latency_b1_median_ms"));
  EXPECT_FALSE(metrics.count("onnxruntime_latency_b1_median_ms"));
}

TEST(OnnxRuntimeLatencyProbe, RecordsNothingAndFailsNothingWhereTheLibraryIsMissing) {
  OnnxRuntimeLibraryVariable variable("/nonexistent/libonnxruntime.so.1");
  const auto runtime = load_onnx_runtime();
  EXPECT_FALSE(runtime.library);
  EXPECT_NE(runtime.why_not.find("/nonexistent/libonnxruntime.so.1"), std::string::npos) << runtime.why_not;
  EXPECT_EQ(onnx_runtime_description().rfind("not present: ", 0), 0u) << onnx_runtime_description();
  const auto model = build_zoo_model("cnn", {{"width", 8}}, 10, 1);
  RecordingProgress progress;
  const auto metrics = run_probes(model, nullptr, torch::randn({1, 1, 28, 28}), quick_latency_probe(), progress);
  EXPECT_NE(progress.said.find("ONNX Runtime latency: not timed: MCOMPRESS_ONNXRUNTIME_LIBRARY names "
                               "/nonexistent/libonnxruntime.so.1, which does not load"),
            std::string::npos)
      << progress.said;
  EXPECT_TRUE(metrics.count("latency_b1_median_ms"));
  for (const auto& [key, value] : metrics) EXPECT_EQ(key.rfind("onnxruntime", 0), std::string::npos) << key;
}

}  // namespace
}  // namespace mcompress
