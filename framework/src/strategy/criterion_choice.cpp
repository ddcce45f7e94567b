#include "strategy/criterion_choice.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "mcompress/framework/probes/latency_timing.h"
#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

constexpr double kZ95 = 1.959964;

std::string percent_with_interval(const Measurement& m) {
  return fmt::format("{:.2f}% [{:.2f}–{:.2f}]", m.value * 100, m.low * 100, m.high * 100);
}

// "magnitude_prune 86.10% [83.21–88.60], 0.210 [0.205–0.215] ms" for each criterion.
std::string measured_list(const std::vector<ProbedCriterion>& probed, const std::vector<size_t>& order) {
  std::vector<std::string> parts;
  for (size_t i : order) {
    const auto& p = probed[i];
    std::string part = fmt::format("{} {}", p.pass, percent_with_interval(fraction_interval(p.score, p.samples)));
    if (p.latency_ms) part += ", " + latency_with_spread(p.latency_ms->value, p.latency_ms->low, p.latency_ms->high) + " ms";
    parts.push_back(part);
  }
  return fmt::format("{}", fmt::join(parts, "; "));
}

}  // namespace

Measurement fraction_interval(double fraction, int64_t samples) {
  if (samples <= 0) return Measurement::within(fraction, std::min(0.0, fraction), std::max(1.0, fraction));
  const double n = double(samples), z2 = kZ95 * kZ95;
  const double denominator = 1.0 + z2 / n;
  const double center = (fraction + z2 / (2 * n)) / denominator;
  const double half = kZ95 * std::sqrt(std::max(0.0, fraction * (1 - fraction) / n + z2 / (4 * n * n))) / denominator;
  // Rounding must not push the ends past the fraction or outside 0..1.
  const double low = std::min(fraction, std::max(0.0, center - half));
  const double high = std::max(fraction, std::min(1.0, center + half));
  return Measurement::within(fraction, low, high);
}

CriterionChoice choose_criterion(const std::vector<ProbedCriterion>& probed, const std::string& score_label) {
  if (probed.empty()) throw Error("no probed pruning criterion to choose from");
  const std::vector<RankingCriterion> criteria{{score_label, false}, {"batch-1 latency", true}};
  std::vector<MeasuredItem> items;
  std::vector<std::string> names;
  for (const auto& p : probed) {
    items.push_back({fraction_interval(p.score, p.samples), p.latency_ms});
    names.push_back(p.pass);
  }
  const TiedRanking ranking = rank_with_ties(items, criteria);
  std::vector<size_t> order;
  for (const auto& place : ranking.places) order.push_back(place.item);
  const auto& first = ranking.places.front();
  CriterionChoice choice;
  choice.chosen = first.item;
  choice.ties = tie_notes(ranking, names, criteria);
  const auto& best = probed[first.item];
  const int64_t samples = best.samples;
  const std::string measured = fmt::format("after pruning without fine-tuning, on {} samples, 95% intervals; "
                                           "batch-1 latency with its interquartile range: {}",
                                           samples, measured_list(probed, order));
  if (first.tied_with.empty()) {
    choice.why = fmt::format("{} had the highest {} ({})", best.pass, score_label, measured);
  } else if (first.decided_by < criteria.size()) {
    std::vector<std::string> others;
    for (size_t i : first.tied_with) others.push_back(probed[i].pass);
    choice.why = fmt::format("{} ties with {} on {} (95% intervals overlap), ranked by batch-1 latency: its "
                             "pruned copy is faster ({})",
                             best.pass, fmt::join(others, ", "), score_label, measured);
  } else {
    std::vector<std::string> others;
    for (size_t i : first.tied_with) others.push_back(probed[i].pass);
    choice.why = fmt::format("{} had the highest {}; {} tied with it within the measured spread on {} and on "
                             "batch-1 latency, so the higher value decided ({})",
                             best.pass, score_label, fmt::join(others, ", "), score_label, measured);
  }
  return choice;
}

}  // namespace mcompress
