// How the daemon's services answer what the engine reports.
#include "tools/nodehost/service.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace flotilla::nodehost
