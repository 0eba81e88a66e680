// Damage at rest: a flipped bit in any stored record of one replica (a LogDB
// record, read through RocksDB so that RocksDB's own checksums pass, or a
// snapshot file) is found by our checksum, named with its replica, counted,
// and stops that replica only: the other replicas of the NodeHost keep
// working, and the NodeHost itself never stops.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/node_host_impl.h"
#include "engine/snapshot_files.h"
#include "logdb/format.h"
#include "logdb/kv_logdb.h"
#include "logdb/kv_store.h"
#include "logdb/memory_logdb.h"
#include "logdb/rocks_logdb.h"
#include "tests/engine/cluster.h"
#include "tests/engine/damage_util.h"
#include "tests/logdb/test_util.h"

namespace flotilla::testing {
namespace {

namespace fs = std::filesystem;
using logdb::format::RecordType;

void FlipValueBit(logdb::KvStore* store, const std::string& key, size_t bit) {
  ASSERT_TRUE(logdb::testing::FlipStoredBit(store, key, bit));
}

// Opens the RocksDB LogDB of `data_dir` (its NodeHost closed) and flips a bit
// of the record `type` of shard 1 replica 1; for entries, of entry 3.
void DamageRecord(const std::string& data_dir, RecordType type) {
  WithLogDB(data_dir, [&](logdb::KvLogDB* kv) {
    if (type == RecordType::kEntry) {
      FlipEntryBit(kv, 1, 1, 3);  // the last byte of entry 3's command
      return;
    }
    std::string key;
    logdb::format::RecordKey(type, 1, 1, &key);
    FlipValueBit(kv->store_for_testing(), key, 7 * 8 + 1);  // past the checksum and version
  });
}

std::string FileBytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream all;
  all << in.rdbuf();
  return all.str();
}

void FlipFileBit(const fs::path& path, size_t byte) {
  std::string bytes = FileBytes(path);
  ASSERT_FALSE(bytes.empty()) << path;
  bytes[byte % bytes.size()] ^= 0x10;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// One NodeHost (RocksDB LogDB) running shards 1 and 2, one replica each.
class OneHostTwoShards : public ::testing::Test {
 protected:
  ShardConfig Shard(uint64_t id) const {
    ShardConfig sc;
    sc.shard_id = id;
    sc.replica_id = 1;
    sc.snapshot_entries = snapshot_entries_;
    sc.compaction_overhead = compaction_overhead_;
    return sc;
  }
  Status Start(uint64_t shard) {
    return c_.host(0)->StartReplica(Shard(shard), c_.MembersOf(1), StartMode::kNewShard,
                                    KvFactory());
  }
  void StartBoth() {
    ASSERT_TRUE(Start(1).ok());
    ASSERT_TRUE(Start(2).ok());
    for (uint64_t s : {1, 2}) {
      for (int k = 0; k < 25; ++k) {
        ASSERT_TRUE(ProposeRetry(c_.host(0), s, "k" + std::to_string(k) + "=" + std::to_string(k)));
      }
    }
  }
  // Closes the NodeHost, runs `while_closed` (which damages its files) and
  // opens it again.
  void Reopen(const std::function<void()>& while_closed) {
    c_.Close(0);
    while_closed();
    c_.Reopen(0);
  }
  // Shard 1 refuses to start with Corruption naming its replica and `what`;
  // shard 2 starts and takes writes; the damage was counted.
  void ExpectOnlyShard1Refused(const std::string& what) {
    const Status s1 = Start(1);
    EXPECT_EQ(s1.code(), StatusCode::kCorruption) << s1.ToString();
    EXPECT_NE(s1.message().find(what), std::string::npos) << s1.ToString();
    const Status s2 = Start(2);
    ASSERT_TRUE(s2.ok()) << s2.ToString();
    EXPECT_TRUE(ProposeRetry(c_.host(0), 2, "after=1"));
    EXPECT_EQ(ReadWithRetry(c_.host(0), 2, "k24").data, "24");
    EXPECT_GE(c_.host(0)->GetMetrics().corruptions, 1u);
  }
  std::string data_dir() { return c_.data_dir(0); }
  fs::path NewestSnapshot(uint64_t shard) {
    fs::path newest;
    const fs::path root = fs::path(data_dir()) / "snapshots" / (std::to_string(shard) + "-1");
    for (const auto& e : fs::directory_iterator(root)) {
      if (e.path().filename().string().rfind("snapshot-", 0) == 0 && e.path() > newest)
        newest = e.path();
    }
    return newest;
  }

  uint64_t snapshot_entries_ = 10;
  uint64_t compaction_overhead_ = 50;
  Cluster c_{1};
};

class StoredRecordDamage : public OneHostTwoShards,
                           public ::testing::WithParamInterface<RecordType> {};

TEST_P(StoredRecordDamage, RefusesOnlyItsReplicaAndNamesIt) {
  // A compaction record is written when a snapshot lets the log be compacted.
  if (GetParam() == RecordType::kCompaction) compaction_overhead_ = 2;
  // Without a snapshot the whole committed log is replayed at start.
  if (GetParam() == RecordType::kEntry) snapshot_entries_ = 0;
  StartBoth();
  Reopen([&] { DamageRecord(data_dir(), GetParam()); });
  const std::map<RecordType, std::string> names = {
      {RecordType::kEntry, "shard 1 replica 1 index 3: entry checksum mismatch"},
      {RecordType::kHardState, "shard 1 replica 1: hard state checksum mismatch"},
      {RecordType::kSnapshot, "shard 1 replica 1: snapshot metadata checksum mismatch"},
      {RecordType::kBootstrap, "shard 1 replica 1: bootstrap checksum mismatch"},
      {RecordType::kCompaction, "shard 1 replica 1: compaction record checksum mismatch"},
  };
  // An entry is read at start when the core replays the committed
  // membership changes (entry 3 is committed): a damaged one refuses the
  // replica, naming the entry, instead of starting a core that has halted.
  ExpectOnlyShard1Refused(names.at(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(Kinds, StoredRecordDamage,
                         ::testing::Values(RecordType::kEntry, RecordType::kHardState,
                                           RecordType::kSnapshot, RecordType::kBootstrap,
                                           RecordType::kCompaction),
                         [](const auto& p) {
                           switch (p.param) {
                             case RecordType::kEntry:
                               return std::string("Entry");
                             case RecordType::kHardState:
                               return std::string("HardState");
                             case RecordType::kSnapshot:
                               return std::string("SnapshotRecord");
                             case RecordType::kBootstrap:
                               return std::string("Bootstrap");
                             case RecordType::kCompaction:
                               return std::string("CompactionRecord");
                             case RecordType::kRepair:
                               return std::string("RepairRecord");
                           }
                           return std::string("Other");
                         });

TEST_F(OneHostTwoShards, ADamagedLastEntryRefusesOnlyItsReplica) {
  snapshot_entries_ = 0;
  StartBoth();
  Reopen([&] {
    logdb::RocksOptions o;
    o.dir = data_dir() + "/logdb";
    auto db = logdb::OpenRocksLogDB(o);
    ASSERT_TRUE(db.ok());
    auto* kv = dynamic_cast<logdb::KvLogDB*>(db->get());
    Result<logdb::ReplicaState> st = kv->ReadState(1, 1);
    ASSERT_TRUE(st.ok());
    std::string key;
    size_t offset = 0;
    size_t size = 0;
    ASSERT_TRUE(kv->LocateEntryForTesting(1, 1, st->last_index, &key, &offset, &size).ok());
    FlipValueBit(kv->store_for_testing(), key, (offset + size - 1) * 8);
  });
  ExpectOnlyShard1Refused("entry checksum mismatch");
}

// A snapshot file damaged at rest is found before it is restored: the
// replica refuses to start with the file named, rather than restore wrong
// data, and the other shard goes on.
class SnapshotFileDamage : public OneHostTwoShards,
                           public ::testing::WithParamInterface<const char*> {};

TEST_P(SnapshotFileDamage, RefusesOnlyItsReplicaAndNamesTheFile) {
  StartBoth();
  const fs::path dir = NewestSnapshot(1);
  ASSERT_FALSE(dir.empty());
  Reopen([&] { FlipFileBit(dir / GetParam(), 3); });
  const std::string what = std::string(GetParam()) == engine::kSnapshotChecksumsFile
                               ? "checksums file fails its own checksum"
                               : std::string("file ") + GetParam() + ": checksum mismatch";
  ExpectOnlyShard1Refused(what);
  const Status again = Start(1);
  EXPECT_NE(again.message().find(dir.string()), std::string::npos) << again.ToString();
}

INSTANTIATE_TEST_SUITE_P(Files, SnapshotFileDamage,
                         ::testing::Values(engine::kSnapshotDataFile, engine::kSnapshotSessionsFile,
                                           engine::kSnapshotChecksumsFile));

// A snapshot written before checksums were kept (no checksums file) is
// accepted, and given its checksums file so that the next restore checks it.
TEST_F(OneHostTwoShards, ASnapshotWithoutChecksumsIsAcceptedAndUpgraded) {
  StartBoth();
  const fs::path dir = NewestSnapshot(1);
  Reopen([&] { ASSERT_TRUE(fs::remove(dir / engine::kSnapshotChecksumsFile)); });
  const Status s = Start(1);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(fs::exists(dir / engine::kSnapshotChecksumsFile));
  EXPECT_EQ(ReadWithRetry(c_.host(0), 1, "k24").data, "24");
  EXPECT_EQ(c_.host(0)->GetMetrics().corruptions, 0u);
}

// A received snapshot is checked against the checksums file its sender
// streamed with it (the sender's copy may have rotted at rest: the stream's
// own chunk checksums are computed from the damaged bytes and pass); one
// streamed without (from an on-disk state machine) is given one.
TEST(SnapshotChecksums, AReceivedCopyIsCheckedAgainstTheSendersChecksums) {
  const std::string root = TempDir("damage-received");
  Result<std::string> dir = engine::WriteSnapshot(
      root, 7, [](SnapshotWriter* w) { return w->Write("k=v\n"); }, "sessions-bytes");
  ASSERT_TRUE(dir.ok()) << dir.status().ToString();
  EXPECT_EQ(*engine::VerifySnapshotFiles(*dir), engine::SnapshotCheck::kVerified);
  const std::string copy = root + "/incoming";
  fs::copy(*dir, copy);
  EXPECT_TRUE(engine::SealReceivedSnapshot(copy).ok());
  FlipFileBit(fs::path(copy) / engine::kSnapshotDataFile, 1);
  Status s = engine::SealReceivedSnapshot(copy);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("file data: checksum mismatch"), std::string::npos) << s.ToString();
  // A file the checksums file does not list is refused too.
  FlipFileBit(fs::path(copy) / engine::kSnapshotDataFile, 1);
  std::ofstream(fs::path(copy) / "extra") << "x";
  s = engine::SealReceivedSnapshot(copy);
  EXPECT_NE(s.message().find("file extra is not in its checksums file"), std::string::npos)
      << s.ToString();
  // Streamed without a checksums file: sealed with one, checked from then on.
  fs::remove(fs::path(copy) / engine::kSnapshotChecksumsFile);
  ASSERT_TRUE(engine::SealReceivedSnapshot(copy).ok());
  EXPECT_EQ(*engine::VerifySnapshotFiles(copy), engine::SnapshotCheck::kVerified);
  FlipFileBit(fs::path(copy) / "extra", 0);
  EXPECT_EQ(engine::VerifySnapshotFiles(copy).status().code(), StatusCode::kCorruption);
  fs::remove_all(root);
}

// A record that a save has to read (here the header of the first batch,
// read to find the log's bounds on the first save after a restart) fails
// its checksum: that replica stops; the others saved in the same pass are
// saved, and the NodeHost keeps accepting writes.
TEST(SaveDamage, ADamagedRecordASaveReadsStopsOnlyItsReplica) {
  const std::string root = TempDir("damage-save");
  NodeHostConfig c;
  c.data_dir = root;
  c.raft_address = "127.0.0.1:0";
  c.rtt_ms = 10;
  c.step_workers = 1;  // both shards saved in the same passes
  c.apply_workers = 1;
  auto owned = logdb::NewMemoryLogDB();
  logdb::MemoryLogDB* mem = owned.get();
  engine::NodeHostDeps d;
  d.logdb = std::move(owned);
  auto nh = std::make_unique<engine::NodeHostImpl>(c, std::move(d));
  ASSERT_TRUE(nh->Init().ok());
  const Members self = {{1, nh->raft_address()}};
  for (uint64_t shard : {1, 2}) {
    ShardConfig sc;
    sc.shard_id = shard;
    sc.replica_id = 1;
    ASSERT_TRUE(nh->StartReplica(sc, self, StartMode::kNewShard, KvFactory()).ok());
    for (int k = 0; k < 5; ++k)
      ASSERT_TRUE(ProposeRetry(nh.get(), shard, "k=" + std::to_string(k)));
  }
  // A process restart of the LogDB forgets the cached log bounds; then the
  // first batch of shard 1 is damaged.
  mem->Restart();
  std::string key;
  logdb::format::EntryKey(1, 1, 1, &key);
  FlipValueBit(mem->store_for_testing(), key, 8 * 6);
  const RequestResult r1 = nh->SyncPropose(1, "x=1", 5s);
  EXPECT_FALSE(r1.ok());
  const RequestResult r2 = nh->SyncPropose(2, "y=1", 5s);
  EXPECT_TRUE(r2.ok()) << static_cast<int>(r2.code) << " " << r2.data;
  EXPECT_TRUE(ProposeRetry(nh.get(), 2, "y=2"));
  EXPECT_FALSE(nh->GetMetrics().storage_failed);
  EXPECT_GE(nh->GetMetrics().corruptions, 1u);
  nh->Close();
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace flotilla::testing
