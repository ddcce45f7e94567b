#pragma once
// Results of a sweep's candidates, ranked by the sweep's objective, with the
// Pareto fronts over accuracy vs latency and accuracy vs size. Torch-free.
//
// Latencies are measured with a spread (the interquartile range of the timed
// runs, latency_b<N>_p25_ms/_p75_ms): candidates whose intervals overlap on
// the objective tie, and the next criterion (accuracy, then batch-1 latency,
// then size, whichever the objective is not) ranks them
// (support/ranking_with_ties.h). The comparison says so.
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mcompress/framework/sweep/sweep.h"

namespace mcompress {

struct CandidateResult {
  int index = 0;
  std::string name;
  std::vector<std::string> overrides;
  std::string status;  // completed | stopped | failed | crashed | timeout
  std::string error;
  std::string run_dir;
  double seconds = 0.0;
  // Derived metrics of the final model: accuracy, accuracy_drop (vs the
  // objective's reference stage), latency_*, size_bytes, size_mb, params, macs.
  std::map<std::string, double> metrics;
};

nlohmann::json to_json(const CandidateResult& result);
CandidateResult candidate_result_from_json(const nlohmann::json& json);

// Reads a finished candidate run's report.json (written by `mcompress run`).
CandidateResult result_from_report(const Candidate& candidate, const nlohmann::json& report,
                                   const std::string& reference_stage);

struct RankedCandidate {
  CandidateResult result;
  bool feasible = false;                // completed and meets every constraint
  std::vector<std::string> violations;  // "latency_b1_median_ms 2.31 > 2"
  double objective = 0.0;               // the primary metric or the weighted score
  double shortfall = 0.0;               // sum of relative constraint violations
  bool pareto_latency = false;          // on the accuracy-vs-latency front
  bool pareto_size = false;             // on the accuracy-vs-size front
  int rank = 0;                         // 1 = best
  // Among feasible candidates: the criterion that placed this one ("batch-1
  // latency", "accuracy", ...), and those it tied with on the objective.
  std::string ranked_by;
  std::vector<std::string> tied_with;
};

struct Comparison {
  std::string title;
  Objective objective;
  std::vector<RankedCandidate> ranked;  // best first: feasible by objective, then closest
  std::string recommendation;           // one paragraph for people
  std::vector<std::string> ties;        // "`a` and `b` tie on batch-1 latency (intervals overlap), ranked by accuracy."
};

Comparison rank_candidates(const std::string& title, const Objective& objective,
                           std::vector<CandidateResult> results);

std::string comparison_table(const Comparison& comparison);
std::string comparison_markdown(const Comparison& comparison);
std::string comparison_csv(const Comparison& comparison);
nlohmann::json comparison_json(const Comparison& comparison);
// A self-contained page: the table and SVG scatter plots (accuracy vs
// latency, accuracy vs size) with the Pareto fronts highlighted.
std::string comparison_html(const Comparison& comparison);

// Writes comparison.{md,csv,json,html} into `dir` atomically.
void write_comparison(const std::string& dir, const Comparison& comparison);

}  // namespace mcompress
