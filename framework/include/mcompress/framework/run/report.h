#pragma once
// What a run reports: one outcome per stage (the baseline is stage 0), shown
// as a terminal table, Markdown and JSON. Torch-free.
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mcompress {

struct StageOutcome {
  int index = 0;              // 0: baseline
  std::string name;           // "baseline" or the stage name
  std::string pass;           // empty for the baseline
  std::string status;         // baseline | accepted | rolled_back | stopped | failed
  std::map<std::string, double> metrics;
  std::string summary;        // the pass's one-line summary
  std::string gate_note;      // why a gate rejected the stage, if it did
  std::string error;          // for failed stages
  double pass_seconds = 0.0;
  double probe_seconds = 0.0;
};

nlohmann::json to_json(const StageOutcome& outcome);
StageOutcome stage_outcome_from_json(const nlohmann::json& json);

// Stage | Pass | Status | Accuracy | Δ acc | Latency b1 | Latency bN | Size | Params | MACs,
// with deltas relative to the baseline (the first outcome); perplexity,
// decode speed and ONNX Runtime's batch-1 latency where the stages have them.
std::string summary_table(const std::vector<StageOutcome>& outcomes);
std::string summary_markdown(const std::string& title, const std::vector<StageOutcome>& outcomes);

}  // namespace mcompress
