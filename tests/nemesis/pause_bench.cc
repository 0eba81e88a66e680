// Throughput of the nodehost client while a shard's leader is paused
// (SIGSTOP): three daemons on loopback, one shard, C client threads doing
// puts and linearizable gets for S seconds, the leader stopped for P seconds
// in the middle and continued. Prints the operations per second before,
// during and after the pause, and how the failed operations ended.
//
//   nodehost_pause_bench [--clients 8] [--seconds 5] [--paused 5]
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <random>
#include <thread>

#include "tests/nodehost/test_cluster.h"
#include "tools/nodehost/client.h"

namespace flotilla::nodehost {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

int LeaderOf(const testing::TestCluster& cluster) {
  ClientOptions o;
  o.endpoints = SplitList(cluster.endpoints());
  std::string error;
  std::unique_ptr<Client> c = Client::Create(o, &error);
  for (const std::string& e : o.endpoints) {
    ShardsResponse res;
    if (!c->Shards(e, &res).ok()) continue;
    for (const ReplicaStatus& r : res.replicas())
      if (r.leader() != 0) return static_cast<int>(r.leader());
  }
  return 0;
}

struct Counts {
  std::atomic<uint64_t> ok{0}, failed{0};
};

void Client(const testing::TestCluster& cluster, int id, const std::atomic<bool>& stop,
            const std::atomic<Counts*>* phase) {
  ClientOptions o;
  o.endpoints = SplitList(cluster.endpoints());
  std::string error;
  std::unique_ptr<nodehost::Client> c = Client::Create(o, &error);
  std::mt19937_64 rng(static_cast<uint64_t>(id));
  uint64_t n = 0;
  while (!stop.load()) {
    const std::string key = "k" + std::to_string(rng() % 64);
    CallInfo info;
    if (rng() % 2 == 0) {
      PutResponse res;
      info = c->Put(key, "v" + std::to_string(++n), &res);
    } else {
      GetResponse res;
      info = c->Get(key, false, &res);
    }
    Counts* counts = phase->load();
    (info.ok() ? counts->ok : counts->failed).fetch_add(1);
  }
}

int Run(int clients, std::chrono::seconds phase_length, std::chrono::seconds paused) {
  testing::TestCluster::Options opt;
  opt.shards = 1;
  testing::TestCluster cluster(opt);
  if (!cluster.Start()) {
    std::fprintf(stderr, "the cluster did not start\n");
    return 1;
  }
  Counts before, during, after;
  std::atomic<Counts*> current{&before};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i)
    threads.emplace_back([&, i] { Client(cluster, i + 1, stop, &current); });
  std::this_thread::sleep_for(phase_length);
  const int leader = LeaderOf(cluster);
  cluster.SignalNode(leader, SIGSTOP);
  current.store(&during);
  std::this_thread::sleep_for(paused);
  cluster.SignalNode(leader, SIGCONT);
  current.store(&after);
  std::this_thread::sleep_for(phase_length);
  stop.store(true);
  for (std::thread& t : threads) t.join();
  const auto rate = [](const Counts& c, std::chrono::seconds s) {
    return static_cast<double>(c.ok.load()) / static_cast<double>(s.count());
  };
  std::printf("clients %d, leader node %d paused %lld s\n", clients, leader,
              static_cast<long long>(paused.count()));
  std::printf("before: %8.0f ops/s (%lu failed)\n", rate(before, phase_length),
              before.failed.load());
  std::printf("paused: %8.0f ops/s (%lu failed)\n", rate(during, paused), during.failed.load());
  std::printf("after:  %8.0f ops/s (%lu failed)\n", rate(after, phase_length), after.failed.load());
  return 0;
}

}  // namespace
}  // namespace flotilla::nodehost

int main(int argc, char** argv) {
  int clients = 8, seconds = 5, paused = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (flag == "--clients")
      clients = v;
    else if (flag == "--seconds")
      seconds = v;
    else if (flag == "--paused")
      paused = v;
  }
  return flotilla::nodehost::Run(clients, std::chrono::seconds(seconds),
                                 std::chrono::seconds(paused));
}
