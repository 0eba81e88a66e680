// Repair from peers (docs/raft-core.md, Repair), PAR's matrix: a replica
// whose stored entry, hard state or snapshot file is damaged (a record
// rewritten through RocksDB, so that RocksDB's own checksums pass and ours
// fail) starts anyway, votes for nobody until it holds again what it may
// have acknowledged, fetches what it lost from its peers, and ends with the
// same state as they have; nothing acknowledged is lost, no wrong value is
// served, and the LogDB verifies clean afterwards.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/snapshot_files.h"
#include "logdb/format.h"
#include "tests/engine/cluster.h"
#include "tests/engine/damage_util.h"
#include "tests/engine/kv_kinds.h"

namespace flotilla::testing {
namespace {

namespace fs = std::filesystem;
using logdb::format::RecordType;

constexpr int kWrites = 30;

void DamageEntry(const std::string& data_dir, uint64_t replica, raft::Index index) {
  WithLogDB(data_dir, [&](logdb::KvLogDB* kv) { FlipEntryBit(kv, 1, replica, index); });
}

void DamageHardState(const std::string& data_dir, uint64_t replica) {
  WithLogDB(data_dir, [&](logdb::KvLogDB* kv) {
    std::string key;
    logdb::format::RecordKey(RecordType::kHardState, 1, replica, &key);
    ASSERT_TRUE(logdb::testing::FlipStoredBit(kv->store_for_testing(), key, 7 * 8 + 1));
  });
}

raft::Index LastIndex(const std::string& data_dir, uint64_t replica) {
  raft::Index last = 0;
  WithLogDB(data_dir, [&](logdb::KvLogDB* kv) {
    auto st = kv->ReadState(1, replica);
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    last = st->last_index;
  });
  return last;
}

// No record of the LogDB fails its checksum, and no repair is recorded.
void ExpectVerifiesClean(const std::string& data_dir, uint64_t replica) {
  WithLogDB(data_dir, [&](logdb::KvLogDB* kv) {
    logdb::KvLogDB::VerifyCounts counts;
    std::string problems;
    ASSERT_TRUE(
        kv->VerifyAll([&](const Status& s) { problems += s.ToString() + "\n"; }, &counts).ok());
    EXPECT_EQ(counts.problems, 0u) << problems;
    auto st = kv->ReadState(1, replica);
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    EXPECT_FALSE(st->repair.has_value()) << "repair until " << st->repair->until;
  });
}

// An on-disk state machine that makes every update durable at once (as one
// writing through its own write-ahead log would): after a restart it
// reports every entry it was given as applied.
class DurableKv final : public OnDiskStateMachine {
 public:
  explicit DurableKv(std::string path) : kv_(std::move(path)) {}
  Status Update(std::span<SMEntry> entries) override {
    FLOTILLA_RETURN_IF_ERROR(kv_.Update(entries));
    return kv_.Sync();
  }
  Result<std::string> Lookup(std::string_view q) override { return kv_.Lookup(q); }
  Result<std::shared_ptr<void>> PrepareSnapshot() override { return kv_.PrepareSnapshot(); }
  Status SaveSnapshot(std::shared_ptr<void> prepared, SnapshotWriter* w) override {
    return kv_.SaveSnapshot(std::move(prepared), w);
  }
  Status RecoverFromSnapshot(SnapshotReader* r) override {
    FLOTILLA_RETURN_IF_ERROR(kv_.RecoverFromSnapshot(r));
    return kv_.Sync();
  }
  Result<uint64_t> Open() override { return kv_.Open(); }
  Status Sync() override { return kv_.Sync(); }

 private:
  OnDiskKv kv_;
};

class RepairFromPeers : public ::testing::Test {
 protected:
  void SetUpCluster(int hosts, uint64_t snapshot_entries) {
    c_ = std::make_unique<Cluster>(hosts);
    hosts_ = hosts;
    c_->shard_config.snapshot_entries = snapshot_entries;
    c_->shard_config.compaction_overhead = 5;
    for (int i = 0; i < hosts; ++i) StartAgain(i);
    ASSERT_TRUE(c_->WaitLeaders(1, 1, 20s));
    for (int k = 0; k < kWrites; ++k) {
      ASSERT_TRUE(ProposeRetry(c_->host(0), 1, Kv(k)));
    }
    ASSERT_TRUE(c_->WaitSame(1, hosts, 20s));
    for (int i = 0; i < hosts; ++i) WaitAllWrites(i, kWrites);
  }
  static std::string Kv(int k) { return "k" + std::to_string(k) + "=" + std::to_string(k); }
  int LeaderHost() {
    auto info = c_->host(0)->GetReplicaInfo(1);
    return info.ok() ? static_cast<int>(info->leader_id) - 1 : 0;
  }
  int AFollower() { return (LeaderHost() + 1) % hosts_; }
  // Host i stops, `damage` runs on its data, and it starts again: the
  // damaged replica starts (before repair, it was refused).
  void RestartDamaged(int i, const std::function<void()>& damage) {
    c_->Close(i);
    damage();
    c_->Reopen(i);
    StartAgain(i);
  }
  void StartAgain(int i) {
    ShardConfig sc = c_->shard_config;
    sc.shard_id = 1;
    sc.replica_id = static_cast<uint64_t>(i + 1);
    const std::string file = c_->data_dir(i) + "/durable_kv";
    const Status s =
        on_disk_ ? c_->host(i)->StartOnDiskReplica(
                       sc, c_->MembersOf(hosts_), StartMode::kNewShard,
                       [file](uint64_t, uint64_t) { return std::make_unique<DurableKv>(file); })
                 : c_->host(i)->StartReplica(sc, c_->MembersOf(hosts_), StartMode::kNewShard,
                                             KvFactory());
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  // Every write is on host i, with its value (the on-disk kind answers no
  // fingerprint query, so WaitSame alone cannot tell).
  void WaitAllWrites(int i, int writes) {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    int k = 0;
    while (k < writes && std::chrono::steady_clock::now() < deadline) {
      auto v = c_->host(i)->StaleRead(1, "k" + std::to_string(k));
      if (v.ok() && *v == std::to_string(k)) {
        ++k;
      } else {
        std::this_thread::sleep_for(20ms);
      }
    }
    for (k = 0; k < writes; ++k) {
      auto v = c_->host(i)->StaleRead(1, "k" + std::to_string(k));
      ASSERT_TRUE(v.ok()) << v.status().ToString();
      EXPECT_EQ(*v, std::to_string(k)) << "host " << i;
    }
  }
  // New writes commit; every replica ends with the same state, holding every
  // acknowledged write; the repaired hosts verify clean.
  void ExpectRepaired(const std::vector<int>& repaired) {
    for (int k = kWrites; k < kWrites + 5; ++k) ASSERT_TRUE(ProposeRetry(c_->host(0), 1, Kv(k)));
    ASSERT_TRUE(c_->WaitSame(1, hosts_, 30s))
        << c_->Fingerprint(0, 1) << " vs " << c_->Fingerprint(repaired[0], 1);
    for (int i = 0; i < hosts_; ++i) WaitAllWrites(i, kWrites + 5);
    for (int i : repaired) EXPECT_GE(c_->host(i)->GetMetrics().corruptions, 1u);
    // The repair ends once the leader's log matched; then the record goes.
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    for (int i : repaired) {
      while (std::chrono::steady_clock::now() < deadline) {
        c_->Close(i);
        bool done = false;
        WithLogDB(c_->data_dir(i), [&](logdb::KvLogDB* kv) {
          auto st = kv->ReadState(1, static_cast<uint64_t>(i + 1));
          done = st.ok() && !st->repair;
        });
        c_->Reopen(i);
        StartAgain(i);
        if (done) break;
        ASSERT_TRUE(ProposeRetry(c_->host(0), 1, "tick=1"));
        std::this_thread::sleep_for(200ms);
      }
      c_->Close(i);
      ExpectVerifiesClean(c_->data_dir(i), static_cast<uint64_t>(i + 1));
      c_->Reopen(i);
      StartAgain(i);
    }
  }

  std::unique_ptr<Cluster> c_;
  int hosts_ = 3;
  bool on_disk_ = false;
};

TEST_F(RepairFromPeers, ADamagedCommittedEntryOnOneFollowerIsFetchedAgain) {
  SetUpCluster(3, 0);
  const int f = AFollower();
  RestartDamaged(f, [&] { DamageEntry(c_->data_dir(f), static_cast<uint64_t>(f + 1), 5); });
  ExpectRepaired({f});
}

TEST_F(RepairFromPeers, ADamagedCommittedEntryOnTheLeaderIsFetchedAgain) {
  SetUpCluster(3, 0);
  const int l = LeaderHost();
  RestartDamaged(l, [&] { DamageEntry(c_->data_dir(l), static_cast<uint64_t>(l + 1), 5); });
  ExpectRepaired({l});
}

TEST_F(RepairFromPeers, ADamagedEntryOnAMinorityIsFetchedAgain) {
  SetUpCluster(5, 0);
  const int a = AFollower();
  const int b = (a + 1) % 5 == LeaderHost() ? (a + 2) % 5 : (a + 1) % 5;
  c_->Close(a);
  c_->Close(b);
  DamageEntry(c_->data_dir(a), static_cast<uint64_t>(a + 1), 4);
  DamageEntry(c_->data_dir(b), static_cast<uint64_t>(b + 1), 9);
  c_->Reopen(a);
  c_->Reopen(b);
  StartAgain(a);
  StartAgain(b);
  ExpectRepaired({a, b});
}

// The last entry of a follower, which its saved commit index may not cover:
// treated as possibly acknowledged, the follower votes for nobody until it
// holds it again as the leader does.
TEST_F(RepairFromPeers, ADamagedLastEntryIsTreatedAsAcknowledgedAndFetchedAgain) {
  SetUpCluster(3, 0);
  const int f = AFollower();
  RestartDamaged(f, [&] {
    const uint64_t r = static_cast<uint64_t>(f + 1);
    DamageEntry(c_->data_dir(f), r, LastIndex(c_->data_dir(f), r));
  });
  ExpectRepaired({f});
}

// An entry the leader wrote while its followers were down (never committed,
// never acknowledged to its client) is damaged on the leader: the leader
// restarts repairing, the followers elect without it, and the entry never
// surfaces anywhere, damaged or not.
TEST_F(RepairFromPeers, ADamagedUncommittedEntryNeverSurfaces) {
  SetUpCluster(3, 0);
  const int l = LeaderHost();
  const int f1 = (l + 1) % 3;
  const int f2 = (l + 2) % 3;
  c_->Close(f1);
  c_->Close(f2);
  const RequestResult lost = c_->host(l)->SyncPropose(1, "lost=1", 300ms);
  ASSERT_FALSE(lost.ok());
  const uint64_t lr = static_cast<uint64_t>(l + 1);
  c_->Close(l);
  const raft::Index last = LastIndex(c_->data_dir(l), lr);
  DamageEntry(c_->data_dir(l), lr, last);
  for (int i : {f1, f2, l}) {
    c_->Reopen(i);
    StartAgain(i);
  }
  ExpectRepaired({l});
  for (int i = 0; i < 3; ++i) {
    auto v = c_->host(i)->StaleRead(1, "lost");
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(*v, "") << "host " << i;
  }
}

TEST_F(RepairFromPeers, ADamagedHardStateIsRecoveredFromTheLogAndThePeers) {
  SetUpCluster(3, 0);
  const int f = AFollower();
  RestartDamaged(f, [&] { DamageHardState(c_->data_dir(f), static_cast<uint64_t>(f + 1)); });
  ExpectRepaired({f});
}

TEST_F(RepairFromPeers, ADamagedSnapshotFileIsFetchedAgainFromTheLeader) {
  SetUpCluster(3, 10);
  const int f = AFollower();
  RestartDamaged(f, [&] {
    fs::path newest;
    const fs::path root = fs::path(c_->data_dir(f)) / "snapshots" / ("1-" + std::to_string(f + 1));
    for (const auto& e : fs::directory_iterator(root)) {
      if (e.path().filename().string().rfind("snapshot-", 0) == 0 && e.path() > newest)
        newest = e.path();
    }
    ASSERT_FALSE(newest.empty());
    const fs::path data = newest / engine::kSnapshotDataFile;
    std::ifstream in(data, std::ios::binary);
    std::ostringstream all;
    all << in.rdbuf();
    std::string bytes = all.str();
    ASSERT_FALSE(bytes.empty());
    bytes[bytes.size() / 2] ^= 0x10;
    std::ofstream(data, std::ios::binary | std::ios::trunc) << bytes;
  });
  ExpectRepaired({f});
}

// An on-disk state machine keeps its own state, and may have applied past
// the entry found damaged: its log view then ends below what it applied.
// The entries after the damage come again from the leader and are skipped
// as applied, like those an on-disk state machine holds after any restart
// (before, the replica was refused: "state machine reports applied index N
// beyond the log's last index 4"; flotilla_sim --areas all, 30 of seeds
// 1-300, first seed 3).
TEST_F(RepairFromPeers, AnOnDiskStateMachinePastTheDamagedEntryIsRepaired) {
  on_disk_ = true;
  SetUpCluster(3, 0);
  const int f = AFollower();
  RestartDamaged(f, [&] { DamageEntry(c_->data_dir(f), static_cast<uint64_t>(f + 1), 5); });
  ExpectRepaired({f});
}

// The same committed entry is damaged on every voter: no undamaged copy is
// left, no voter can be elected, and none can be repaired. The shard says
// so, naming the replicas and what they lost, instead of stalling in
// silence: proposals and reads are refused with that error, and nothing
// they may have acknowledged is served without it.
TEST_F(RepairFromPeers, EveryVoterDamagedIsAClearErrorNotASilentStall) {
  SetUpCluster(3, 0);
  for (int i = 0; i < 3; ++i) c_->Close(i);
  for (int i = 0; i < 3; ++i) DamageEntry(c_->data_dir(i), static_cast<uint64_t>(i + 1), 5);
  for (int i = 0; i < 3; ++i) {
    c_->Reopen(i);
    StartAgain(i);
  }
  // Each replica finds out within a few election timeouts of the others.
  const auto refusal = [](const std::function<Result<RequestHandle>()>& request) {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < deadline) {
      Result<RequestHandle> h = request();
      if (!h.ok() && h.status().code() == StatusCode::kCorruption) return h.status();
      if (h.ok()) {
        EXPECT_FALSE(h->Wait().ok()) << "served with every voter repairing";
      }
      std::this_thread::sleep_for(50ms);
    }
    return Status::Ok();
  };
  const Status refused = refusal([&] { return c_->host(0)->Propose(1, "k99=99", 200ms); });
  ASSERT_EQ(refused.code(), StatusCode::kCorruption) << "no error within 30 s";
  EXPECT_NE(refused.message().find("every voter lost stored entries"), std::string::npos)
      << refused.ToString();
  EXPECT_NE(refused.message().find("replicas 1, 2, 3 are all repairing"), std::string::npos)
      << refused.ToString();
  const Status read = refusal([&] { return c_->host(1)->Read(1, "k7", 200ms); });
  EXPECT_EQ(read.code(), StatusCode::kCorruption) << "no error within 30 s";
}

}  // namespace
}  // namespace flotilla::testing
