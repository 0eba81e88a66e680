// ManualCluster: NodeHosts with the in-memory LogDB and the in-process
// transport, driven on the test's thread by explicit passes, apply rounds
// and ticks: the same seed gives the same run, step for step.
//
// Not thread-safe: one test thread drives it.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/node_host_impl.h"
#include "logdb/memory_logdb.h"
#include "tests/engine/kv_state_machine.h"
#include "transport/inproc_transport.h"

namespace flotilla::engine {

// A fresh directory name under the system's temporary directory.
inline std::string TempRoot(const std::string& prefix) {
  std::random_device rd;
  return (std::filesystem::temp_directory_path() / (prefix + std::to_string(rd()))).string();
}

// NodeHosts on the in-process network and the in-memory LogDB, driven on
// this thread; every random choice comes from `seed`. The first constructor
// starts replicas 1-3 of shard 1 on three hosts; the second starts `hosts`
// NodeHosts without shards (StartShard places them).
class ManualCluster {
 public:
  ManualCluster(const std::string& root, uint64_t seed, ShardConfig shard = {},
                uint32_t max_concurrent_campaigns = NodeHostConfig{}.max_concurrent_campaigns)
      : ManualCluster(root, seed, 3, max_concurrent_campaigns) {
    StartShard(1, {1, 2, 3}, shard);
  }
  ManualCluster(const std::string& root, uint64_t seed, int hosts,
                uint32_t max_concurrent_campaigns)
      : rng_(seed) {
    for (int i = 1; i <= hosts; ++i) {
      NodeHostConfig c;
      c.data_dir = root + "/h" + std::to_string(i);
      c.raft_address = Name(i);
      c.step_workers = 1;
      c.apply_workers = 1;
      c.max_concurrent_campaigns = max_concurrent_campaigns;
      NodeHostDeps d;
      auto db = logdb::NewMemoryLogDB();
      dbs_.push_back(db.get());
      d.logdb = std::move(db);
      d.start_threads = false;
      d.seed = seed * 31 + static_cast<uint64_t>(i);
      const std::string name = c.raft_address;
      const std::string snapdir = c.data_dir + "/snapshots-in";
      d.make_transport = [this, name, snapdir](transport::Registry* reg, transport::Handler* h) {
        transport::TransportConfig tc;
        tc.listen_address = name;
        tc.snapshot_dir = snapdir;
        return std::make_unique<transport::InProcTransport>(&net_, tc, reg, h);
      };
      auto nh = std::make_unique<NodeHostImpl>(c, std::move(d));
      EXPECT_TRUE(nh->Init().ok());
      hosts_.push_back(std::move(nh));
    }
  }
  // Starts shard `shard_id` with one replica on each host of `on` (1-based);
  // the replica on host i has replica id i.
  void StartShard(uint64_t shard_id, const std::vector<uint64_t>& on, ShardConfig shard = {}) {
    Members members;
    for (uint64_t i : on) members[i] = Name(static_cast<int>(i));
    for (uint64_t i : on) {
      shard.shard_id = shard_id;
      shard.replica_id = i;
      EXPECT_TRUE(host(i)
                      .StartReplica(shard, members, StartMode::kNewShard,
                                    [](uint64_t, uint64_t) {
                                      return std::make_unique<testing::KvStateMachine>();
                                    })
                      .ok());
    }
  }
  ~ManualCluster() {
    for (auto& h : hosts_) h->Close();
  }
  static std::string Name(int i) { return "host" + std::to_string(i); }
  NodeHostImpl& host(uint64_t replica) { return *hosts_[replica - 1]; }
  logdb::MemoryLogDB& db(uint64_t replica) { return *dbs_[replica - 1]; }
  transport::InProcNetwork& net() { return net_; }
  std::mt19937_64& rng() { return rng_; }

  // Step `step`: a tick every fourth step, one pass and apply round of every
  // host, then every message delivered.
  void Step(int step) {
    if (step % 4 == 0) {
      for (auto& h : hosts_) h->AdvanceTick();
    }
    for (auto& h : hosts_) h->RunOnce();
    net_.DeliverAll(rng_);
  }
  // `ticks` ticks; after each, three rounds of passes, apply rounds and
  // deliveries on every host.
  void RunTicks(int ticks) {
    for (int t = 0; t < ticks; ++t) {
      for (auto& h : hosts_) h->AdvanceTick();
      for (int k = 0; k < 3; ++k) {
        for (auto& h : hosts_) h->RunOnce();
        net_.DeliverAll(rng_);
      }
    }
  }
  // Steps until hosts 1-3 agree on a leader of shard 1; returns it (0: none).
  uint64_t AgreedLeader() {
    uint64_t leader = 0;
    const bool agreed = DriveUntil([&] {
      leader = host(1).GetReplicaInfo(1)->leader_id;
      return leader != 0 && host(2).GetReplicaInfo(1)->leader_id == leader &&
             host(3).GetReplicaInfo(1)->leader_id == leader;
    });
    return agreed ? leader : 0;
  }
  // Steps until `done` holds; false after `max_steps`.
  bool DriveUntil(const std::function<bool()>& done, int max_steps = 5000) {
    for (int step = 0; step < max_steps; ++step) {
      if (done()) return true;
      Step(step);
    }
    return done();
  }

 private:
  transport::InProcNetwork net_;
  std::mt19937_64 rng_;
  std::vector<logdb::MemoryLogDB*> dbs_;
  std::vector<std::unique_ptr<NodeHostImpl>> hosts_;
};

}  // namespace flotilla::engine
