#pragma once
// Ranking by criteria that are measured, not known: each value comes with the
// interval it was measured within (a latency's interquartile range, an
// accuracy's confidence interval). Two values whose intervals overlap are a
// tie on that criterion, and the next criterion decides; this keeps a
// ranking from ordering same-architecture models by timing noise. Torch-free.
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace mcompress {

// A measured value and its interval (low <= value <= high); a value measured
// without a spread is its own interval.
struct Measurement {
  double value = 0.0;
  double low = 0.0;
  double high = 0.0;

  static Measurement exact(double value) { return {value, value, value}; }
  // Throws mcompress::Error unless low <= value <= high (all finite).
  static Measurement within(double value, double low, double high);
};

bool overlaps(const Measurement& a, const Measurement& b);

struct RankingCriterion {
  std::string label;  // how reports name it: "batch-1 latency", "accuracy"
  bool lower_is_better = false;
};

// One thing to rank: its measurement for every criterion, in the criteria's
// order; nullopt where it was not measured (ranked after every measured one).
using MeasuredItem = std::vector<std::optional<Measurement>>;

// The ranking, best first. At each position the best remaining item is chosen
// among those that no other remaining item beats clearly (non-overlapping
// intervals) on the first criterion; if several remain, the next criterion
// narrows them the same way, and so on; when every criterion ties, the better
// value of the first criterion and then the input order decide. So an item is
// never ranked above one that clearly beats it on the first criterion.
struct TiedRanking {
  struct Place {
    size_t item = 0;        // index into the items
    size_t decided_by = 0;  // the criterion that singled it out; criteria.size(): every criterion tied
    std::vector<size_t> tied_with;  // items it tied with on the first criterion (none when it won it outright)
  };
  std::vector<Place> places;
};

// Throws mcompress::Error when an item has not one entry per criterion or
// there are no criteria.
TiedRanking rank_with_ties(const std::vector<MeasuredItem>& items, const std::vector<RankingCriterion>& criteria);

// One sentence per group of items that tied on the first criterion, e.g.
// "`a` and `b` tie on batch-1 latency (intervals overlap), ranked by accuracy."
// `names` are the items' names, in the items' order.
std::vector<std::string> tie_notes(const TiedRanking& ranking, const std::vector<std::string>& names,
                                   const std::vector<RankingCriterion>& criteria);

}  // namespace mcompress
