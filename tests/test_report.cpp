// The run report's table: which columns a run's metrics call for, and the
// spread shown with every latency.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mcompress/framework/run/report.h"

namespace {

using mcompress::StageOutcome;

StageOutcome stage(int index, const std::string& name, std::map<std::string, double> metrics) {
  StageOutcome o;
  o.index = index;
  o.name = name;
  o.pass = index ? "int8_quant" : "";
  o.status = index ? "accepted" : "baseline";
  o.metrics = std::move(metrics);
  return o;
}

std::string line_of(const std::string& table, const std::string& start) {
  const size_t at = table.find("\n" + start);
  if (at == std::string::npos) return "";
  return table.substr(at + 1, table.find('\n', at + 1) - at - 1);
}

}  // namespace

TEST(Report, OnnxRuntimeLatencyGetsAColumnWithItsSpreadAndRatio) {
  const std::vector<StageOutcome> outcomes = {
      stage(0, "baseline",
            {{"latency_b1_median_ms", 0.5}, {"onnxruntime_latency_b1_median_ms", 0.4},
             {"onnxruntime_latency_b1_p25_ms", 0.38}, {"onnxruntime_latency_b1_p75_ms", 0.42}}),
      stage(1, "int8",
            {{"latency_b1_median_ms", 0.25}, {"onnxruntime_latency_b1_median_ms", 0.1},
             {"onnxruntime_latency_b1_p25_ms", 0.09}, {"onnxruntime_latency_b1_p75_ms", 0.11}}),
      stage(2, "no_export", {{"latency_b1_median_ms", 0.3}}),
  };
  const std::string table = mcompress::summary_table(outcomes);
  EXPECT_NE(table.find("ONNX Runtime b1 (ms)"), std::string::npos) << table;
  const std::string int8 = line_of(table, "int8");
  EXPECT_NE(int8.find("0.100 [0.090–0.110] (0.25x)"), std::string::npos) << table;
  // A stage the runtime did not time says so with a dash, not a zero.
  const std::string no_export = line_of(table, "no_export");
  ASSERT_FALSE(no_export.empty()) << table;
  EXPECT_EQ(no_export.back(), '-') << table;
  EXPECT_NE(mcompress::summary_markdown("run", outcomes).find("ONNX Runtime b1 (ms)"), std::string::npos);
}

TEST(Report, NoOnnxRuntimeColumnWhenNoStageWasTimedInIt) {
  const std::string table = mcompress::summary_table(
      {stage(0, "baseline", {{"latency_b1_median_ms", 0.5}}), stage(1, "int8", {{"latency_b1_median_ms", 0.25}})});
  EXPECT_EQ(table.find("ONNX Runtime"), std::string::npos) << table;
  EXPECT_NE(table.find("Latency b1 (ms)"), std::string::npos) << table;
}
