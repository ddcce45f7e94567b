#include "mcompress/framework/support/ranking_with_ties.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

// The candidates that no other candidate beats clearly on criterion `k`.
// Lower is better: j beats i clearly when j's whole interval lies below i's,
// so i stays unless its low end is above the smallest high end. Unmeasured
// candidates stay only when none is measured.
std::vector<size_t> not_clearly_beaten(const std::vector<MeasuredItem>& items, const std::vector<size_t>& candidates,
                                       size_t k, bool lower_is_better) {
  std::optional<double> bound;  // lower is better: the smallest high end; else the largest low end
  for (size_t i : candidates) {
    const auto& m = items[i][k];
    if (!m) continue;
    bound = lower_is_better ? std::min(bound.value_or(m->high), m->high) : std::max(bound.value_or(m->low), m->low);
  }
  std::vector<size_t> kept;
  for (size_t i : candidates) {
    const auto& m = items[i][k];
    if (!bound ? true : m && (lower_is_better ? m->low <= *bound : m->high >= *bound)) kept.push_back(i);
  }
  return kept;
}

// Among tied candidates: the better value of the first criterion, then the
// earlier item.
size_t best_by_value(const std::vector<MeasuredItem>& items, const std::vector<size_t>& pool, bool lower_is_better) {
  return *std::min_element(pool.begin(), pool.end(), [&](size_t a, size_t b) {
    const auto &ma = items[a][0], &mb = items[b][0];
    if (ma.has_value() != mb.has_value()) return ma.has_value();
    if (ma && ma->value != mb->value) return lower_is_better ? ma->value < mb->value : ma->value > mb->value;
    return a < b;
  });
}

std::string quoted_list(const std::vector<std::string>& names) {
  std::vector<std::string> quoted;
  for (const auto& name : names) quoted.push_back("`" + name + "`");
  if (quoted.size() < 2) return quoted.empty() ? "" : quoted.front();
  const std::string last = quoted.back();
  quoted.pop_back();
  return fmt::format("{} and {}", fmt::join(quoted, ", "), last);
}

}  // namespace

Measurement Measurement::within(double value, double low, double high) {
  if (!std::isfinite(value) || !std::isfinite(low) || !std::isfinite(high) || low > value || value > high) {
    throw Error(fmt::format("a measured value needs low <= value <= high, got {} within [{}, {}]", value, low, high));
  }
  return {value, low, high};
}

bool overlaps(const Measurement& a, const Measurement& b) { return a.low <= b.high && b.low <= a.high; }

TiedRanking rank_with_ties(const std::vector<MeasuredItem>& items, const std::vector<RankingCriterion>& criteria) {
  if (criteria.empty()) throw Error("ranking needs at least one criterion");
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].size() != criteria.size()) {
      throw Error(fmt::format("item {} has {} measurements for {} ranking criteria", i, items[i].size(),
                              criteria.size()));
    }
  }
  std::vector<size_t> remaining(items.size());
  for (size_t i = 0; i < items.size(); ++i) remaining[i] = i;
  TiedRanking ranking;
  while (!remaining.empty()) {
    const auto first_tie = not_clearly_beaten(items, remaining, 0, criteria[0].lower_is_better);
    auto pool = first_tie;
    size_t decided_by = 0;
    while (pool.size() > 1 && ++decided_by < criteria.size()) {
      pool = not_clearly_beaten(items, pool, decided_by, criteria[decided_by].lower_is_better);
    }
    TiedRanking::Place place;
    place.item = pool.size() == 1 ? pool.front() : best_by_value(items, pool, criteria[0].lower_is_better);
    place.decided_by = decided_by;
    for (size_t i : first_tie) {
      if (i != place.item) place.tied_with.push_back(i);
    }
    ranking.places.push_back(place);
    remaining.erase(std::find(remaining.begin(), remaining.end(), place.item));
  }
  return ranking;
}

std::vector<std::string> tie_notes(const TiedRanking& ranking, const std::vector<std::string>& names,
                                   const std::vector<RankingCriterion>& criteria) {
  std::map<size_t, size_t> position;  // item -> its place
  for (size_t p = 0; p < ranking.places.size(); ++p) position[ranking.places[p].item] = p;
  const auto decider = [&](size_t k) {
    return k < criteria.size()
               ? criteria[k].label
               : fmt::format("the measured {} itself, as they tie on every criterion", criteria.front().label);
  };
  std::vector<std::string> notes;
  std::vector<size_t> group;  // items of the current tie group
  std::vector<std::string> deciders;
  const auto flush = [&] {
    if (group.size() > 1) {
      std::sort(group.begin(), group.end(), [&](size_t a, size_t b) { return position[a] < position[b]; });
      std::vector<std::string> members;
      for (size_t i : group) members.push_back(names.at(i));
      notes.push_back(fmt::format("{} tie on {} (intervals overlap), ranked by {}.", quoted_list(members),
                                  criteria.front().label, fmt::join(deciders, ", then ")));
    }
    group.clear();
    deciders.clear();
  };
  const auto in_group = [&](size_t item) { return std::find(group.begin(), group.end(), item) != group.end(); };
  for (const auto& place : ranking.places) {
    if (!in_group(place.item)) flush();
    if (place.tied_with.empty()) continue;
    if (group.empty()) group.push_back(place.item);
    for (size_t i : place.tied_with) {
      if (!in_group(i)) group.push_back(i);
    }
    const auto how = decider(place.decided_by);
    if (std::find(deciders.begin(), deciders.end(), how) == deciders.end()) deciders.push_back(how);
  }
  flush();
  return notes;
}

}  // namespace mcompress
