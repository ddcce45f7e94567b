// Ranking by measured values: overlapping intervals tie on a criterion and
// the next criterion decides; the notes say where that happened.
#include "mcompress/framework/support/ranking_with_ties.h"

#include <gtest/gtest.h>

#include <cmath>

#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

const std::vector<RankingCriterion> kLatencyThenAccuracy{{"batch-1 latency", true}, {"accuracy", false}};

MeasuredItem item(double latency, double low, double high, double accuracy) {
  return {Measurement::within(latency, low, high), Measurement::exact(accuracy)};
}

std::vector<size_t> order_of(const TiedRanking& ranking) {
  std::vector<size_t> order;
  for (const auto& place : ranking.places) order.push_back(place.item);
  return order;
}

TEST(RankingWithTies, SeparateIntervalsRankByTheFirstCriterion) {
  const auto ranking = rank_with_ties({item(2.0, 1.9, 2.1, 0.9), item(1.0, 0.9, 1.1, 0.8)}, kLatencyThenAccuracy);
  EXPECT_EQ(order_of(ranking), (std::vector<size_t>{1, 0}));
  EXPECT_EQ(ranking.places[0].decided_by, 0u);
  EXPECT_TRUE(ranking.places[0].tied_with.empty());
  EXPECT_TRUE(tie_notes(ranking, {"slow", "fast"}, kLatencyThenAccuracy).empty());
}

TEST(RankingWithTies, OverlappingLatenciesTieAndAccuracyRanksThem) {
  // Same architecture: 0.075 and 0.080 ms are noise; the second is more accurate.
  const auto ranking =
      rank_with_ties({item(0.075, 0.070, 0.082, 0.860), item(0.080, 0.074, 0.086, 0.867)}, kLatencyThenAccuracy);
  EXPECT_EQ(order_of(ranking), (std::vector<size_t>{1, 0}));
  EXPECT_EQ(ranking.places[0].decided_by, 1u);
  EXPECT_EQ(ranking.places[0].tied_with, (std::vector<size_t>{0}));
  EXPECT_EQ(tie_notes(ranking, {"a", "b"}, kLatencyThenAccuracy),
            (std::vector<std::string>{"`b` and `a` tie on batch-1 latency (intervals overlap), ranked by accuracy."}));
}

TEST(RankingWithTies, NothingRanksAboveWhatClearlyBeatsItOnTheFirstCriterion) {
  // b overlaps a and c, but c is clearly slower than a: c ranks after a even
  // though it is the most accurate, and only a and b tied for first place.
  const std::vector<MeasuredItem> items{item(1.0, 0.95, 1.05, 0.80), item(1.1, 1.0, 1.2, 0.85),
                                        item(1.25, 1.2, 1.3, 0.90)};
  const auto ranking = rank_with_ties(items, kLatencyThenAccuracy);
  EXPECT_EQ(order_of(ranking), (std::vector<size_t>{1, 0, 2}));
  EXPECT_EQ(tie_notes(ranking, {"a", "b", "c"}, kLatencyThenAccuracy),
            (std::vector<std::string>{"`b` and `a` tie on batch-1 latency (intervals overlap), ranked by accuracy."}));
}

TEST(RankingWithTies, AClearlyBetterItemWinsOutrightAndTheRestTie) {
  const std::vector<MeasuredItem> items{item(0.9, 0.8, 1.0, 0.80), item(0.95, 0.85, 1.05, 0.85),
                                        item(0.5, 0.49, 0.51, 0.70)};
  const auto ranking = rank_with_ties(items, kLatencyThenAccuracy);
  EXPECT_EQ(order_of(ranking), (std::vector<size_t>{2, 1, 0}));
  EXPECT_EQ(ranking.places[0].decided_by, 0u);
  EXPECT_EQ(tie_notes(ranking, {"a", "b", "c"}, kLatencyThenAccuracy),
            (std::vector<std::string>{"`b` and `a` tie on batch-1 latency (intervals overlap), ranked by accuracy."}));
}

TEST(RankingWithTies, WhenEveryCriterionTiesTheFirstCriterionsValueThenTheInputOrderDecide) {
  const std::vector<MeasuredItem> items{item(1.0, 0.9, 1.1, 0.8), item(0.98, 0.9, 1.1, 0.8), item(0.98, 0.9, 1.1, 0.8)};
  const auto ranking = rank_with_ties(items, kLatencyThenAccuracy);
  EXPECT_EQ(order_of(ranking), (std::vector<size_t>{1, 2, 0}));
  EXPECT_EQ(ranking.places[0].decided_by, 2u);
  const auto notes = tie_notes(ranking, {"a", "b", "c"}, kLatencyThenAccuracy);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0],
            "`b`, `c` and `a` tie on batch-1 latency (intervals overlap), ranked by the measured batch-1 latency "
            "itself, as they tie on every criterion.");
}

TEST(RankingWithTies, UnmeasuredValuesRankAfterMeasuredOnes) {
  const std::vector<MeasuredItem> items{{std::nullopt, Measurement::exact(0.99)}, item(3.0, 2.0, 4.0, 0.5)};
  EXPECT_EQ(order_of(rank_with_ties(items, kLatencyThenAccuracy)), (std::vector<size_t>{1, 0}));
  // Not measured on the second criterion: a tie on the first goes to the measured one.
  const std::vector<MeasuredItem> second{{Measurement::within(1.0, 0.9, 1.1), std::nullopt},
                                         item(1.05, 0.95, 1.15, 0.5)};
  EXPECT_EQ(order_of(rank_with_ties(second, kLatencyThenAccuracy)), (std::vector<size_t>{1, 0}));
}

TEST(RankingWithTies, HigherIsBetterCriteriaTieTheSameWay) {
  const std::vector<RankingCriterion> criteria{{"held-out accuracy", false}, {"batch-1 latency", true}};
  const std::vector<MeasuredItem> items{{Measurement::within(0.80, 0.75, 0.85), Measurement::within(1.0, 0.95, 1.05)},
                                        {Measurement::within(0.78, 0.73, 0.83), Measurement::within(0.6, 0.58, 0.62)},
                                        {Measurement::within(0.50, 0.45, 0.55), Measurement::within(0.1, 0.09, 0.11)}};
  const auto ranking = rank_with_ties(items, criteria);
  EXPECT_EQ(order_of(ranking), (std::vector<size_t>{1, 0, 2}));
  EXPECT_EQ(tie_notes(ranking, {"magnitude", "gradient", "activation"}, criteria),
            (std::vector<std::string>{
                "`gradient` and `magnitude` tie on held-out accuracy (intervals overlap), ranked by batch-1 latency."}));
}

TEST(RankingWithTies, BadInputIsRefusedWithAClearError) {
  EXPECT_THROW(Measurement::within(2.0, 3.0, 4.0), Error);
  EXPECT_THROW(Measurement::within(std::nan(""), 0.0, 1.0), Error);
  EXPECT_THROW(rank_with_ties({{Measurement::exact(1.0)}}, kLatencyThenAccuracy), Error);
  EXPECT_THROW(rank_with_ties({}, {}), Error);
  EXPECT_TRUE(rank_with_ties({}, kLatencyThenAccuracy).places.empty());
  EXPECT_TRUE(overlaps(Measurement::within(1, 0, 2), Measurement::within(2.5, 2, 3)));  // touching ends
  EXPECT_FALSE(overlaps(Measurement::within(1, 0, 1.9), Measurement::within(2.5, 2, 3)));
}

}  // namespace
}  // namespace mcompress
