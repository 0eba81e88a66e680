// The LogDB contract, run against every implementation.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "logdb/format.h"
#include "logdb/kv_logdb.h"
#include "logdb/logdb.h"
#include "logdb/memory_logdb.h"
#include "logdb/rocks_logdb.h"
#include "tests/logdb/test_util.h"

namespace flotilla::logdb {
namespace {

using raft::Entry;
using raft::HardState;
using raft::SnapshotMeta;
using testing::MakeEntries;

SnapshotMeta Snap(raft::Index index, raft::Term term) {
  SnapshotMeta m;
  m.index = index;
  m.term = term;
  return m;
}

Bootstrap MakeBootstrap(std::map<raft::ReplicaId, std::string> members, bool join, uint8_t kind) {
  Bootstrap b;
  b.members = std::move(members);
  b.join = join;
  b.state_machine_kind = kind;
  return b;
}

// Creates and "restarts" one kind of LogDB.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual LogDB* db() = 0;
  // Closes and reopens the same data, as a process restart would.
  virtual void Reopen() = 0;
};

class MemoryBackend final : public Backend {
 public:
  MemoryBackend() : db_(NewMemoryLogDB()) {}
  LogDB* db() override { return db_.get(); }
  void Reopen() override { db_->Restart(); }

 private:
  std::unique_ptr<MemoryLogDB> db_;
};

class RocksBackend final : public Backend {
 public:
  explicit RocksBackend(bool separate_wal) : separate_wal_(separate_wal) { Reopen(); }
  LogDB* db() override { return db_.get(); }
  void Reopen() override {
    db_.reset();
    RocksOptions o;
    o.dir = dir_.path() + "/db";
    if (separate_wal_) o.wal_dir = dir_.path() + "/wal";
    auto r = OpenRocksLogDB(o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    db_ = std::move(r).value();
  }

 private:
  testing::TempDir dir_;
  const bool separate_wal_;
  std::unique_ptr<LogDB> db_;
};

class LogDBConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "memory") {
      backend_ = std::make_unique<MemoryBackend>();
    } else {
      backend_ = std::make_unique<RocksBackend>(GetParam() == "rocksdb_wal_dir");
    }
  }
  LogDB* db() { return backend_->db(); }

  Status SaveOne(raft::ShardId s, raft::ReplicaId r, const std::vector<Entry>& entries,
                 std::optional<HardState> hs = std::nullopt,
                 std::optional<SnapshotMeta> snap = std::nullopt) {
    return db()->Save({ReplicaUpdate{s, r, entries, hs, snap}});
  }

  std::vector<Entry> Read(raft::ShardId s, raft::ReplicaId r, raft::Index lo, raft::Index hi,
                          uint64_t max_bytes = UINT64_MAX) {
    std::vector<Entry> out;
    Status st = db()->Entries(s, r, lo, hi, max_bytes, &out);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return out;
  }

  // The replica holds no entries; its log ends at `last` of term `term`.
  void ExpectNoEntries(raft::ShardId s, raft::ReplicaId r, raft::Index last, raft::Term term) {
    auto st = db()->ReadState(s, r);
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->first_index, last + 1);
    EXPECT_EQ(st->last_index, last);
    EXPECT_EQ(st->prev_term, term);
  }

  // Where entry `i` is stored: its batch key and the bit range of its record.
  struct Location {
    std::string key;
    size_t first_bit = 0;
    size_t bits = 0;
  };
  Location Locate(raft::ShardId s, raft::ReplicaId r, raft::Index i) {
    auto* kv = dynamic_cast<KvLogDB*>(db());
    Location loc;
    size_t offset = 0;
    size_t size = 0;
    EXPECT_NE(kv, nullptr);
    EXPECT_TRUE(kv->LocateEntryForTesting(s, r, i, &loc.key, &offset, &size).ok());
    loc.first_bit = offset * 8;
    loc.bits = size * 8;
    return loc;
  }

  // Flips one bit of an entry's record through the raw store: works for
  // every KvLogDB, whatever holds the bytes.
  void FlipBit(const Location& loc, size_t bit) {
    auto* kv = dynamic_cast<KvLogDB*>(db());
    ASSERT_NE(kv, nullptr);
    std::string value;
    ASSERT_TRUE(kv->store_for_testing()->Get(loc.key, &value).ok());
    const size_t at = loc.first_bit + bit % loc.bits;
    value[at / 8] = static_cast<char>(value[at / 8] ^ (1 << (at % 8)));
    auto batch = kv->store_for_testing()->NewBatch();
    batch->Put(loc.key, value);
    ASSERT_TRUE(kv->store_for_testing()->Write(batch.get(), true).ok());
  }

  std::unique_ptr<Backend> backend_;
};

TEST_P(LogDBConformance, UnknownReplicaHasEmptyState) {
  auto st = db()->ReadState(1, 1);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, ReplicaState());
  EXPECT_FALSE(st->bootstrap.has_value());
  auto list = db()->ListReplicas();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

TEST_P(LogDBConformance, SavedEntriesAndHardStateReadBack) {
  const auto entries = MakeEntries(1, 10, 3);
  ASSERT_TRUE(SaveOne(1, 2, entries, HardState{3, 2, 7}).ok());
  EXPECT_EQ(Read(1, 2, 1, 11), entries);
  EXPECT_EQ(Read(1, 2, 4, 6), std::vector<Entry>(entries.begin() + 3, entries.begin() + 5));
  auto st = db()->ReadState(1, 2);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->hard_state, (HardState{3, 2, 7}));
  EXPECT_EQ(st->first_index, 1u);
  EXPECT_EQ(st->last_index, 10u);
  EXPECT_EQ(st->prev_term, 0u);
  auto t = db()->Term(1, 2, 5);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, 3u);
  backend_->Reopen();
  EXPECT_EQ(Read(1, 2, 1, 11), entries);
  EXPECT_EQ(db()->ReadState(1, 2)->hard_state, (HardState{3, 2, 7}));
}

TEST_P(LogDBConformance, EveryEntryFieldRoundTrips) {
  std::vector<Entry> entries(3);
  entries[0] = {.term = 1,
                .index = 1,
                .type = raft::EntryType::kConfChange,
                .key = UINT64_MAX,
                .client_id = 1ULL << 63,
                .series_id = 42,
                .responded_to = 41,
                .cmd = "conf"};
  entries[1] = {.term = 1, .index = 2, .type = raft::EntryType::kMetadata, .cmd = ""};
  std::string big(100000, '\0');
  big[500] = '\xff';
  entries[2] = {.term = 2, .index = 3, .type = raft::EntryType::kNormal, .cmd = std::move(big)};
  ASSERT_TRUE(SaveOne(9, 9, entries).ok());
  EXPECT_EQ(Read(9, 9, 1, 4), entries);
}

TEST_P(LogDBConformance, ByteBudgetReturnsAtLeastOneEntry) {
  const auto entries = MakeEntries(1, 10, 1, 36);  // 100 accounted bytes each
  ASSERT_EQ(entries[0].SizeBytes(), 100u);
  ASSERT_TRUE(SaveOne(1, 1, entries).ok());
  EXPECT_EQ(Read(1, 1, 1, 11, 0).size(), 1u);
  EXPECT_EQ(Read(1, 1, 1, 11, 99).size(), 1u);
  EXPECT_EQ(Read(1, 1, 1, 11, 100).size(), 1u);
  EXPECT_EQ(Read(1, 1, 1, 11, 299).size(), 2u);
  EXPECT_EQ(Read(1, 1, 1, 11, 300).size(), 3u);
  EXPECT_EQ(Read(1, 1, 3, 11, 1000).size(), 8u);
}

TEST_P(LogDBConformance, ReadsOutsideTheLogAreErrors) {
  ASSERT_TRUE(SaveOne(1, 1, MakeEntries(1, 5, 1)).ok());
  std::vector<Entry> out;
  EXPECT_EQ(db()->Entries(1, 1, 3, 7, UINT64_MAX, &out).code(), StatusCode::kNotFound);
  EXPECT_EQ(db()->Entries(1, 1, 2, 1, UINT64_MAX, &out).code(), StatusCode::kInvalidArgument);
  out.clear();
  EXPECT_TRUE(db()->Entries(1, 1, 3, 3, UINT64_MAX, &out).ok());
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(db()->Term(1, 1, 6).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(db()->Entries(2, 1, 1, 2, UINT64_MAX, &out).code(), StatusCode::kNotFound);
  EXPECT_EQ(db()->Term(1, 1, 0).value(), 0u);
}

TEST_P(LogDBConformance, NewEntriesReplaceTheStoredSuffix) {
  ASSERT_TRUE(SaveOne(1, 1, MakeEntries(1, 10, 1)).ok());
  const auto replacement = MakeEntries(6, 7, 2);
  ASSERT_TRUE(SaveOne(1, 1, replacement).ok());
  auto expected = MakeEntries(1, 5, 1);
  expected.insert(expected.end(), replacement.begin(), replacement.end());
  EXPECT_EQ(Read(1, 1, 1, 8), expected);
  EXPECT_EQ(db()->ReadState(1, 1)->last_index, 7u);
  EXPECT_EQ(db()->Term(1, 1, 9).status().code(), StatusCode::kNotFound);
  backend_->Reopen();
  // The truncation holds after a restart, and a restarted LogDB (which has
  // no cached last index) truncates correctly too.
  EXPECT_EQ(db()->ReadState(1, 1)->last_index, 7u);
  ASSERT_TRUE(SaveOne(1, 1, MakeEntries(3, 3, 3)).ok());
  EXPECT_EQ(db()->ReadState(1, 1)->last_index, 3u);
  EXPECT_EQ(db()->Term(1, 1, 3).value(), 3u);
}

TEST_P(LogDBConformance, ReadsTruncationAndCompactionAcrossSaveBoundaries) {
  // Entries saved by separate Saves are stored as separate records; every
  // operation must work whatever the record boundaries are.
  for (auto [lo, hi] : {std::pair{1, 3}, {4, 4}, {5, 9}, {10, 12}}) {
    ASSERT_TRUE(SaveOne(1, 1, MakeEntries(lo, hi, 1, 36)).ok());
  }
  EXPECT_EQ(Read(1, 1, 2, 13), MakeEntries(2, 12, 1, 36));
  EXPECT_EQ(Read(1, 1, 3, 13, 350), MakeEntries(3, 5, 1, 36));  // 100 bytes each
  EXPECT_EQ(db()->Term(1, 1, 4).value(), 1u);
  // Overwrite from the middle of the third record: its head stays.
  ASSERT_TRUE(SaveOne(1, 1, MakeEntries(7, 8, 2, 36)).ok());
  auto expected = MakeEntries(1, 6, 1, 36);
  for (auto& e : MakeEntries(7, 8, 2, 36)) expected.push_back(e);
  EXPECT_EQ(Read(1, 1, 1, 9), expected);
  EXPECT_EQ(db()->ReadState(1, 1).value().last_index, 8u);
  // Overwrite exactly at a record boundary.
  ASSERT_TRUE(SaveOne(1, 1, MakeEntries(4, 4, 3, 36)).ok());
  EXPECT_EQ(db()->ReadState(1, 1).value().last_index, 4u);
  ASSERT_TRUE(SaveOne(1, 1, MakeEntries(5, 9, 3, 36)).ok());
  // Compact into the middle of a record, then at a boundary.
  ASSERT_TRUE(db()->CompactTo(1, 1, 6).ok());
  EXPECT_EQ(Read(1, 1, 7, 10), MakeEntries(7, 9, 3, 36));
  EXPECT_EQ(db()->ReadState(1, 1).value().first_index, 7u);
  EXPECT_EQ(db()->Term(1, 1, 6).value(), 3u);
  std::vector<Entry> out;
  EXPECT_EQ(db()->Entries(1, 1, 6, 8, UINT64_MAX, &out).code(), StatusCode::kDataLoss);
  backend_->Reopen();
  EXPECT_EQ(Read(1, 1, 7, 10), MakeEntries(7, 9, 3, 36));
  ASSERT_TRUE(SaveOne(1, 1, MakeEntries(8, 8, 4, 36)).ok());
  EXPECT_EQ(db()->ReadState(1, 1).value().last_index, 8u);
  EXPECT_EQ(db()->Term(1, 1, 7).value(), 3u);
  EXPECT_EQ(db()->Term(1, 1, 8).value(), 4u);
}

TEST_P(LogDBConformance, MalformedUpdatesAreRejectedWithoutPoisoning) {
  ASSERT_TRUE(SaveOne(1, 1, MakeEntries(1, 3, 1)).ok());
  auto holes = MakeEntries(4, 6, 1);
  holes.erase(holes.begin() + 1);
  EXPECT_EQ(SaveOne(1, 1, holes).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SaveOne(1, 1, MakeEntries(0, 1, 1)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SaveOne(1, 1, MakeEntries(6, 7, 1)).code(), StatusCode::kInvalidArgument);  // a gap
  EXPECT_EQ(SaveOne(1, 1, MakeEntries(5, 6, 1), std::nullopt, Snap(7, 1)).code(),
            StatusCode::kInvalidArgument);
  // Nothing of a rejected Save is written, even when other updates were fine.
  std::vector<Entry> good = MakeEntries(1, 1, 1);
  EXPECT_EQ(db()->Save({{2, 2, good, HardState{1, 0, 0}, {}}, {1, 1, holes, {}, {}}}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE(db()->ReadState(2, 2)->hard_state.term != 0);
  EXPECT_TRUE(SaveOne(1, 1, MakeEntries(4, 4, 1)).ok());
  EXPECT_EQ(db()->ReadState(1, 1)->last_index, 4u);
}

TEST_P(LogDBConformance, OneSaveHoldsManyReplicas) {
  std::vector<std::vector<Entry>> logs;
  std::vector<ReplicaUpdate> updates;
  for (raft::ShardId s = 1; s <= 50; ++s) logs.push_back(MakeEntries(1, s % 7 + 1, s));
  for (raft::ShardId s = 1; s <= 50; ++s) {
    updates.push_back({s, s % 3 + 1, logs[s - 1], HardState{s, s % 3 + 1, 1}, {}});
  }
  ASSERT_TRUE(db()->Save(updates).ok());
  backend_->Reopen();
  auto list = db()->ListReplicas();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 50u);
  for (raft::ShardId s = 1; s <= 50; ++s) {
    EXPECT_EQ((*list)[s - 1], (ReplicaKey{s, s % 3 + 1}));
    EXPECT_EQ(Read(s, s % 3 + 1, 1, s % 7 + 2), logs[s - 1]);
    EXPECT_EQ(db()->ReadState(s, s % 3 + 1)->hard_state.term, s);
  }
}

TEST_P(LogDBConformance, ListReplicasSeesEveryRecordKindAndExtremeIds) {
  ASSERT_TRUE(SaveOne(UINT64_MAX, UINT64_MAX, MakeEntries(1, 3, 1)).ok());
  ASSERT_TRUE(SaveOne(UINT64_MAX, 1, MakeEntries(1, 3, 1)).ok());
  ASSERT_TRUE(SaveOne(5, 1, {}, HardState{1, 0, 0}).ok());
  ASSERT_TRUE(db()->SaveBootstrap(3, 1, Bootstrap{}).ok());
  ASSERT_TRUE(db()->SaveSnapshot(4, 1, Snap(3, 1)).ok());
  auto list = db()->ListReplicas();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(*list, (std::vector<ReplicaKey>{
                       {3, 1}, {4, 1}, {5, 1}, {UINT64_MAX, 1}, {UINT64_MAX, UINT64_MAX}}));
}

TEST_P(LogDBConformance, InstalledSnapshotReplacesTheLog) {
  ASSERT_TRUE(SaveOne(1, 1, MakeEntries(1, 30, 1)).ok());
  SnapshotMeta snap = Snap(20, 4);
  snap.membership.voters = {1, 2, 3};
  snap.membership.witnesses = {3};
  const auto after = MakeEntries(21, 22, 4);
  ASSERT_TRUE(SaveOne(1, 1, after, HardState{4, 2, 20}, snap).ok());
  for (int round = 0; round < 2; ++round) {
    auto st = db()->ReadState(1, 1);
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->snapshot, snap);
    EXPECT_EQ(st->first_index, 21u);
    EXPECT_EQ(st->last_index, 22u);
    EXPECT_EQ(st->prev_term, 4u);
    EXPECT_EQ(db()->Term(1, 1, 20).value(), 4u);
    EXPECT_EQ(db()->Term(1, 1, 10).status().code(), StatusCode::kDataLoss);
    EXPECT_EQ(db()->Term(1, 1, 25).status().code(), StatusCode::kNotFound);
    EXPECT_EQ(Read(1, 1, 21, 23), after);
    std::vector<Entry> out;
    EXPECT_EQ(db()->Entries(1, 1, 5, 23, UINT64_MAX, &out).code(), StatusCode::kDataLoss);
    backend_->Reopen();
  }
}

TEST_P(LogDBConformance, SnapshotWithoutEntriesLeavesAnEmptyLog) {
  ASSERT_TRUE(SaveOne(1, 1, MakeEntries(1, 5, 1)).ok());
  ASSERT_TRUE(SaveOne(1, 1, {}, std::nullopt, Snap(100, 9)).ok());
  ExpectNoEntries(1, 1, 100, 9);
  ASSERT_TRUE(SaveOne(1, 1, MakeEntries(101, 101, 9)).ok());
  EXPECT_EQ(db()->ReadState(1, 1)->first_index, 101u);
  EXPECT_EQ(db()->ReadState(1, 1)->last_index, 101u);
}

TEST_P(LogDBConformance, LocalSnapshotKeepsEntriesAndNeverGoesBack) {
  ASSERT_TRUE(SaveOne(1, 1, MakeEntries(1, 10, 1)).ok());
  ASSERT_TRUE(db()->SaveSnapshot(1, 1, Snap(8, 1)).ok());
  ASSERT_TRUE(db()->SaveSnapshot(1, 1, Snap(5, 1)).ok());
  backend_->Reopen();
  auto st = db()->ReadState(1, 1);
  EXPECT_EQ(st->snapshot.index, 8u);
  EXPECT_EQ(st->first_index, 1u);
  EXPECT_EQ(st->last_index, 10u);
}

TEST_P(LogDBConformance, BootstrapRoundTrips) {
  Bootstrap b = MakeBootstrap({{1, "a:1"}, {2, "b:2"}, {3, std::string(300, 'x')}}, false, 2);
  ASSERT_TRUE(db()->SaveBootstrap(7, 3, b).ok());
  ASSERT_TRUE(db()->SaveBootstrap(7, 4, MakeBootstrap({}, true, 1)).ok());
  backend_->Reopen();
  EXPECT_EQ(db()->ReadState(7, 3)->bootstrap, b);
  EXPECT_EQ(db()->ReadState(7, 4)->bootstrap, (MakeBootstrap({}, true, 1)));
}

TEST_P(LogDBConformance, CompactionRemovesEntriesAndKeepsTheirLastTerm) {
  auto entries = MakeEntries(1, 5, 1);
  auto later = MakeEntries(6, 10, 2);
  entries.insert(entries.end(), later.begin(), later.end());
  ASSERT_TRUE(SaveOne(1, 1, entries).ok());
  ASSERT_TRUE(db()->CompactTo(1, 1, 5).ok());
  ASSERT_TRUE(db()->CompactTo(1, 1, 3).ok());  // below the compaction: a no-op
  for (int round = 0; round < 2; ++round) {
    auto st = db()->ReadState(1, 1);
    EXPECT_EQ(st->first_index, 6u);
    EXPECT_EQ(st->last_index, 10u);
    EXPECT_EQ(st->prev_term, 1u);
    EXPECT_EQ(db()->Term(1, 1, 5).value(), 1u);
    EXPECT_EQ(db()->Term(1, 1, 4).status().code(), StatusCode::kDataLoss);
    std::vector<Entry> out;
    EXPECT_EQ(db()->Entries(1, 1, 4, 8, UINT64_MAX, &out).code(), StatusCode::kDataLoss);
    EXPECT_EQ(Read(1, 1, 6, 11), later);
    backend_->Reopen();
  }
  EXPECT_EQ(db()->CompactTo(1, 1, 11).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(db()->CompactTo(1, 1, 10).ok());
  ExpectNoEntries(1, 1, 10, 2);
  ASSERT_TRUE(SaveOne(1, 1, MakeEntries(11, 12, 2)).ok());
  EXPECT_EQ(db()->ReadState(1, 1)->first_index, 11u);
  EXPECT_EQ(Read(1, 1, 11, 13), MakeEntries(11, 12, 2));
}

TEST_P(LogDBConformance, RemoveReplicaRemovesOnlyThatReplica) {
  ASSERT_TRUE(SaveOne(1, 1, MakeEntries(1, 5, 1), HardState{1, 1, 1}).ok());
  ASSERT_TRUE(SaveOne(1, 2, MakeEntries(1, 5, 1), HardState{1, 1, 1}).ok());
  ASSERT_TRUE(db()->SaveBootstrap(1, 1, MakeBootstrap({}, true, 0)).ok());
  ASSERT_TRUE(db()->SaveSnapshot(1, 1, Snap(2, 1)).ok());
  ASSERT_TRUE(db()->CompactTo(1, 1, 2).ok());
  ASSERT_TRUE(db()->RemoveReplica(1, 1).ok());
  backend_->Reopen();
  EXPECT_EQ(db()->ReadState(1, 1).value(), ReplicaState());
  EXPECT_EQ(db()->ListReplicas().value(), (std::vector<ReplicaKey>{{1, 2}}));
  EXPECT_EQ(Read(1, 2, 1, 6), MakeEntries(1, 5, 1));
  // The replica can be created again from scratch.
  ASSERT_TRUE(SaveOne(1, 1, MakeEntries(1, 1, 5)).ok());
  EXPECT_EQ(db()->ReadState(1, 1)->last_index, 1u);
}

TEST_P(LogDBConformance, FlippedBitIsCorruptionNamingTheEntry) {
  ASSERT_TRUE(SaveOne(4, 2, MakeEntries(1, 5, 1, 64)).ok());
  // Checksum, length, fixed fields and payload: each is covered.
  const Location loc = Locate(4, 2, 3);
  for (size_t bit : {3u, 44u, 77u, 200u, 900u}) {
    SCOPED_TRACE(bit);
    FlipBit(loc, bit);
    std::vector<Entry> out;
    Status s = db()->Entries(4, 2, 1, 6, UINT64_MAX, &out);
    EXPECT_EQ(s.code(), StatusCode::kCorruption);
    EXPECT_NE(s.message().find("shard 4 replica 2 index 3"), std::string::npos) << s.ToString();
    EXPECT_EQ(out.size(), 2u);  // the good entries before it, never the damaged one
    EXPECT_EQ(db()->Term(4, 2, 3).status().code(), StatusCode::kCorruption);
    FlipBit(loc, bit);  // undo
    EXPECT_EQ(Read(4, 2, 1, 6), MakeEntries(1, 5, 1, 64));
  }
}

// A save that must read a damaged record of one replica (here the entry
// kept when a new suffix cuts its batch) leaves that replica out and saves
// the others of the same call; nothing of the damaged one is written and
// the LogDB is not poisoned. Save alone still refuses the whole call.
TEST_P(LogDBConformance, SaveIsolatedLeavesOutOnlyTheDamagedReplica) {
  ASSERT_TRUE(SaveOne(4, 2, MakeEntries(1, 5, 1, 64)).ok());
  ASSERT_TRUE(SaveOne(5, 1, MakeEntries(1, 5, 1, 64)).ok());
  const Location loc = Locate(4, 2, 2);
  FlipBit(loc, 200);
  const std::vector<Entry> cut = MakeEntries(3, 4, 2, 8);  // overwrites from 3: keeps 1..2
  const std::vector<Entry> more = MakeEntries(6, 7, 1, 8);
  const std::vector<ReplicaUpdate> updates = {ReplicaUpdate{4, 2, cut, HardState{2, 1, 3}, {}},
                                              ReplicaUpdate{5, 1, more, HardState{1, 1, 7}, {}}};
  EXPECT_EQ(db()->Save(updates).code(), StatusCode::kCorruption);
  std::vector<DamagedUpdate> damaged;
  ASSERT_TRUE(db()->SaveIsolated(updates, &damaged).ok());
  ASSERT_EQ(damaged.size(), 1u);
  EXPECT_EQ(damaged[0].update, 0u);
  EXPECT_EQ(damaged[0].status.code(), StatusCode::kCorruption);
  EXPECT_NE(damaged[0].status.message().find("shard 4 replica 2 index 2"), std::string::npos)
      << damaged[0].status.ToString();
  // The other replica's update is saved; the damaged one's is not.
  EXPECT_EQ(db()->ReadState(5, 1)->last_index, 7u);
  EXPECT_EQ(db()->ReadState(5, 1)->hard_state.commit, 7u);
  EXPECT_EQ(db()->ReadState(4, 2)->last_index, 5u);
  EXPECT_EQ(db()->ReadState(4, 2)->hard_state.term, 0u);
  // Not poisoned: later saves of healthy replicas go on.
  ASSERT_TRUE(SaveOne(5, 1, MakeEntries(8, 8, 1, 8)).ok());
}

TEST_P(LogDBConformance, ConcurrentSavesOfDisjointShards) {
  constexpr int kThreads = 4;
  constexpr int kSavesPerThread = 25;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t] {
      for (int i = 0; i < kSavesPerThread; ++i) {
        std::vector<std::vector<Entry>> logs;
        std::vector<ReplicaUpdate> updates;
        for (int s = 0; s < 4; ++s) logs.push_back(MakeEntries(i * 2 + 1, i * 2 + 2, 1));
        for (int s = 0; s < 4; ++s) {
          updates.push_back({static_cast<raft::ShardId>(t * 4 + s + 1),
                             1,
                             logs[s],
                             HardState{1, 0, static_cast<raft::Index>(i)},
                             {}});
        }
        EXPECT_TRUE(db()->Save(updates).ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  for (raft::ShardId s = 1; s <= kThreads * 4; ++s) {
    EXPECT_EQ(Read(s, 1, 1, 2 * kSavesPerThread + 1), MakeEntries(1, 2 * kSavesPerThread, 1));
  }
}

INSTANTIATE_TEST_SUITE_P(All, LogDBConformance,
                         ::testing::Values("memory", "rocksdb", "rocksdb_wal_dir"),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace flotilla::logdb
