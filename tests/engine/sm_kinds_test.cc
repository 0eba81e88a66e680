// The concurrent and on-disk state-machine kinds behind a NodeHost.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <sstream>
#include <thread>

#include "flotilla/node_host.h"
#include "tests/engine/kv_kinds.h"

namespace flotilla {
namespace {

using namespace std::chrono_literals;

using testing::ConcurrentKv;
using testing::OnDiskKv;

struct Hosts {
  explicit Hosts(const std::string& dir) : root(dir) {
    for (int i = 0; i < 3; ++i) {
      configs.push_back(Config(i, "127.0.0.1:0"));
      auto nh = NodeHost::Create(configs.back());
      EXPECT_TRUE(nh.ok());
      members[static_cast<uint64_t>(i + 1)] = (*nh)->raft_address();
      configs.back().raft_address = (*nh)->raft_address();
      nhs.push_back(std::move(nh).value());
    }
  }
  ~Hosts() {
    for (auto& h : nhs) {
      if (h) h->Close();
    }
  }
  NodeHostConfig Config(int i, const std::string& addr) {
    NodeHostConfig c;
    c.data_dir = root + "/nh" + std::to_string(i);
    c.raft_address = addr;
    c.rtt_ms = 10;
    c.step_workers = 1;
    c.apply_workers = 1;
    return c;
  }
  std::string root;
  std::vector<NodeHostConfig> configs;
  Members members;
  std::vector<std::unique_ptr<NodeHost>> nhs;
};

bool Put(NodeHost* nh, const std::string& cmd) {
  for (int i = 0; i < 200; ++i) {
    if (nh->SyncPropose(1, cmd, 5s).ok()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

std::string Get(NodeHost* nh, const std::string& key) {
  for (int i = 0; i < 200; ++i) {
    RequestResult r = nh->SyncRead(1, key, 5s);
    if (r.ok()) return r.data;
    std::this_thread::sleep_for(20ms);
  }
  return "<no answer>";
}

// The on-disk state machines of a three-host test: replica i+1's in
// root/sm<i>, the newest of each kept in sms[i].
struct OnDiskFactory {
  explicit OnDiskFactory(std::string dir) : root(std::move(dir)) {}
  OnDiskStateMachineFactory Make(int i) {
    return [this, i](uint64_t, uint64_t) {
      auto sm = std::make_unique<OnDiskKv>(root + "/sm" + std::to_string(i));
      sm->ignore_noops = ignore_noops;
      sms[static_cast<size_t>(i)] = sm.get();
      return sm;
    };
  }
  // Starts replicas 1-3 of `sc.shard_id` on the hosts, as new members.
  void StartAll(Hosts& h, ShardConfig sc) {
    for (int i = 0; i < 3; ++i) {
      sc.replica_id = static_cast<uint64_t>(i + 1);
      ASSERT_TRUE(h.nhs[static_cast<size_t>(i)]
                      ->StartOnDiskReplica(sc, h.members, StartMode::kNewShard, Make(i))
                      .ok());
    }
  }
  std::string root;
  bool ignore_noops = false;
  std::vector<OnDiskKv*> sms = std::vector<OnDiskKv*>(3, nullptr);
};

std::string TempRoot() {
  std::random_device rd;
  return (std::filesystem::temp_directory_path() / ("flotilla-smkinds-" + std::to_string(rd())))
      .string();
}

TEST(StateMachineKinds, ConcurrentKindServesReadsAndSnapshots) {
  const std::string root = TempRoot();
  {
    Hosts h(root);
    ShardConfig sc;
    sc.shard_id = 1;
    sc.snapshot_entries = 10;
    sc.compaction_overhead = 2;
    for (uint64_t i = 1; i <= 3; ++i) {
      sc.replica_id = i;
      ASSERT_TRUE(h.nhs[i - 1]
                      ->StartConcurrentReplica(
                          sc, h.members, StartMode::kNewShard,
                          [](uint64_t, uint64_t) { return std::make_unique<ConcurrentKv>(); })
                      .ok());
    }
    for (int i = 0; i < 40; ++i)
      ASSERT_TRUE(Put(h.nhs[0].get(), "k" + std::to_string(i) + "=" + std::to_string(i)));
    EXPECT_EQ(Get(h.nhs[2].get(), "k39"), "39");
    // Its snapshots are written by a snapshot worker (off the apply worker),
    // in full: the state machine's data and the sessions.
    for (int i = 0; i < 200 && h.nhs[0]->GetMetrics().snapshots_taken < 3; ++i) {
      std::this_thread::sleep_for(10ms);
    }
    EXPECT_GE(h.nhs[0]->GetMetrics().snapshots_taken, 3u);
    int full = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(root + "/nh0")) {
      const std::string name = e.path().filename().string();
      if (e.is_directory() && name.rfind("snapshot-", 0) == 0 &&
          name.find(".tmp") == std::string::npos) {
        full += std::filesystem::exists(e.path() / "data") &&
                std::filesystem::exists(e.path() / "sessions");
      }
    }
    EXPECT_GT(full, 0);
    // A shard keeps its kind.
    ASSERT_TRUE(h.nhs[2]->StopReplica(1).ok());
    sc.replica_id = 3;
    EXPECT_EQ(h.nhs[2]
                  ->StartReplica(sc, h.members, StartMode::kNewShard,
                                 [](uint64_t, uint64_t) { return std::unique_ptr<StateMachine>(); })
                  .code(),
              StatusCode::kInvalidArgument);
  }
  std::filesystem::remove_all(root);
}

// A concurrent state machine whose first snapshot waits until released.
class SlowSnapshotKv final : public ConcurrentKv {
 public:
  explicit SlowSnapshotKv(std::atomic<bool>* release) : release_(release) {}
  Status SaveSnapshot(std::shared_ptr<void> prepared, SnapshotWriter* w) override {
    while (!release_->load()) std::this_thread::sleep_for(1ms);
    return ConcurrentKv::SaveSnapshot(std::move(prepared), w);
  }

 private:
  std::atomic<bool>* release_;
};

// Entries applied while a snapshot is written can cross the next
// snapshot_entries mark. When the writes stop there, the due snapshot must
// still be taken once the first one ends; before, nothing looked again
// until the next write, and the log stayed uncompacted.
TEST(StateMachineKinds, ASnapshotDueWhileOneWasWrittenIsTakenWhenItEnds) {
  const std::string root = TempRoot();
  {
    Hosts h(root);
    ShardConfig sc;
    sc.shard_id = 1;
    sc.replica_id = 1;
    sc.snapshot_entries = 5;
    std::atomic<bool> release{false};
    const Members one{{1, h.members.at(1)}};
    ASSERT_TRUE(h.nhs[0]
                    ->StartConcurrentReplica(sc, one, StartMode::kNewShard,
                                             [&](uint64_t, uint64_t) {
                                               return std::make_unique<SlowSnapshotKv>(&release);
                                             })
                    .ok());
    for (int i = 0; i < 12; ++i) ASSERT_TRUE(Put(h.nhs[0].get(), "k=" + std::to_string(i)));
    EXPECT_EQ(h.nhs[0]->GetMetrics().snapshots_taken, 0u) << "the first one is held";
    release = true;
    for (int i = 0; i < 300 && h.nhs[0]->GetMetrics().snapshots_taken < 2; ++i) {
      std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(h.nhs[0]->GetMetrics().snapshots_taken, 2u);
  }
  std::filesystem::remove_all(root);
}

TEST(StateMachineKinds, OnDiskKindIsNotReappliedAfterRestart) {
  const std::string root = TempRoot();
  std::filesystem::create_directories(root);
  OnDiskFactory sms(root);
  {
    Hosts h(root);
    ShardConfig sc;
    sc.shard_id = 1;
    sc.snapshot_entries = 10;  // each snapshot Syncs the state machine
    sc.compaction_overhead = 100;
    sms.StartAll(h, sc);
    for (int i = 0; i < 25; ++i)
      ASSERT_TRUE(Put(h.nhs[0].get(), "k" + std::to_string(i) + "=" + std::to_string(i)));
    EXPECT_EQ(Get(h.nhs[2].get(), "k24"), "24");
    // Restart host 3: its state machine opens at its last synced index and
    // only later entries are applied again.
    h.nhs[2]->Close();
    h.nhs[2].reset();
    auto nh = NodeHost::Create(h.configs[2]);
    ASSERT_TRUE(nh.ok());
    h.nhs[2] = std::move(nh).value();
    sc.replica_id = 3;
    ASSERT_TRUE(h.nhs[2]->StartOnDiskReplica(sc, {}, StartMode::kNewShard, sms.Make(2)).ok());
    ASSERT_TRUE(Put(h.nhs[0].get(), "after=1"));
    EXPECT_EQ(Get(h.nhs[2].get(), "after"), "1");
    EXPECT_EQ(Get(h.nhs[2].get(), "k5"), "5");
    // 25 entries + "after": at most the entries after the last sync (index
    // multiple of 10) are applied again, never all of them.
    EXPECT_LT(sms.sms[2]->updates.load(), 15);
  }
  std::filesystem::remove_all(root);
}

// An on-disk state machine's local snapshots are shallow (no copy of its
// data), and a follower whose log was compacted away gets a snapshot
// streamed straight from the leader's state machine.
TEST(StateMachineKinds, OnDiskKindStreamsSnapshotsFromTheStateMachine) {
  const std::string root = TempRoot();
  std::filesystem::create_directories(root);
  auto factory = [&](int i) {
    return [&, i](uint64_t, uint64_t) {
      return std::make_unique<OnDiskKv>(root + "/sm" + std::to_string(i));
    };
  };
  {
    Hosts h(root);
    ShardConfig sc;
    sc.shard_id = 1;
    sc.snapshot_entries = 10;
    sc.compaction_overhead = 2;
    for (int i = 0; i < 3; ++i) {
      sc.replica_id = static_cast<uint64_t>(i + 1);
      ASSERT_TRUE(h.nhs[static_cast<size_t>(i)]
                      ->StartOnDiskReplica(sc, h.members, StartMode::kNewShard, factory(i))
                      .ok());
    }
    ASSERT_TRUE(Put(h.nhs[0].get(), "first=1"));
    ASSERT_TRUE(h.nhs[2]->StopReplica(1).ok());
    for (int i = 0; i < 60; ++i)
      ASSERT_TRUE(Put(h.nhs[0].get(), "k" + std::to_string(i) + "=" + std::to_string(i)));
    // The leader's (and every) local snapshot holds the sessions only.
    int snapshots = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(root + "/nh0")) {
      if (e.path().filename().string().rfind("snapshot-", 0) != 0 || !e.is_directory()) continue;
      ++snapshots;
      EXPECT_TRUE(std::filesystem::exists(e.path() / "sessions")) << e.path();
      EXPECT_FALSE(std::filesystem::exists(e.path() / "data")) << e.path();
    }
    EXPECT_GT(snapshots, 0);
    const uint64_t sent_before =
        h.nhs[0]->GetMetrics().snapshots_sent + h.nhs[1]->GetMetrics().snapshots_sent;
    // Replica 3 comes back behind the compacted log: it needs a snapshot.
    sc.replica_id = 3;
    ASSERT_TRUE(h.nhs[2]->StartOnDiskReplica(sc, {}, StartMode::kNewShard, factory(2)).ok());
    ASSERT_TRUE(Put(h.nhs[0].get(), "after=1"));
    EXPECT_EQ(Get(h.nhs[2].get(), "after"), "1");
    EXPECT_EQ(Get(h.nhs[2].get(), "k30"), "30");
    EXPECT_EQ(Get(h.nhs[2].get(), "first"), "1");
    const NodeHostMetrics m0 = h.nhs[0]->GetMetrics();
    const NodeHostMetrics m1 = h.nhs[1]->GetMetrics();
    EXPECT_GT(m0.snapshots_sent + m1.snapshots_sent, sent_before);
    EXPECT_GT(m0.snapshot_bytes_sent + m1.snapshot_bytes_sent, 0u);
    EXPECT_GE(h.nhs[2]->GetMetrics().snapshots_received, 1u);
    // Replicas agree once quiet.
    const uint64_t applied = h.nhs[0]->GetReplicaInfo(1)->applied_index;
    for (int i = 0; i < 200 && h.nhs[2]->GetReplicaInfo(1)->applied_index < applied; ++i) {
      std::this_thread::sleep_for(20ms);
    }
    for (int k = 0; k < 60; k += 7) {
      EXPECT_EQ(*h.nhs[2]->StaleRead(1, "k" + std::to_string(k)), std::to_string(k));
    }
  }
  std::filesystem::remove_all(root);
}

// The highest snapshot index under a host's data directory (0: none).
uint64_t NewestSnapshot(const std::string& dir) {
  uint64_t newest = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.rfind("snapshot-", 0) != 0) continue;
    if (name.find('.') != std::string::npos) continue;  // temporaries
    newest = std::max<uint64_t>(newest, std::stoull(name.substr(9)));
  }
  return newest;
}

// Issue 21's recipe: the batch that crosses snapshot_entries ends with an
// entry the state machine never sees (the new leader's no-op after a leader
// transfer), so the shallow snapshot is one entry ahead of the index the
// on-disk state machine reports from Open. Every host must still restart:
// the state machine's index reaches the snapshot's, or the log fills the gap.
void RestartAfterASnapshotAtALeadersNoOp(bool ignore_noops) {
  const std::string root = TempRoot();
  std::filesystem::create_directories(root);
  OnDiskFactory sms(root);
  sms.ignore_noops = ignore_noops;
  constexpr uint64_t kEvery = 10;
  {
    Hosts h(root);
    ShardConfig sc;
    sc.shard_id = 1;
    sc.snapshot_entries = kEvery;
    sc.compaction_overhead = 100;
    sms.StartAll(h, sc);
    ASSERT_TRUE(Put(h.nhs[0].get(), "first=1"));
    auto leader_host = [&]() -> NodeHost* {
      for (auto& nh : h.nhs) {
        auto info = nh->GetReplicaInfo(1);
        if (info.ok() && info->leader_id == info->replica_id) return nh.get();
      }
      return nullptr;
    };
    auto all_applied = [&](uint64_t index) {
      for (int i = 0; i < 500; ++i) {
        bool done = true;
        for (auto& nh : h.nhs) done &= nh->GetReplicaInfo(1)->applied_index >= index;
        if (done) return true;
        std::this_thread::sleep_for(10ms);
      }
      return false;
    };
    // Write one entry at a time until every replica has applied the entry
    // before the next snapshot boundary.
    uint64_t applied = 0;
    for (int i = 0; i < 100; ++i) {
      ASSERT_TRUE(Put(h.nhs[0].get(), "k" + std::to_string(i) + "=" + std::to_string(i)));
      applied = h.nhs[0]->GetReplicaInfo(1)->applied_index;
      ASSERT_TRUE(all_applied(applied));
      if (applied % kEvery == kEvery - 1 && NewestSnapshot(root + "/nh0") + kEvery == applied + 1)
        break;
    }
    ASSERT_EQ(applied % kEvery, kEvery - 1);
    // The new leader's no-op is the entry at the boundary.
    NodeHost* old_leader = leader_host();
    ASSERT_NE(old_leader, nullptr);
    const uint64_t old_id = old_leader->GetReplicaInfo(1)->replica_id;
    const uint64_t target = old_id % 3 + 1;
    ASSERT_TRUE(old_leader->TransferLeader(1, target).ok());
    ASSERT_TRUE(all_applied(applied + 1));
    for (int i = 0; i < 300 && NewestSnapshot(root + "/nh2") <= applied; ++i) {
      std::this_thread::sleep_for(10ms);
    }
    // The scenario happened: some replica's snapshot is at the no-op.
    int at_noop = 0;
    for (int i = 0; i < 3; ++i)
      at_noop += NewestSnapshot(root + "/nh" + std::to_string(i)) == applied + 1;
    ASSERT_GT(at_noop, 0);
    // Restart every host, with nothing written since.
    for (auto& nh : h.nhs) {
      nh->Close();
      nh.reset();
    }
    for (int i = 0; i < 3; ++i) {
      auto nh = NodeHost::Create(h.configs[static_cast<size_t>(i)]);
      ASSERT_TRUE(nh.ok());
      h.nhs[static_cast<size_t>(i)] = std::move(nh).value();
      sc.replica_id = static_cast<uint64_t>(i + 1);
      Status s = h.nhs[static_cast<size_t>(i)]->StartOnDiskReplica(sc, {}, StartMode::kNewShard,
                                                                   sms.Make(i));
      ASSERT_TRUE(s.ok()) << "host " << i << ": " << s.ToString();
    }
    ASSERT_TRUE(Put(h.nhs[1].get(), "after=1"));
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(Get(h.nhs[static_cast<size_t>(i)].get(), "after"), "1");
      EXPECT_EQ(Get(h.nhs[static_cast<size_t>(i)].get(), "first"), "1");
      EXPECT_EQ(Get(h.nhs[static_cast<size_t>(i)].get(), "k3"), "3");
    }
  }
  std::filesystem::remove_all(root);
}

TEST(StateMachineKinds, OnDiskReplicasRestartAfterASnapshotAtALeadersNoOp) {
  RestartAfterASnapshotAtALeadersNoOp(/*ignore_noops=*/false);
}

// The same with a state machine that does not record `noop` entries, as
// every one did before they existed: its shallow snapshot is ahead of it,
// and the start brings it up to the snapshot from the log.
TEST(StateMachineKinds, OnDiskReplicaBehindItsShallowSnapshotIsBroughtUpToIt) {
  RestartAfterASnapshotAtALeadersNoOp(/*ignore_noops=*/true);
}

// An on-disk state machine can be ahead of the commit index its replica
// saved (a commit-only hard state waits for the next save, and the entries
// are applied meanwhile). After a restart the replica starts from the index
// the state machine reached, at once and without a leader: until then a
// snapshot streamed from it would be labelled with an older index than its
// data, and the receiver would apply the entries in between twice (issue
// 13, item 1).
TEST(StateMachineKinds, OnDiskReplicaRestartsAtTheIndexItsStateMachineReached) {
  const std::string root = TempRoot();
  std::filesystem::create_directories(root);
  OnDiskFactory sms(root);
  {
    Hosts h(root);
    ShardConfig sc;
    sc.shard_id = 1;
    sc.snapshot_entries = 1;  // every applied batch is synced by a snapshot
    sc.compaction_overhead = 100;
    sms.StartAll(h, sc);
    for (int i = 0; i < 20; ++i)
      ASSERT_TRUE(Put(h.nhs[0].get(), "k" + std::to_string(i) + "=" + std::to_string(i)));
    const uint64_t last = h.nhs[0]->GetReplicaInfo(1)->applied_index;
    for (int i = 0; i < 300; ++i) {
      bool done = true;
      for (auto& nh : h.nhs) done &= nh->GetReplicaInfo(1)->applied_index >= last;
      if (done) break;
      std::this_thread::sleep_for(10ms);
    }
    for (auto& nh : h.nhs) {
      nh->Close();
      nh.reset();
    }
    // One host alone: no leader, so nothing but its own log moves it.
    for (int i = 0; i < 3; ++i) {
      auto nh = NodeHost::Create(h.configs[static_cast<size_t>(i)]);
      ASSERT_TRUE(nh.ok());
      sc.replica_id = static_cast<uint64_t>(i + 1);
      ASSERT_TRUE((*nh)->StartOnDiskReplica(sc, {}, StartMode::kNewShard, sms.Make(i)).ok());
      const uint64_t reached = sms.sms[static_cast<size_t>(i)]->applied();
      EXPECT_GE(reached, last - 1) << "host " << i;
      EXPECT_GE((*nh)->GetReplicaInfo(1)->commit_index, reached) << "host " << i;
      for (int t = 0; t < 100 && (*nh)->GetReplicaInfo(1)->applied_index < reached; ++t) {
        std::this_thread::sleep_for(10ms);
      }
      EXPECT_GE((*nh)->GetReplicaInfo(1)->applied_index, reached) << "host " << i;
      (*nh)->Close();
    }
  }
  std::filesystem::remove_all(root);
}

// A session write that an on-disk state machine applied durably but that no
// snapshot of the session registry holds is skipped after a restart, and
// its result is gone. A retry of it must be told so: it was applied once,
// its result is unknown. Before, the retry completed as if the state machine
// had returned 0 and no data, a result that was never produced.
TEST(StateMachineKinds, ARetriedSessionWriteWhoseResultWasLostSaysSo) {
  const std::string root = TempRoot();
  std::filesystem::create_directories(root);
  OnDiskFactory sms(root);
  {
    Hosts h(root);
    ShardConfig sc;
    sc.shard_id = 1;
    sc.replica_id = 1;
    sc.snapshot_entries = 1000;  // no snapshot: the registry is in none
    const Members one{{1, h.members.at(1)}};
    ASSERT_TRUE(h.nhs[0]->StartOnDiskReplica(sc, one, StartMode::kNewShard, sms.Make(0)).ok());
    ASSERT_TRUE(Put(h.nhs[0].get(), "a=1"));
    Result<Session> session = h.nhs[0]->SyncRegisterSession(1, 5s);
    ASSERT_TRUE(session.ok()) << session.status().ToString();
    Result<RequestHandle> first = h.nhs[0]->ProposeInSession(*session, "b=2", 5s);
    ASSERT_TRUE(first.ok());
    const RequestResult applied = first->Wait();
    ASSERT_TRUE(applied.ok());
    ASSERT_NE(applied.value, 0u);
    ASSERT_TRUE(sms.sms[0]->Sync().ok());  // durable in the state machine only
    h.nhs[0]->Close();
    h.nhs[0].reset();
    auto nh = NodeHost::Create(h.configs[0]);
    ASSERT_TRUE(nh.ok()) << nh.status().ToString();
    h.nhs[0] = std::move(nh).value();
    ASSERT_TRUE(h.nhs[0]->StartOnDiskReplica(sc, {}, StartMode::kNewShard, sms.Make(0)).ok());
    ASSERT_TRUE(Put(h.nhs[0].get(), "c=3"));
    // The same series again, as a client that never saw the first answer.
    Result<RequestHandle> retry = h.nhs[0]->ProposeInSession(*session, "b=2", 5s);
    ASSERT_TRUE(retry.ok());
    const RequestResult again = retry->Wait();
    EXPECT_EQ(again.code, RequestCode::kAppliedResultUnknown)
        << RequestCodeName(again.code) << " value " << again.value;
    EXPECT_EQ(sms.sms[0]->updates.load(), 1) << "only c=3 is applied after the restart";
  }
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace flotilla
