// The fault hooks of the in-memory LogDB that the simulator relies on.
#include <gtest/gtest.h>

#include "logdb/memory_logdb.h"
#include "tests/logdb/test_util.h"

namespace flotilla::logdb {
namespace {

using testing::MakeEntries;

TEST(MemoryLogDBFaults, FailedWritePoisonsUntilRestart) {
  auto db = NewMemoryLogDB();
  const auto a = MakeEntries(1, 3, 1);
  const auto b = MakeEntries(4, 6, 1);
  ASSERT_TRUE(db->Save({{1, 1, a, raft::HardState{1, 1, 0}, {}}}).ok());
  for (Status fault : {Status::IOError("fsync failed"), Status::NoSpace("disk full")}) {
    db->FailNextWrite(fault);
    Status s = db->Save({{1, 1, b, {}, {}}});
    EXPECT_EQ(s.code(), fault.code());
    // Later writes of any kind keep failing with the same code: a failed
    // fsync is never retried as if nothing had happened.
    EXPECT_EQ(db->Save({{1, 1, b, {}, {}}}).code(), fault.code());
    EXPECT_EQ(db->SaveBootstrap(1, 1, Bootstrap{}).code(), fault.code());
    EXPECT_EQ(db->CompactTo(1, 1, 1).code(), fault.code());
    // Reads still work, and the failed Save left nothing behind.
    EXPECT_EQ(db->ReadState(1, 1).value().last_index, 3u);
    db->Restart();
  }
  ASSERT_TRUE(db->Save({{1, 1, b, {}, {}}}).ok());
  EXPECT_EQ(db->ReadState(1, 1).value().last_index, 6u);
}

TEST(MemoryLogDBFaults, DropLastWriteUndoesTheWholeSave) {
  auto db = NewMemoryLogDB();
  const auto a = MakeEntries(1, 5, 1);
  ASSERT_TRUE(db->Save({{1, 1, a, raft::HardState{1, 1, 0}, {}}, {2, 1, a, {}, {}}}).ok());
  // A Save that truncates, replaces, writes two replicas and a hard state.
  const auto b = MakeEntries(3, 3, 2);
  ASSERT_TRUE(db->Save({{1, 1, b, raft::HardState{2, 0, 0}, {}}, {3, 1, a, {}, {}}}).ok());
  EXPECT_EQ(db->ReadState(1, 1).value().last_index, 3u);
  ASSERT_TRUE(db->DropLastWrite());
  EXPECT_FALSE(db->DropLastWrite());  // one level only
  auto st = db->ReadState(1, 1).value();
  EXPECT_EQ(st.last_index, 5u);
  EXPECT_EQ(st.hard_state, (raft::HardState{1, 1, 0}));
  std::vector<raft::Entry> out;
  ASSERT_TRUE(db->Entries(1, 1, 1, 6, UINT64_MAX, &out).ok());
  EXPECT_EQ(out, a);
  EXPECT_EQ(db->ListReplicas().value(), (std::vector<ReplicaKey>{{1, 1}, {2, 1}}));
}

TEST(MemoryLogDBFaults, FlippedEntryBitIsReportedOnRead) {
  auto db = NewMemoryLogDB();
  ASSERT_TRUE(db->Save({{5, 6, MakeEntries(1, 3, 1), {}, {}}}).ok());
  EXPECT_FALSE(db->FlipEntryBit(5, 6, 4, 0));
  ASSERT_TRUE(db->FlipEntryBit(5, 6, 2, 100));
  std::vector<raft::Entry> out;
  Status s = db->Entries(5, 6, 1, 4, UINT64_MAX, &out);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_EQ(s.message(), "shard 5 replica 6 index 2: entry checksum mismatch");
  EXPECT_EQ(db->Term(5, 6, 2).status().code(), StatusCode::kCorruption);
}

}  // namespace
}  // namespace flotilla::logdb
