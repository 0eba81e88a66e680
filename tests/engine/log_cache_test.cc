// The replica's log cache over a real (in-memory) LogDB: entries released
// from memory are still read, from the LogDB, and the cache never holds
// entries no one needs.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/log_cache.h"
#include "logdb/memory_logdb.h"

namespace flotilla::engine {
namespace {

std::vector<raft::Entry> MakeEntries(raft::Index lo, raft::Index hi, raft::Term term) {
  std::vector<raft::Entry> out;
  for (raft::Index i = lo; i <= hi; ++i) {
    raft::Entry e;
    e.index = i;
    e.term = term;
    e.cmd = "entry-" + std::to_string(i) + std::string(i % 40, '.');  // short and long
    out.push_back(std::move(e));
  }
  return out;
}

class LogCacheTest : public ::testing::Test {
 protected:
  void SetUp() override { db_ = logdb::NewMemoryLogDB(); }

  // Saves [lo, hi] and hands them to the cache, as a step worker's pass does.
  void SaveAndAppend(LogCache* cache, raft::Index lo, raft::Index hi, raft::Term term) {
    std::vector<raft::Entry> entries = MakeEntries(lo, hi, term);
    logdb::ReplicaUpdate u;
    u.shard_id = 1;
    u.replica_id = 2;
    u.entries = entries;
    ASSERT_TRUE(db_->Save({u}).ok());
    cache->Append(std::move(entries));
  }

  std::unique_ptr<logdb::MemoryLogDB> db_;
};

TEST_F(LogCacheTest, ReleasedEntriesAreReadFromTheLogDB) {
  LogCache cache(db_.get(), 1, 2, logdb::ReplicaState{}, 1 << 20);
  SaveAndAppend(&cache, 1, 100, 3);
  EXPECT_EQ(cache.cache_first(), 1u);
  const uint64_t all = cache.cached_bytes();
  cache.Release(61);
  EXPECT_EQ(cache.cache_first(), 61u);
  EXPECT_LT(cache.cached_bytes(), all);
  // Releasing less than before changes nothing.
  cache.Release(10);
  EXPECT_EQ(cache.cache_first(), 61u);
  // Reads across the boundary return every entry, byte for byte.
  std::vector<raft::Entry> got;
  ASSERT_EQ(cache.Entries(1, 101, UINT64_MAX, &got), raft::LogStatus::kOk);
  EXPECT_EQ(got, MakeEntries(1, 100, 3));
  raft::Term t = 0;
  ASSERT_EQ(cache.TermAt(30, &t), raft::LogStatus::kOk);  // from the LogDB
  EXPECT_EQ(t, 3u);
  ASSERT_EQ(cache.TermAt(90, &t), raft::LogStatus::kOk);
  EXPECT_EQ(t, 3u);
  EXPECT_EQ(cache.FirstIndex(), 1u);  // releasing is not compacting
  EXPECT_EQ(cache.LastIndex(), 100u);
}

TEST_F(LogCacheTest, TheLastEntryStaysAndNewEntriesFollowIt) {
  LogCache cache(db_.get(), 1, 2, logdb::ReplicaState{}, 1 << 20);
  SaveAndAppend(&cache, 1, 10, 1);
  cache.Release(1000);
  EXPECT_EQ(cache.cache_first(), 10u);  // its term is always at hand
  raft::Term t = 0;
  ASSERT_EQ(cache.TermAt(10, &t), raft::LogStatus::kOk);
  EXPECT_EQ(t, 1u);
  // A new leader overwrites from 8 on: the released 8 and 9 are replaced in
  // the LogDB, and the cache starts again at 8.
  SaveAndAppend(&cache, 8, 12, 2);
  std::vector<raft::Entry> got;
  ASSERT_EQ(cache.Entries(1, 13, UINT64_MAX, &got), raft::LogStatus::kOk);
  std::vector<raft::Entry> want = MakeEntries(1, 7, 1);
  for (raft::Entry& e : MakeEntries(8, 12, 2)) want.push_back(std::move(e));
  EXPECT_EQ(got, want);
  EXPECT_EQ(cache.cache_first(), 8u);
}

}  // namespace
}  // namespace flotilla::engine
