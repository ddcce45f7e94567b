#pragma once
// A stage's quality gate: does its model stay close enough to the reference
// stage's accuracy to be kept?
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "mcompress/framework/recipe/recipe.h"
#include "mcompress/framework/run/report.h"

namespace mcompress {

struct GateVerdict {
  std::string status = "accepted";  // accepted | rolled_back | stopped
  std::string note;                 // why the gate rejected the stage
  nlohmann::json record;            // what the stage record keeps of the check (null: none made)
};

// Checks the stage's `metrics` against `reference` (the outcome the gate
// names). A gate without a bound, or metrics without accuracy, accept.
GateVerdict check_gate(const GateSpec& gate, const std::map<std::string, double>& metrics,
                       const StageOutcome& reference);

}  // namespace mcompress
