// Scale tests of the NodeHost: 1,000 shards x 3 replicas on three NodeHosts
// in one process over loopback gRPC and RocksDB, 100,000 proposals, and every
// replica of every shard applying the identical sequence (compared by hash).
// A quarter of the way through the load one NodeHost is closed; the others
// keep serving; it is reopened from disk three quarters through and catches
// up by snapshot: each shard applied about 25 entries before it left and
// snapshots at 40, compacting to 35, while it is away.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "flotilla/node_host.h"
#include "tests/engine/kv_state_machine.h"

namespace flotilla {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Hosts = std::vector<std::unique_ptr<NodeHost>>;

// The shards whose three replicas hold the same hash; `low` gets each shard's
// lowest applied index over its replicas (0 when one cannot tell).
size_t CountMatching(const Hosts& hosts, uint64_t shards, std::vector<uint64_t>* low) {
  size_t same = 0;
  for (uint64_t s = 1; s <= shards; ++s) {
    std::optional<std::string> hash;
    bool match = true;
    uint64_t lowest = UINT64_MAX;
    for (const auto& h : hosts) {
      const auto v = h->StaleRead(s, "__hash");
      const auto info = h->GetReplicaInfo(s);
      lowest = std::min(lowest, info.ok() ? info->applied_index : 0);
      if (!v.ok() || (hash && *hash != *v)) match = false;
      if (v.ok()) hash = *v;
    }
    (*low)[s] = lowest;
    if (match) ++same;
  }
  return same;
}

// Waits until every shard's replicas hold the same hash. The reopened host
// catches up 1,000 shards by snapshot, which takes seconds on an idle machine
// and minutes on a starved one, so the wait goes on while the lagging
// replicas apply more and fails only after kStall without any of them
// advancing (or after kLimit in all). Returns the number of matching shards.
size_t WaitUntilReplicasMatch(const Hosts& hosts, uint64_t shards) {
  constexpr auto kStall = 60s;
  constexpr auto kLimit = 600s;
  const auto start = Clock::now();
  auto last_progress = start;
  std::vector<uint64_t> best(shards + 1, 0);
  std::vector<uint64_t> low(shards + 1, 0);
  size_t best_same = 0;
  for (;;) {
    const size_t same = CountMatching(hosts, shards, &low);
    if (same == shards) return same;
    bool advanced = same > best_same;
    best_same = std::max(best_same, same);
    for (uint64_t s = 1; s <= shards; ++s) {
      if (low[s] > best[s]) {
        advanced = true;
        best[s] = low[s];
      }
    }
    const auto now = Clock::now();
    if (advanced) last_progress = now;
    if (now - last_progress > kStall || now - start > kLimit) {
      std::printf(
          "replicas stopped converging: %zu of %llu shards identical, %.0f s since the "
          "last progress, %.0f s in all\n",
          same, static_cast<unsigned long long>(shards),
          std::chrono::duration<double>(now - last_progress).count(),
          std::chrono::duration<double>(now - start).count());
      return same;
    }
    std::this_thread::sleep_for(500ms);
  }
}

// Says, for each shard whose replicas differ, what every replica holds and
// why it lags: behind the leader's commit (catch-up stuck: no snapshot or
// no append reached it), or at the same index with another hash (diverged).
void ReportLaggingShards(const Hosts& hosts, uint64_t shards) {
  for (size_t i = 0; i < hosts.size(); ++i) {
    const NodeHostMetrics m = hosts[i]->GetMetrics();
    std::printf("host %zu: snapshots sent %llu received %llu taken %llu\n", i + 1,
                static_cast<unsigned long long>(m.snapshots_sent),
                static_cast<unsigned long long>(m.snapshots_received),
                static_cast<unsigned long long>(m.snapshots_taken));
  }
  int reported = 0;
  for (uint64_t s = 1; s <= shards; ++s) {
    std::string line;
    std::set<std::string> hashes;
    uint64_t leader_commit = 0;
    uint64_t lowest = UINT64_MAX;
    for (const auto& h : hosts) {
      const auto v = h->StaleRead(s, "__hash");
      const auto info = h->GetReplicaInfo(s);
      hashes.insert(v.ok() ? *v : "?");
      if (info.ok() && info->role == ReplicaRole::kLeader) leader_commit = info->commit_index;
      lowest = std::min(lowest, info.ok() ? info->applied_index : 0);
      line += " [" + (v.ok() ? *v : v.status().ToString());
      if (info.ok()) {
        line += " applied " + std::to_string(info->applied_index) + " commit " +
                std::to_string(info->commit_index) + " term " + std::to_string(info->term) +
                " leader " + std::to_string(info->leader_id) + " " +
                std::string(ReplicaRoleName(info->role));
      } else {
        line += " " + info.status().ToString();
      }
      line += "]";
    }
    if (hashes.size() == 1 && *hashes.begin() != "?") continue;
    const std::string why = leader_commit == 0 ? "no leader"
                            : lowest < leader_commit
                                ? "a replica is " + std::to_string(leader_commit - lowest) +
                                      " entries behind the leader's commit"
                                : "replicas at the leader's commit differ (diverged)";
    if (++reported <= 30) ADD_FAILURE() << "shard " << s << " differs (" << why << "):" << line;
  }
  if (reported > 30) ADD_FAILURE() << reported - 30 << " more shards differ";
}

TEST(NodeHostScale, ThousandShardsHundredThousandProposals) {
  constexpr uint64_t kShards = 1000;
  constexpr int kProposals = 100000;
  constexpr size_t kInFlight = 4000;
  std::random_device rd;
  const std::string root =
      (std::filesystem::temp_directory_path() / ("flotilla-scale-" + std::to_string(rd())))
          .string();
  std::vector<std::unique_ptr<NodeHost>> hosts;
  std::vector<NodeHostConfig> configs;
  Members members;
  for (int i = 0; i < 3; ++i) {
    NodeHostConfig c;
    c.data_dir = root + "/nh" + std::to_string(i);
    c.rtt_ms = 20;
    c.step_workers = 2;
    c.apply_workers = 1;
    auto nh = NodeHost::Create(c);
    ASSERT_TRUE(nh.ok()) << nh.status().ToString();
    members[static_cast<uint64_t>(i + 1)] = (*nh)->raft_address();
    c.raft_address = (*nh)->raft_address();  // a reopen keeps the address
    configs.push_back(c);
    hosts.push_back(std::move(nh).value());
  }
  auto shard_config = [](uint64_t s, int replica) {
    ShardConfig sc;
    sc.shard_id = s;
    sc.replica_id = static_cast<uint64_t>(replica);
    sc.election_rtt = 20;
    sc.heartbeat_rtt = 2;
    // A snapshot while one host is away compacts past it (see the top).
    sc.snapshot_entries = 40;
    sc.compaction_overhead = 5;
    return sc;
  };
  const StateMachineFactory factory = [](uint64_t, uint64_t) {
    return std::make_unique<testing::KvStateMachine>();
  };
  const auto t0 = Clock::now();
  for (uint64_t s = 1; s <= kShards; ++s) {
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(hosts[static_cast<size_t>(i)]
                      ->StartReplica(shard_config(s, i + 1), members, StartMode::kNewShard, factory)
                      .ok());
    }
  }
  // Every shard elects a leader.
  const auto deadline = Clock::now() + 120s;
  size_t elected = 0;
  while (elected < kShards && Clock::now() < deadline) {
    elected = 0;
    for (uint64_t s = 1; s <= kShards; ++s) {
      auto info = hosts[0]->GetReplicaInfo(s);
      if (info.ok() && info->leader_id != 0) ++elected;
    }
    if (elected < kShards) std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(elected, kShards);
  const double elect_s = std::chrono::duration<double>(Clock::now() - t0).count();
  // 100,000 proposals spread over the shards, sent to each shard's leader;
  // like a client, a proposal dropped by a leader change is sent again to
  // the shard's current leader (the writes are idempotent).
  const auto t1 = Clock::now();
  struct InFlight {
    RequestHandle handle;
    int i;
    int attempts;
  };
  std::deque<InFlight> inflight;
  int completed = 0;
  int failed = 0;
  int retried = 0;
  auto send = [&](int i, int attempts) {
    const uint64_t s = 1 + static_cast<uint64_t>(i) % kShards;
    auto info = hosts[0]->GetReplicaInfo(s);
    int h = info.ok() && info->leader_id != 0 ? static_cast<int>(info->leader_id) - 1 : 0;
    if (!hosts[static_cast<size_t>(h)]) h = 0;  // closed: host 0 forwards
    auto r = hosts[static_cast<size_t>(h)]->Propose(
        s, "k" + std::to_string(i % 97) + "=" + std::to_string(i), 10s);
    if (r.ok()) {
      inflight.push_back({*r, i, attempts});
    } else {
      ++failed;
    }
  };
  auto reap = [&](size_t keep) {
    while (inflight.size() > keep) {
      InFlight f = inflight.front();
      inflight.pop_front();
      if (f.handle.Wait().ok()) {
        ++completed;
      } else if (f.attempts < 50) {
        ++retried;
        if (f.attempts > 2) std::this_thread::sleep_for(20ms);  // an election is under way
        send(f.i, f.attempts + 1);
      } else {
        ++failed;
      }
    }
  };
  NodeHostConfig closed_config;
  for (int i = 0; i < kProposals; ++i) {
    if (i == kProposals / 4) {
      // One NodeHost goes away in the middle of the load.
      closed_config = configs[2];
      hosts[2]->Close();
      hosts[2].reset();
    }
    if (i == kProposals * 3 / 4) {
      auto nh = NodeHost::Create(closed_config);
      ASSERT_TRUE(nh.ok()) << nh.status().ToString();
      hosts[2] = std::move(nh).value();
      for (uint64_t s = 1; s <= kShards; ++s) {
        ShardConfig sc = shard_config(s, 3);
        ASSERT_TRUE(hosts[2]->StartReplica(sc, {}, StartMode::kNewShard, factory).ok());
      }
    }
    send(i, 0);
    reap(kInFlight);
  }
  reap(0);
  const double propose_s = std::chrono::duration<double>(Clock::now() - t1).count();
  std::printf(
      "1000 shards: elected in %.1f s; %d proposals completed (%d retried), %d failed, in %.1f s\n",
      elect_s, completed, retried, failed, propose_s);
  EXPECT_EQ(completed, kProposals);
  EXPECT_EQ(failed, 0);
  // All replicas of each shard apply identical sequences.
  const auto t2 = Clock::now();
  const size_t same = WaitUntilReplicasMatch(hosts, kShards);
  std::printf("%zu of %llu shards identical on all three hosts %.1f s after the load\n", same,
              static_cast<unsigned long long>(kShards),
              std::chrono::duration<double>(Clock::now() - t2).count());
  EXPECT_EQ(same, kShards);
  if (same != kShards) ReportLaggingShards(hosts, kShards);
  const NodeHostMetrics back = hosts[2]->GetMetrics();
  std::printf("the reopened NodeHost caught up: %llu snapshots received (%llu bytes)\n",
              static_cast<unsigned long long>(back.snapshots_received),
              static_cast<unsigned long long>(back.snapshot_bytes_received));
  EXPECT_GT(back.snapshots_received, 0u) << "some shards compacted past it while it was away";
  for (auto& h : hosts) h->Close();
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace flotilla
