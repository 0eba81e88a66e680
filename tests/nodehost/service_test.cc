// How the daemon's services answer what the engine reports.
#include "tools/nodehost/service.h"

#include <gtest/gtest.h>

#include "tools/nodehost/bench.h"

namespace flotilla::nodehost {
namespace {

// kDropped means the proposal never reached the log (no leader, the leader
// changed, a bound of the shard), so the write may be resent: answering it
// as of unknown outcome made clients give up on writes that were never
// applied. A timeout or a stopping replica may have applied it.
TEST(Service, OnlyWhatWasNeverAppliedIsMarkedRetrySafe) {
  EXPECT_TRUE(RetrySafe(RequestCode::kDropped));
  EXPECT_FALSE(RetrySafe(RequestCode::kCompleted));
  EXPECT_FALSE(RetrySafe(RequestCode::kTimeout));
  EXPECT_FALSE(RetrySafe(RequestCode::kTerminated));
  EXPECT_FALSE(RetrySafe(RequestCode::kAppliedResultUnknown));
  // Resending a refused request would only be refused again.
  EXPECT_FALSE(RetrySafe(RequestCode::kRejected));
}

// The load tool's percentiles are within 1/32 of the true value and never
// above it.
TEST(Bench, LatencyPercentilesAreWithinTheBucketWidth) {
  for (uint64_t v : {0ull, 1ull, 63ull, 64ull, 65ull, 1000ull, 123456ull, 1ull << 40}) {
    const size_t i = LatencyHistogram::Index(v);
    ASSERT_LT(i, LatencyHistogram::kBuckets);
    EXPECT_LE(LatencyHistogram::LowerBound(i), v);
    EXPECT_GE(LatencyHistogram::LowerBound(i) + LatencyHistogram::LowerBound(i) / 32 + 1, v);
    EXPECT_EQ(LatencyHistogram::Index(LatencyHistogram::LowerBound(i)), i);
  }
  LatencyHistogram h;
  for (uint64_t v = 1; v <= 1000; ++v) h.Add(v * 10);  // 10 us .. 10 ms
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_NEAR(static_cast<double>(h.Percentile(0.5)), 5000, 5000 / 32.0 + 10);
  EXPECT_NEAR(static_cast<double>(h.Percentile(0.99)), 9900, 9900 / 32.0 + 10);
  EXPECT_EQ(LatencyHistogram().Percentile(0.5), 0u);
}

}  // namespace
}  // namespace flotilla::nodehost
