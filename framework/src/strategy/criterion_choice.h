#pragma once
// How auto_prune chooses among the pruning criteria it probed: by held-out
// score, where scores within each other's 95% interval tie and the faster
// pruned copy (batch-1 latency, ties within the interquartile range) wins;
// when both tie, the higher score. Torch-free, so it is tested on numbers.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mcompress/framework/support/ranking_with_ties.h"

namespace mcompress {

// What probing one criterion measured on its pruned copy.
struct ProbedCriterion {
  std::string pass;
  double score = 0.0;       // held-out accuracy or agreement, 0..1
  int64_t samples = 0;      // held-out samples the score was measured on
  std::optional<Measurement> latency_ms;  // batch-1 median [p25, p75]; nullopt: not timed
};

// The 95% Wilson score interval of a fraction measured on `samples` samples
// (the whole range 0..1 when there are none).
Measurement fraction_interval(double fraction, int64_t samples);

struct CriterionChoice {
  size_t chosen = 0;                      // index into the probed criteria
  std::string why;                        // one paragraph for the record and the log
  std::vector<std::string> ties;          // tie_notes(), if any
};

// Throws mcompress::Error when `probed` is empty. `score_label` names the
// score in sentences ("held-out accuracy").
CriterionChoice choose_criterion(const std::vector<ProbedCriterion>& probed, const std::string& score_label);

}  // namespace mcompress
