#pragma once
// What `mcompress runs list | show | diff` print about runs read from a
// tracking store (tracking.h): tables for people, JSON for programs. Torch-free.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mcompress/framework/tracking/tracking.h"

namespace mcompress {

// One line per run: id (first 12 digits), experiment, name, status, start,
// duration, and the final accuracy, latency and size when the run has them.
std::string runs_table(const std::vector<StoredRun>& runs);
nlohmann::json runs_json(const std::vector<StoredRun>& runs);

// Everything about one run: info, params, metrics by stage, tags.
std::string run_details(const StoredRun& run);
nlohmann::json run_json(const StoredRun& run);

// Params and final metrics of two runs side by side; rows that differ are
// marked with `*` (metrics also show B - A). Status and name lead.
std::string runs_diff(const StoredRun& a, const StoredRun& b);
nlohmann::json runs_diff_json(const StoredRun& a, const StoredRun& b);

}  // namespace mcompress
