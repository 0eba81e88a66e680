// A small cluster of NodeHosts in one process over loopback gRPC, each with
// its own RocksDB LogDB in a temporary directory, for the engine's
// integration tests; and the retry helpers those tests share.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "flotilla/node_host.h"
#include "tests/engine/kv_state_machine.h"

namespace flotilla::testing {

using namespace std::chrono_literals;

inline std::string TempDir(const std::string& name) {
  std::random_device rd;
  auto dir =
      std::filesystem::temp_directory_path() / ("flotilla-" + name + "-" + std::to_string(rd()));
  std::filesystem::create_directories(dir);
  return dir.string();
}

// A replica that just started does not know its leader until the first
// heartbeat: reads are dropped until then, and clients retry.
inline RequestResult ReadWithRetry(NodeHost* nh, uint64_t shard, const std::string& key) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  RequestResult r;
  do {
    r = nh->SyncRead(shard, key, 5s);
    if (r.code != RequestCode::kDropped) return r;
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return r;
}

// Proposes through `nh`, retrying while the proposal is dropped (no leader
// yet, or the leader changed): the tests' writes are idempotent.
inline bool ProposeRetry(NodeHost* nh, uint64_t shard, const std::string& cmd) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  do {
    const RequestResult r = nh->SyncPropose(shard, cmd, 5s);
    if (r.ok()) return true;
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return false;
}

inline StateMachineFactory KvFactory() {
  return [](uint64_t, uint64_t) { return std::make_unique<KvStateMachine>(); };
}

class Cluster {
 public:
  explicit Cluster(int hosts) : root_(TempDir("cluster")) {
    for (int i = 0; i < hosts; ++i) {
      configs_.push_back(Config(i, "127.0.0.1:0"));
      auto nh = NodeHost::Create(configs_.back());
      EXPECT_TRUE(nh.ok()) << nh.status().ToString();
      addresses_.push_back((*nh)->raft_address());
      configs_.back().raft_address = addresses_.back();  // restarts reuse the port
      hosts_.push_back(std::move(nh).value());
    }
  }
  ~Cluster() {
    for (auto& h : hosts_) {
      if (h) h->Close();
    }
    std::filesystem::remove_all(root_);
  }

  NodeHostConfig Config(int i, const std::string& addr) {
    NodeHostConfig c;
    c.data_dir = root_ + "/nh" + std::to_string(i);
    c.raft_address = addr;
    c.rtt_ms = 10;
    c.step_workers = 2;
    c.apply_workers = 1;
    return c;
  }

  Members MembersOf(int n) {
    Members m;
    for (int i = 0; i < n; ++i)
      m[static_cast<uint64_t>(i + 1)] = addresses_[static_cast<size_t>(i)];
    return m;
  }

  void StartShard(uint64_t shard, int replicas) {
    const Members m = MembersOf(replicas);
    for (int i = 0; i < replicas; ++i) StartOn(i, shard, m);
  }

  void StartOn(int i, uint64_t shard, const Members& m) {
    ShardConfig sc = shard_config;
    sc.shard_id = shard;
    sc.replica_id = static_cast<uint64_t>(i + 1);
    ASSERT_TRUE(hosts_[static_cast<size_t>(i)]
                    ->StartReplica(sc, m, StartMode::kNewShard, KvFactory())
                    .ok());
  }

  // Waits until every shard in [first, last] has a leader known to host 0.
  bool WaitLeaders(uint64_t first, uint64_t last, std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      bool all = true;
      for (uint64_t s = first; s <= last && all; ++s) {
        auto info = hosts_[0]->GetReplicaInfo(s);
        all = info.ok() && info->leader_id != 0;
      }
      if (all) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  ShardConfig shard_config;  // the template for StartShard
  const std::string& address(int i) const { return addresses_[static_cast<size_t>(i)]; }
  const std::string& data_dir(int i) const { return configs_[static_cast<size_t>(i)].data_dir; }
  NodeHost* host(int i) { return hosts_[static_cast<size_t>(i)].get(); }
  void Close(int i) {
    hosts_[static_cast<size_t>(i)]->Close();
    hosts_[static_cast<size_t>(i)].reset();
  }
  void Reopen(int i) {
    auto nh = NodeHost::Create(configs_[static_cast<size_t>(i)]);
    ASSERT_TRUE(nh.ok()) << nh.status().ToString();
    hosts_[static_cast<size_t>(i)] = std::move(nh).value();
  }

  // "hash:count" of the replica of `shard` on host i.
  std::string Fingerprint(int i, uint64_t shard) {
    auto r = hosts_[static_cast<size_t>(i)]->StaleRead(shard, "__hash");
    return r.ok() ? *r : r.status().ToString();
  }

  bool WaitSame(uint64_t shard, int hosts, std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      bool same = true;
      const std::string f0 = Fingerprint(0, shard);
      for (int i = 1; i < hosts && same; ++i) same = Fingerprint(i, shard) == f0;
      if (same) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

 private:
  std::string root_;
  std::vector<NodeHostConfig> configs_;
  std::vector<std::string> addresses_;
  std::vector<std::unique_ptr<NodeHost>> hosts_;
};

}  // namespace flotilla::testing
