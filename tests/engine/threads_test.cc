// Every thread of the engine at once, on code ThreadSanitizer can see: three
// NodeHosts with their own worker, tick and snapshot threads on the
// in-process network (delivered by a thread of this test) and the in-memory
// LogDB, while client threads propose, read, look up, register callbacks that
// call back in, take snapshots and stop and restart a replica, and the
// network isolates one host and heals it. The gRPC tests cannot be judged by
// ThreadSanitizer (gRPC and Abseil are not instrumented), so this test is
// where the engine's own locking is checked under it (tools/run-tests.sh).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
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

constexpr int kHosts = 3;
constexpr uint64_t kShards = 4;

std::string Name(int i) { return "host" + std::to_string(i); }

class ThreadedCluster {
 public:
  explicit ThreadedCluster(const std::string& root) {
    for (int i = 1; i <= kHosts; ++i) {
      NodeHostConfig c;
      c.data_dir = root + "/" + Name(i);
      c.raft_address = Name(i);
      c.rtt_ms = 2;
      c.step_workers = 2;
      c.apply_workers = 2;
      NodeHostDeps d;
      d.logdb = logdb::NewMemoryLogDB();
      d.seed = static_cast<uint64_t>(i);
      const std::string snapdir = c.data_dir + "/snapshots-in";
      d.make_transport = [this, i, snapdir](transport::Registry* reg, transport::Handler* h) {
        transport::TransportConfig tc;
        tc.listen_address = Name(i);
        tc.snapshot_dir = snapdir;
        return std::make_unique<transport::InProcTransport>(&net_, tc, reg, h);
      };
      hosts_.push_back(std::make_unique<NodeHostImpl>(c, std::move(d)));
      EXPECT_TRUE(hosts_.back()->Init().ok());
    }
    for (uint64_t s = 1; s <= kShards; ++s) {
      for (int i = 1; i <= kHosts; ++i) EXPECT_TRUE(Start(i, s).ok());
    }
    deliver_ = std::thread([this] {
      std::mt19937_64 rng(1);
      while (!stop_.load()) {
        net_.AdvanceTime(1);
        if (net_.DeliverAll(rng) == 0) std::this_thread::sleep_for(200us);
      }
    });
  }
  ~ThreadedCluster() {
    // The network must not be delivering while its transports stop.
    stop_.store(true);
    deliver_.join();
    for (auto& h : hosts_) h->Close();
  }
  Status Start(int host, uint64_t shard) {
    ShardConfig sc;
    sc.shard_id = shard;
    sc.replica_id = static_cast<uint64_t>(host);
    sc.snapshot_entries = 20;
    sc.compaction_overhead = 5;
    Members m;
    for (int i = 1; i <= kHosts; ++i) m[static_cast<uint64_t>(i)] = Name(i);
    return hosts_[static_cast<size_t>(host - 1)]->StartReplica(
        sc, m, StartMode::kNewShard,
        [](uint64_t, uint64_t) { return std::make_unique<testing::KvStateMachine>(); });
  }
  NodeHostImpl& host(int i) { return *hosts_[static_cast<size_t>(i - 1)]; }
  transport::InProcNetwork& net() { return net_; }

 private:
  transport::InProcNetwork net_;
  std::vector<std::unique_ptr<NodeHostImpl>> hosts_;
  std::atomic<bool> stop_{false};
  std::thread deliver_;
};

// One client: for `run_for`, a random operation on a random host and shard.
void Client(ThreadedCluster& cl, uint64_t seed, std::chrono::milliseconds run_for,
            std::atomic<int>* completed, std::atomic<int>* callbacks) {
  std::mt19937_64 rng(seed);
  const auto end = std::chrono::steady_clock::now() + run_for;
  std::vector<RequestHandle> handles;
  while (std::chrono::steady_clock::now() < end) {
    NodeHostImpl& h = cl.host(1 + static_cast<int>(rng() % kHosts));
    const uint64_t shard = 1 + rng() % kShards;
    switch (rng() % 8) {
      case 0:
      case 1:
      case 2: {
        auto r =
            h.Propose(shard, "k" + std::to_string(rng() % 16) + "=" + std::to_string(rng()), 2s);
        if (r.ok()) handles.push_back(*r);
        break;
      }
      case 3: {
        auto r = h.Propose(shard, "c=1", 2s);
        if (!r.ok()) break;
        // A callback that calls back in, on whichever thread completes it.
        r->OnComplete([&h, shard, callbacks](const RequestResult&) {
          (void)h.Read(shard, "c", 1s);  // only that it returns matters
          callbacks->fetch_add(1);
        });
        break;
      }
      case 4: {
        auto r = h.Read(shard, "k1", 2s);
        if (r.ok()) handles.push_back(*r);
        break;
      }
      case 5:
        (void)h.GetMetrics();  // concurrent readers of the engine's state
        (void)h.GetInfo();
        (void)h.GetMembership(shard);
        break;
      case 6: {
        auto r = h.RequestSnapshot(shard, 2s);
        if (r.ok()) handles.push_back(*r);
        break;
      }
      default:
        (void)h.StaleRead(shard, "k2");
        break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 500));
  }
  for (const RequestHandle& r : handles) {
    if (r.Wait().ok()) completed->fetch_add(1);
  }
}

TEST(ThreadedNodeHosts, ClientsWorkersAndTheNetworkRunConcurrently) {
  std::random_device rd;
  const std::string root =
      (std::filesystem::temp_directory_path() / ("flotilla-threads-" + std::to_string(rd())))
          .string();
  std::atomic<int> completed{0};
  std::atomic<int> callbacks{0};
  {
    ThreadedCluster cl(root);
    std::vector<std::thread> clients;
    for (uint64_t i = 0; i < 3; ++i) {
      clients.emplace_back(Client, std::ref(cl), i + 1, 3000ms, &completed, &callbacks);
    }
    // Meanwhile: host 3 is cut off and comes back (its replicas catch up by
    // entries or snapshots), and its replica of shard 4 is stopped and
    // restarted from the LogDB while clients address it.
    std::this_thread::sleep_for(600ms);
    cl.net().Isolate(Name(3));
    std::this_thread::sleep_for(600ms);
    EXPECT_TRUE(cl.host(3).StopReplica(kShards).ok());
    std::this_thread::sleep_for(100ms);
    EXPECT_TRUE(cl.Start(3, kShards).ok());
    cl.net().Heal(Name(3));
    for (auto& t : clients) t.join();
  }
  EXPECT_GT(completed.load(), 100) << "the shards made progress";
  EXPECT_GT(callbacks.load(), 10);
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace flotilla::engine
