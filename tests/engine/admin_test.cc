// The NodeHost's administrative surface: metrics, snapshots on request,
// membership in the replica info, removing a replica's data, and the
// back-pressure that refuses proposals as busy instead of growing memory.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "engine/replica.h"
#include "flotilla/node_host.h"
#include "tests/engine/cluster.h"

namespace flotilla {
namespace {

using namespace std::chrono_literals;
using testing::Cluster;
using testing::KvFactory;
using testing::ProposeRetry;

int LeaderHost(Cluster& c, int hosts, uint64_t shard) {
  for (int i = 0; i < hosts; ++i) {
    auto info = c.host(i)->GetReplicaInfo(shard);
    if (info.ok() && info->role == ReplicaRole::kLeader) return i;
  }
  return -1;
}

int WaitLeaderHost(Cluster& c, int hosts, uint64_t shard) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (int l = LeaderHost(c, hosts, shard); l >= 0) return l;
    std::this_thread::sleep_for(20ms);
  }
  return -1;
}

TEST(Metrics, CountersMoveUnderLoad) {
  Cluster c(3);
  c.StartShard(1, 3);
  c.StartShard(2, 3);
  ASSERT_TRUE(c.WaitLeaders(1, 2, 30s));
  const NodeHostMetrics before = c.host(0)->GetMetrics();
  EXPECT_EQ(before.shards, 2u);
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(
        ProposeRetry(c.host(0), 1 + static_cast<uint64_t>(i % 2), "k" + std::to_string(i) + "=v"));
  }
  ASSERT_TRUE(c.host(0)->SyncRead(1, "k0", 5s).ok());
  const NodeHostMetrics after = c.host(0)->GetMetrics();
  EXPECT_GE(after.proposals, before.proposals + 50);
  EXPECT_GE(after.reads, before.reads + 1);
  EXPECT_GE(after.entries_applied, before.entries_applied + 50);
  EXPECT_GE(after.entries_committed, before.entries_committed + 50);
  EXPECT_GT(after.saves, before.saves);
  EXPECT_GE(after.saved_entries, before.saved_entries + 50);
  EXPECT_GT(after.saved_bytes, before.saved_bytes);
  EXPECT_GT(after.messages_sent, before.messages_sent);
  EXPECT_GT(after.messages_received, before.messages_received);
  EXPECT_GT(after.save_latency.count, before.save_latency.count);
  uint64_t bucketed = 0;
  for (uint64_t n : after.save_latency.counts) bucketed += n;
  EXPECT_EQ(bucketed, after.save_latency.count);
  // RocksDB's write-ahead log is fsynced on every save.
  EXPECT_GT(after.fsync_latency.count, before.fsync_latency.count);
  EXPECT_GE(after.leader_changes, 2u);  // each shard's first leader
  EXPECT_FALSE(after.storage_failed);
  // Across the cluster, one leader per shard.
  uint64_t leaders = 0;
  for (int i = 0; i < 3; ++i) leaders += c.host(i)->GetMetrics().leaders;
  EXPECT_EQ(leaders, 2u);
}

// Entries applied everywhere and matched by every follower leave the log
// cache: without that, each replica kept up to its byte bound (16 MiB).
TEST(Metrics, TheLogCacheLetsGoOfAppliedAndReplicatedEntries) {
  Cluster c(3);
  c.StartShard(1, 3);
  ASSERT_TRUE(c.WaitLeaders(1, 1, 30s));
  const std::string value(1000, 'v');
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(ProposeRetry(c.host(0), 1, "k" + std::to_string(i) + "=" + value));
  }
  // 300 KB went through every replica; once the followers' acknowledgements
  // and the apply workers catch up (a heartbeat or two), a few entries stay.
  uint64_t cached = UINT64_MAX;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    cached = 0;
    for (int i = 0; i < 3; ++i) cached += c.host(i)->GetMetrics().log_cache_bytes;
    if (cached < 3 * 8 * 1100) break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_LT(cached, 3u * 8 * 1100) << "bytes still cached on the three hosts";
  // What left the cache is still served from the LogDB: a new replica
  // catches up from the leader's log (no snapshot was taken).
  EXPECT_EQ(c.host(0)->GetMetrics().snapshots_taken, 0u);
  ASSERT_TRUE(c.host(0)->SyncRead(1, "k0", 5s).ok());
}

TEST(Admin, RequestedSnapshotCompletesWithItsIndex) {
  Cluster c(3);
  c.shard_config.compaction_overhead = 2;
  c.StartShard(1, 3);
  ASSERT_TRUE(c.WaitLeaders(1, 1, 30s));
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(ProposeRetry(c.host(1), 1, "k=" + std::to_string(i)));
  const uint64_t applied = c.host(1)->GetReplicaInfo(1)->applied_index;
  RequestResult r = c.host(1)->RequestSnapshot(1, 5s)->Wait();
  ASSERT_TRUE(r.ok()) << r.data;
  EXPECT_GE(r.value, applied);
  EXPECT_EQ(c.host(1)->GetMetrics().snapshots_taken, 1u);
  // Nothing applied since: the same snapshot answers.
  RequestResult again = c.host(1)->RequestSnapshot(1, 5s)->Wait();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.value, r.value);
  EXPECT_EQ(c.host(1)->GetMetrics().snapshots_taken, 1u);
  EXPECT_EQ(c.host(1)->RequestSnapshot(7, 1s).status().code(), StatusCode::kNotFound);
}

// A replica that applied its own removal stops itself (after a grace of two
// election timeouts), whether it was a follower or the leader (which hands
// its leadership over first); its data stays until RemoveData.
// Removes the replica of shard 1 on the host that leads it (the hardest
// case: a removed leader hands over first); returns that host, -1 on failure.
int RemoveTheLeadersReplica(Cluster& c) {
  const int leader = WaitLeaderHost(c, 3, 1);
  if (leader < 0) return -1;
  const uint64_t removed = static_cast<uint64_t>(leader) + 1;
  RequestResult rm;
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  do {
    rm = c.host(leader)->RemoveReplica(1, removed, 5s)->Wait();
  } while (!rm.ok() && std::chrono::steady_clock::now() < give_up);
  return rm.ok() ? leader : -1;
}

// True once shard 1's replica on host i stopped (within 10 s).
bool WaitStopped(Cluster& c, int i) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (c.host(i)->GetReplicaInfo(1).status().code() == StatusCode::kNotFound) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

TEST(Admin, ARemovedReplicaStopsItselfAndTheShardGoesOn) {
  Cluster c(3);
  c.StartShard(1, 3);
  ASSERT_TRUE(c.WaitLeaders(1, 1, 30s));
  ASSERT_TRUE(ProposeRetry(c.host(0), 1, "a=1"));
  const int leader = RemoveTheLeadersReplica(c);
  ASSERT_GE(leader, 0);
  const uint64_t removed = static_cast<uint64_t>(leader) + 1;
  EXPECT_TRUE(WaitStopped(c, leader)) << "the removed replica is still running";
  // The other two go on, and the stopped replica's data can be removed.
  const int other = (leader + 1) % 3;
  EXPECT_TRUE(ProposeRetry(c.host(other), 1, "b=2"));
  EXPECT_TRUE(c.host(other)->SyncRead(1, "b", 5s).ok());
  EXPECT_TRUE(c.host(leader)->RemoveData(1, removed).ok());
}

// A replica never forgets a membership change it applied: after a restart
// the core replays changes up to the saved commit index only, so the commit
// that applied the change must have been saved (issue 13, item 2). Here the
// removed replica, restarted after it stopped itself, must still know it
// was removed (and stop itself again) instead of believing it is a voter.
TEST(Admin, ARestartedReplicaRemembersItsOwnRemoval) {
  Cluster c(3);
  c.StartShard(1, 3);
  ASSERT_TRUE(c.WaitLeaders(1, 1, 30s));
  ASSERT_TRUE(ProposeRetry(c.host(0), 1, "a=1"));
  const int leader = RemoveTheLeadersReplica(c);
  ASSERT_GE(leader, 0);
  const uint64_t removed = static_cast<uint64_t>(leader) + 1;
  ASSERT_TRUE(WaitStopped(c, leader)) << "the removed replica is still running";
  c.Close(leader);
  c.Reopen(leader);
  c.StartOn(leader, 1, {});
  // Once it has replayed its log it must know it is not a member...
  for (int i = 0; i < 50; ++i) {
    auto m = c.host(leader)->GetMembership(1);
    if (!m.ok()) break;  // stopped itself already
    if (i == 49) {
      EXPECT_EQ(m->voters.count(removed), 0u) << "the restarted replica is a voter";
    }
    std::this_thread::sleep_for(10ms);
  }
  // ...and stop itself again.
  EXPECT_TRUE(WaitStopped(c, leader)) << "the restarted removed replica keeps running";
}

TEST(Admin, MembershipComesWithAddresses) {
  Cluster c(3);
  c.StartShard(1, 2);
  ASSERT_TRUE(c.WaitLeaders(1, 1, 30s));
  ASSERT_TRUE(ProposeRetry(c.host(0), 1, "a=1"));
  ShardMembership info = *c.host(0)->GetMembership(1);
  ASSERT_EQ(info.voters.size(), 2u);
  EXPECT_EQ(info.voters[1], c.address(0));
  EXPECT_EQ(info.voters[2], c.address(1));
  EXPECT_TRUE(info.non_voting.empty());
  RequestResult add =
      c.host(0)->AddReplica(1, 3, c.address(2), NodeHost::MemberKind::kNonVoting, 10s)->Wait();
  ASSERT_TRUE(add.ok()) << add.data;
  info = *c.host(0)->GetMembership(1);
  ASSERT_EQ(info.non_voting.size(), 1u);
  EXPECT_EQ(info.non_voting[3], c.address(2));
}

TEST(Admin, RemoveDataIsRefusedWhileRunningAndForgetsTheReplicaAfter) {
  Cluster c(1);
  c.StartShard(1, 1);
  ASSERT_TRUE(c.WaitLeaders(1, 1, 30s));
  ASSERT_TRUE(ProposeRetry(c.host(0), 1, "a=1"));
  EXPECT_EQ(c.host(0)->RemoveData(1, 1).code(), StatusCode::kRejected);
  ASSERT_TRUE(c.host(0)->StopReplica(1).ok());
  ASSERT_TRUE(c.host(0)->RemoveData(1, 1).ok());
  // The stored bootstrap is gone: a start must now say who the members are.
  ShardConfig sc;
  sc.shard_id = 1;
  sc.replica_id = 1;
  EXPECT_EQ(
      c.host(0)->StartReplica(sc, {{2, "127.0.0.1:1"}}, StartMode::kNewShard, KvFactory()).code(),
      StatusCode::kInvalidArgument);
  // Started again as a new single-member shard, it has none of the old data.
  ASSERT_TRUE(
      c.host(0)->StartReplica(sc, {{1, c.address(0)}}, StartMode::kNewShard, KvFactory()).ok());
  ASSERT_TRUE(c.WaitLeaders(1, 1, 30s));
  ASSERT_TRUE(ProposeRetry(c.host(0), 1, "b=2"));
  EXPECT_EQ(*c.host(0)->StaleRead(1, "a"), "");
}

TEST(BackPressure, ProposalsAreRefusedAsBusyWhenUncommittedBytesReachTheirBound) {
  Cluster c(3);
  c.shard_config.check_quorum = false;  // the leader keeps leading alone
  c.shard_config.max_uncommitted_bytes = 4096;
  c.StartShard(1, 3);
  const int leader = WaitLeaderHost(c, 3, 1);
  ASSERT_GE(leader, 0);
  ASSERT_TRUE(ProposeRetry(c.host(leader), 1, "warm=1"));
  for (int i = 0; i < 3; ++i) {
    if (i != leader) c.Close(i);
  }
  // Nothing can commit now: uncommitted bytes grow to the bound, then
  // proposals are refused up front with Busy.
  const std::string payload = "k=" + std::string(512, 'x');
  std::vector<RequestHandle> pending;
  StatusCode refused = StatusCode::kOk;
  for (int i = 0; i < 200 && refused == StatusCode::kOk; ++i) {
    Result<RequestHandle> h = c.host(leader)->Propose(1, payload, 60s);
    if (!h.ok()) {
      refused = h.status().code();
      EXPECT_NE(h.status().message().find("max_uncommitted_bytes"), std::string::npos)
          << h.status().ToString();
      break;
    }
    pending.push_back(*h);
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(refused, StatusCode::kBusy);
  EXPECT_GT(c.host(leader)->GetMetrics().proposals_refused, 0u);
}

TEST(BackPressure, ProposalQueueIsBoundedByBytes) {
  ShardConfig sc;
  sc.shard_id = 1;
  sc.replica_id = 1;
  engine::Replica r(sc, nullptr);
  auto entry = [](size_t bytes) {
    raft::Entry e;
    e.cmd.assign(bytes, 'x');
    return e;
  };
  // The first proposal is always taken, whatever its size.
  EXPECT_TRUE(r.PushProposal(entry(1000), nullptr, 100, 1500));
  EXPECT_FALSE(r.PushProposal(entry(600), nullptr, 100, 1500));
  EXPECT_TRUE(r.PushProposal(entry(500), nullptr, 100, 1500));
  EXPECT_EQ(r.QueueDepth(), 2u);
  r.TakeInbound();  // the step worker takes the queue: room again
  EXPECT_TRUE(r.PushProposal(entry(1400), nullptr, 100, 1500));
}

}  // namespace
}  // namespace flotilla
