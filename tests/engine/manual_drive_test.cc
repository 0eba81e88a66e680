// The driver without threads: three NodeHosts with the in-memory LogDB and the
// in-process transport, driven on one thread by explicit passes, apply rounds
// and ticks. The same seed gives the same run, step for step — the basis of
// the deterministic simulation of whole NodeHosts.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <thread>

#include "engine/node_host_impl.h"
#include "logdb/memory_logdb.h"
#include "tests/engine/kv_state_machine.h"
#include "transport/inproc_transport.h"

namespace flotilla::engine {
namespace {

using namespace std::chrono_literals;

// Runs three NodeHosts for a fixed number of steps with `seed` and returns a
// trace of every host's view of shard 1 at every step.
std::string RunCluster(uint64_t seed, const std::string& root, int* completed) {
  transport::InProcNetwork net;
  std::mt19937_64 rng(seed);
  std::vector<std::unique_ptr<NodeHostImpl>> hosts;
  Members members;
  for (int i = 1; i <= 3; ++i) members[static_cast<uint64_t>(i)] = "host" + std::to_string(i);
  for (int i = 1; i <= 3; ++i) {
    NodeHostConfig c;
    c.data_dir = root + "/" + std::to_string(seed) + "/h" + std::to_string(i);
    c.raft_address = "host" + std::to_string(i);
    c.step_workers = 1;
    c.apply_workers = 1;
    NodeHostDeps d;
    d.logdb = logdb::NewMemoryLogDB();
    d.start_threads = false;
    d.seed = seed * 31 + static_cast<uint64_t>(i);
    const std::string name = c.raft_address;
    const std::string snapdir = c.data_dir + "/snapshots-in";
    d.make_transport = [&net, name, snapdir](transport::Registry* reg, transport::Handler* h) {
      transport::TransportConfig tc;
      tc.listen_address = name;
      tc.snapshot_dir = snapdir;
      return std::make_unique<transport::InProcTransport>(&net, tc, reg, h);
    };
    auto nh = std::make_unique<NodeHostImpl>(c, std::move(d));
    EXPECT_TRUE(nh->Init().ok());
    ShardConfig sc;
    sc.shard_id = 1;
    sc.replica_id = static_cast<uint64_t>(i);
    sc.snapshot_entries = 20;
    sc.compaction_overhead = 5;
    EXPECT_TRUE(nh->StartReplica(sc, members, false, [](uint64_t, uint64_t) {
                    return std::make_unique<testing::KvStateMachine>();
                  }).ok());
    hosts.push_back(std::move(nh));
  }
  std::string trace;
  std::vector<RequestHandle> handles;
  for (int step = 0; step < 3000; ++step) {
    if (step % 4 == 0) {
      for (auto& h : hosts) h->AdvanceTick();
    }
    // Propose through a host chosen by the seed, once a leader is known.
    if (step % 10 == 0 && step > 300) {
      auto& h = hosts[rng() % hosts.size()];
      auto r = h->Propose(1, "k" + std::to_string(step % 13) + "=" + std::to_string(step), 3600s);
      if (r.ok()) handles.push_back(*r);
    }
    for (auto& h : hosts) h->RunOnce();
    net.DeliverAll(rng);
    for (auto& h : hosts) {
      auto info = h->GetReplicaInfo(1);
      trace += std::to_string(info->leader_id) + "/" + std::to_string(info->term) + "/" +
               std::to_string(info->commit_index) + "/" + std::to_string(info->applied_index) + " ";
    }
    trace += "\n";
  }
  *completed = 0;
  for (auto& h : handles) *completed += h.Done() && h.Wait().ok() ? 1 : 0;
  for (auto& h : hosts) h->Close();
  return trace;
}

TEST(ManualDrive, OneThreadRunsThreeNodeHostsAndTheSameSeedReplaysExactly) {
  std::random_device rd;
  const std::string root =
      (std::filesystem::temp_directory_path() / ("flotilla-manual-" + std::to_string(rd())))
          .string();
  int completed_a = 0;
  int completed_b = 0;
  const std::string a = RunCluster(7, root + "/a", &completed_a);
  const std::string b = RunCluster(7, root + "/b", &completed_b);
  EXPECT_GT(completed_a, 200) << "the shard made progress";
  EXPECT_EQ(completed_a, completed_b);
  EXPECT_TRUE(a == b) << "the same seed must replay the same run";
  int completed_c = 0;
  const std::string c = RunCluster(8, root + "/c", &completed_c);
  EXPECT_GT(completed_c, 200);
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace flotilla::engine

namespace flotilla::engine {
namespace {

TEST(StorageFailure, AFullDiskStopsWritesAndSaysWhy) {
  std::random_device rd;
  const std::string root =
      (std::filesystem::temp_directory_path() / ("flotilla-nospace-" + std::to_string(rd())))
          .string();
  NodeHostConfig c;
  c.data_dir = root;
  c.rtt_ms = 5;
  NodeHostDeps d;
  auto db = logdb::NewMemoryLogDB();
  logdb::MemoryLogDB* raw = db.get();
  d.logdb = std::move(db);
  NodeHostImpl nh(c, std::move(d));
  ASSERT_TRUE(nh.Init().ok());
  ShardConfig sc;
  sc.shard_id = 1;
  sc.replica_id = 1;
  ASSERT_TRUE(nh.StartReplica(sc, {{1, nh.raft_address()}}, false, [](uint64_t, uint64_t) {
                  return std::make_unique<testing::KvStateMachine>();
                }).ok());
  RequestResult r;
  r.code = RequestCode::kDropped;
  for (int i = 0; i < 500 && !r.ok(); ++i) {
    r = nh.SyncPropose(1, "a=1", 5s);
    if (!r.ok()) std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(r.ok());
  raw->FailNextWrite(Status::NoSpace("simulated: no space left on device"));
  // The write that hits the full disk ends as terminated, never as applied.
  const RequestResult failed = nh.SyncPropose(1, "b=2", 5s);
  EXPECT_EQ(failed.code, RequestCode::kTerminated);
  // Later proposals are refused at once, with the reason.
  Result<RequestHandle> refused = nh.Propose(1, "c=3", 5s);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kNoSpace);
  EXPECT_NE(refused.status().message().find("LogDB"), std::string::npos)
      << refused.status().ToString();
  // Nothing that failed to persist was applied.
  EXPECT_EQ(*nh.StaleRead(1, "b"), "");
  nh.Close();
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace flotilla::engine

namespace flotilla::engine {
namespace {

// The campaign cap must not deadlock: a replica whose campaign failed (a
// pre-candidate whose pre-votes were lost) still holds its campaign slot, and
// must be able to campaign again when its election timer fires, even when
// the slots are all taken (by itself, among others). Found at 10,000 shards
// per NodeHost, where restarts stalled with every slot held by a failed
// pre-candidate.
TEST(CampaignCap, ACandidateHoldingASlotCampaignsAgain) {
  std::random_device rd;
  const std::string root =
      (std::filesystem::temp_directory_path() / ("flotilla-cap-" + std::to_string(rd()))).string();
  transport::InProcNetwork net;
  std::mt19937_64 rng(5);
  std::vector<std::unique_ptr<NodeHostImpl>> hosts;
  Members members;
  for (int i = 1; i <= 3; ++i) members[static_cast<uint64_t>(i)] = "host" + std::to_string(i);
  for (int i = 1; i <= 3; ++i) {
    NodeHostConfig c;
    c.data_dir = root + "/h" + std::to_string(i);
    c.raft_address = "host" + std::to_string(i);
    c.step_workers = 1;
    c.apply_workers = 1;
    c.max_concurrent_campaigns = 1;
    NodeHostDeps d;
    d.logdb = logdb::NewMemoryLogDB();
    d.start_threads = false;
    d.seed = 100 + static_cast<uint64_t>(i);
    const std::string name = c.raft_address;
    const std::string snapdir = c.data_dir + "/snapshots-in";
    d.make_transport = [&net, name, snapdir](transport::Registry* reg, transport::Handler* h) {
      transport::TransportConfig tc;
      tc.listen_address = name;
      tc.snapshot_dir = snapdir;
      return std::make_unique<transport::InProcTransport>(&net, tc, reg, h);
    };
    auto nh = std::make_unique<NodeHostImpl>(c, std::move(d));
    ASSERT_TRUE(nh->Init().ok());
    ShardConfig sc;
    sc.shard_id = 1;
    sc.replica_id = static_cast<uint64_t>(i);
    ASSERT_TRUE(nh->StartReplica(sc, members, false, [](uint64_t, uint64_t) {
                    return std::make_unique<testing::KvStateMachine>();
                  }).ok());
    hosts.push_back(std::move(nh));
  }
  auto run = [&](int ticks) {
    for (int t = 0; t < ticks; ++t) {
      for (auto& h : hosts) h->AdvanceTick();
      for (int k = 0; k < 3; ++k) {
        for (auto& h : hosts) h->RunOnce();
        net.DeliverAll(rng);
      }
    }
  };
  // Every campaign fails: all three become pre-candidates holding their slot.
  for (int i = 1; i <= 3; ++i) net.Isolate("host" + std::to_string(i));
  run(100);
  for (auto& h : hosts) EXPECT_EQ(h->campaigning().load(), 1u);
  net.HealAll();
  run(200);
  uint64_t leader = 0;
  for (auto& h : hosts) leader = std::max(leader, h->GetReplicaInfo(1)->leader_id);
  EXPECT_NE(leader, 0u) << "no leader: the campaign slots deadlocked";
  for (auto& h : hosts) h->Close();
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace flotilla::engine
