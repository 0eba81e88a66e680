// 10,000 shards per NodeHost: three NodeHosts host 10,000 shards x 3
// replicas, are closed, reopened from their RocksDB LogDBs, restart every
// replica, and every shard elects a leader again with the campaign cap
// (NodeHostConfig::max_concurrent_campaigns) at work. The times are printed,
// not asserted. Labelled soak: it takes minutes on two cores.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

#include "flotilla/node_host.h"
#include "tests/engine/kv_state_machine.h"

namespace flotilla {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// FLOTILLA_RESTART_SHARDS overrides the count (for a quick local run).
const uint64_t kShards = [] {
  const char* v = std::getenv("FLOTILLA_RESTART_SHARDS");
  return v != nullptr ? std::strtoull(v, nullptr, 10) : 10000ULL;
}();
constexpr int kHosts = 3;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

class Fleet {
 public:
  explicit Fleet(const std::string& root) : root_(root) {}
  ~Fleet() { CloseAll(); }

  void OpenAll() {
    for (int i = 0; i < kHosts; ++i) {
      NodeHostConfig c;
      c.data_dir = root_ + "/nh" + std::to_string(i);
      c.raft_address = addresses_.size() == kHosts ? addresses_[static_cast<size_t>(i)]
                                                   : std::string("127.0.0.1:0");
      c.rtt_ms = 20;
      c.step_workers = 2;
      c.apply_workers = 1;
      c.max_concurrent_campaigns = 64;
      auto nh = NodeHost::Create(c);
      ASSERT_TRUE(nh.ok()) << nh.status().ToString();
      if (addresses_.size() < kHosts) addresses_.push_back((*nh)->raft_address());
      hosts_.push_back(std::move(nh).value());
    }
  }
  void CloseAll() {
    for (auto& h : hosts_) h->Close();
    hosts_.clear();
  }
  void StartAll() {
    Members members;
    for (int i = 0; i < kHosts; ++i) {
      members[static_cast<uint64_t>(i + 1)] = addresses_[static_cast<size_t>(i)];
    }
    for (uint64_t s = 1; s <= kShards; ++s) {
      for (int i = 0; i < kHosts; ++i) {
        ShardConfig sc;
        sc.shard_id = s;
        sc.replica_id = static_cast<uint64_t>(i + 1);
        sc.election_rtt = 20;
        sc.heartbeat_rtt = 2;
        sc.quiesce_after_election_timeouts = 2;
        ASSERT_TRUE(hosts_[static_cast<size_t>(i)]
                        ->StartReplica(sc, members, StartMode::kNewShard,
                                       [](uint64_t, uint64_t) {
                                         return std::make_unique<testing::KvStateMachine>();
                                       })
                        .ok());
      }
    }
  }
  // Waits until host 0 knows a leader for every shard; returns how many.
  size_t WaitElected(std::chrono::seconds limit) {
    const auto deadline = Clock::now() + limit;
    size_t elected = 0;
    while (Clock::now() < deadline) {
      elected = 0;
      for (const ReplicaInfo& r : hosts_[0]->GetInfo().replicas) elected += r.leader_id != 0;
      if (elected == kShards) break;
      std::this_thread::sleep_for(250ms);
    }
    return elected;
  }
  uint64_t Campaigns() {
    uint64_t n = 0;
    for (auto& h : hosts_) n += h->GetMetrics().campaigns;
    return n;
  }
  NodeHost* host(int i) { return hosts_[static_cast<size_t>(i)].get(); }

 private:
  std::string root_;
  std::vector<std::string> addresses_;
  std::vector<std::unique_ptr<NodeHost>> hosts_;
};

TEST(NodeHostScale, TenThousandShardsPerHostRestartAndElect) {
  std::random_device rd;
  const std::string root =
      (std::filesystem::temp_directory_path() / ("flotilla-restart-" + std::to_string(rd())))
          .string();
  {
    Fleet f(root);
    f.OpenAll();
    auto t = Clock::now();
    f.StartAll();
    const double start_s = Since(t);
    ASSERT_EQ(f.WaitElected(600s), kShards);
    const double elect_s = Since(t);
    // One write per shard, so the restart replays a log.
    for (uint64_t s = 1; s <= kShards; s += 1) {
      auto h = f.host(0)->Propose(s, "k=" + std::to_string(s), 60s);
      ASSERT_TRUE(h.ok());
      if (s % 1000 == 0) {
        EXPECT_TRUE(h->Wait().ok());
      }
    }
    std::printf(
        "%llu shards x %d: started in %.1f s, all elected %.1f s after the first start; "
        "%llu campaigns\n",
        static_cast<unsigned long long>(kShards), kHosts, start_s, elect_s,
        static_cast<unsigned long long>(f.Campaigns()));
    f.CloseAll();

    t = Clock::now();
    f.OpenAll();
    f.StartAll();
    const double restart_s = Since(t);
    ASSERT_EQ(f.WaitElected(600s), kShards);
    const double reelect_s = Since(t);
    uint64_t applied_all = 0;
    for (const ReplicaInfo& r : f.host(0)->GetInfo().replicas) applied_all += r.applied_index >= 2;
    std::printf(
        "restart from disk: %llu replicas per NodeHost restarted in %.1f s; every shard "
        "had a leader %.1f s after the reopen; %llu campaigns (cap 64 per NodeHost); "
        "%llu of %llu replicas on host 0 replayed their log\n",
        static_cast<unsigned long long>(kShards), restart_s, reelect_s,
        static_cast<unsigned long long>(f.Campaigns()),
        static_cast<unsigned long long>(applied_all), static_cast<unsigned long long>(kShards));
  }
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace flotilla
