#pragma once
// A comparison sweep: one base recipe and the candidates to run from it, each
// expressed as --set overrides of the base (so a candidate is an ordinary,
// resumable `mcompress run`), plus the objective that ranks them. Torch-free.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mcompress/framework/recipe/recipe.h"

namespace mcompress {

constexpr int kSweepFormatVersion = 1;

struct Candidate {
  int index = 0;                       // position in the sweep; fixes shards and directories
  std::string name;                    // e.g. "magnitude_50" or "prune.pass=x, sparsity=0.3"
  std::vector<std::string> overrides;  // applied after the sweep's common overrides
  std::string directory() const;       // "007_<name slug>"
};

// Which way a metric is better.
enum class Direction { Minimize, Maximize };

struct Bound {
  std::string metric;  // a derived metric (see comparison.h), e.g. "accuracy_drop"
  bool is_max = true;  // max_<metric>: value <= limit; min_<metric>: value >= limit
  double limit = 0.0;
};

struct Objective {
  std::string reference = "baseline";  // stage whose accuracy `accuracy_drop` is measured from
  std::vector<Bound> constraints;
  // Ranking of candidates that meet the constraints: one metric, or a weighted
  // score (sum of weight * metric, larger is better).
  std::string primary = "latency_b1_median_ms";
  Direction direction = Direction::Minimize;
  std::map<std::string, double> score_weights;
};

struct Sweep {
  std::string name;
  std::string source_path;              // absolute path of the sweep file
  std::string base_recipe;              // absolute path
  std::vector<std::string> overrides;   // applied to every candidate
  std::vector<Candidate> candidates;
  Objective objective;
  double time_limit_seconds = 0.0;      // per candidate; 0: none
};

// Reads a sweep file; every problem is reported at once via RecipeError
// (file:line:col). Candidate recipes are validated separately
// (validate_candidates) because that needs the loaded passes.
Sweep load_sweep(const std::string& path);
// The same for sweep text already in memory; `source_path` is where it claims
// to come from (diagnostics name it; `base` is resolved against its directory).
Sweep parse_sweep(const std::string& text, const std::string& source_path);

// Validates the base recipe with each candidate's overrides; all problems,
// prefixed with the candidate's name, in one RecipeError.
void validate_candidates(const Sweep& sweep, const PassCatalog& catalog);

// Candidates of shard `index` of `count` (index in [0, count)): every
// count-th candidate, so shards are disjoint, cover the sweep, and do not
// depend on what has already run.
std::vector<Candidate> shard_of(const std::vector<Candidate>& candidates, int index, int count);

}  // namespace mcompress
