// Linearizability of the nodehost client API: several clients put, get,
// delete and compare-and-set a few keys through three real daemons while the
// daemon leading shard 1 is killed with SIGKILL and restarted. The history
// is checked with tests/lincheck; a lost acknowledged write would show as a
// read that no order explains. Afterwards every daemon, the restarted one
// included, holds the same values.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <random>
#include <thread>

#include "tests/lincheck/lincheck.h"
#include "tests/nodehost/test_cluster.h"
#include "tests/nodehost/write_outcome.h"
#include "tools/nodehost/client.h"

namespace flotilla::nodehost {
namespace {

using lincheck::Command;
using lincheck::Outcome;
using lincheck::Response;
using namespace std::chrono_literals;

constexpr int kClients = 5;
constexpr int kKeys = 6;
// The default run: 12 s with one kill at 3 s and a restart at 6 s.
// FLOTILLA_NODEHOST_LINCHECK_SECONDS=N runs N seconds with a kill every
// kKillPeriod (the soak variant).
constexpr auto kDefaultRun = 12s;
constexpr auto kKillPeriod = 20s;
constexpr auto kKillAt = 3s;
constexpr auto kRestartAt = 6s;

std::chrono::seconds RunLength() {
  const char* env = std::getenv("FLOTILLA_NODEHOST_LINCHECK_SECONDS");
  return env != nullptr ? std::chrono::seconds(std::atoi(env)) : kDefaultRun;
}

std::unique_ptr<Client> MakeClient(const testing::TestCluster& cluster) {
  ClientOptions o;
  o.endpoints = SplitList(cluster.endpoints());
  o.timeout = 2s;
  std::string error;
  std::unique_ptr<Client> c = Client::Create(o, &error);
  EXPECT_NE(c, nullptr) << error;
  return c;
}

// One random operation by `client_id`, recorded in `h`. True if it completed.
bool RunOne(Client* c, lincheck::History* h, uint64_t client_id, std::mt19937_64* rng,
            uint64_t* seq) {
  const std::string key = "k" + std::to_string((*rng)() % kKeys);
  const std::string value = "c" + std::to_string(client_id) + "-" + std::to_string(++*seq);
  const int dice = static_cast<int>((*rng)() % 10);
  if (dice < 4) {
    const uint64_t id = h->Invoke(client_id, Command::Get(key));
    GetResponse res;
    const CallInfo info = c->Get(key, false, &res);
    if (!info.ok()) return h->Complete(id, Outcome::kFailed), false;
    h->Complete(
        id, Outcome::kOk,
        Response::Read(res.found() ? std::optional<std::string>(res.value()) : std::nullopt));
    return true;
  }
  if (dice < 7) {
    const uint64_t id = h->Invoke(client_id, Command::Put(key, value));
    PutResponse res;
    const CallInfo info = c->Put(key, value, &res);
    if (!info.ok()) return h->Complete(id, testing::WriteFailure(info)), false;
    h->Complete(id, Outcome::kOk);
    return true;
  }
  if (dice < 8) {
    const uint64_t id = h->Invoke(client_id, Command::Delete(key));
    DeleteResponse res;
    const CallInfo info = c->Delete(key, &res);
    if (!info.ok()) return h->Complete(id, testing::WriteFailure(info)), false;
    h->Complete(id, Outcome::kOk);
    return true;
  }
  // Compare-and-set against a value some client may have written.
  const std::optional<std::string> expected =
      (*rng)() % 4 == 0 ? std::nullopt
                        : std::optional<std::string>("c" + std::to_string((*rng)() % kClients) +
                                                     "-" + std::to_string((*rng)() % (*seq + 1)));
  const uint64_t id = h->Invoke(client_id, Command::Cas(key, expected, value));
  CasResponse res;
  const CallInfo info = c->Cas(key, expected, value, &res);
  if (!info.ok()) return h->Complete(id, testing::WriteFailure(info)), false;
  h->Complete(id, Outcome::kOk, Response::Swapped(res.swapped()));
  return true;
}

int LeaderNodeOf(Client* c, const testing::TestCluster& cluster, uint64_t shard) {
  for (const std::string& e : SplitList(cluster.endpoints())) {
    ShardsResponse res;
    if (!c->Shards(e, &res).ok()) continue;
    for (const ReplicaStatus& r : res.replicas())
      if (r.shard() == shard && r.leader() != 0) return static_cast<int>(r.leader());
  }
  return 0;
}

// Every daemon's own state machine holds `expected` for every key, once it
// has caught up.
void ExpectReplicasAgree(const testing::TestCluster& cluster,
                         const std::map<std::string, std::optional<std::string>>& expected) {
  for (int node = 1; node <= 3; ++node) {
    ClientOptions o;
    o.endpoints = {cluster.client_address(node)};
    o.follow_leader = false;
    std::string error;
    std::unique_ptr<Client> c = Client::Create(o, &error);
    ASSERT_NE(c, nullptr);
    bool agree = false;
    std::string last;
    for (int attempt = 0; attempt < 100 && !agree; ++attempt) {
      agree = true;
      for (const auto& [key, value] : expected) {
        GetResponse res;
        const CallInfo info = c->Get(key, /*stale=*/true, &res);
        const std::optional<std::string> got =
            res.found() ? std::optional<std::string>(res.value()) : std::nullopt;
        if (!info.ok() || got != value) {
          agree = false;
          last = key + " = " + (got ? *got : "(absent)") + ", expected " +
                 (value ? *value : "(absent)");
          break;
        }
      }
      if (!agree) std::this_thread::sleep_for(100ms);
    }
    EXPECT_TRUE(agree) << "node " << node << " did not catch up: " << last;
  }
}

TEST(NodehostLinearizability, SigkillAndRestartOfALeaderMidRun) {
  testing::TestCluster::Options opt;
  opt.shards = 2;
  opt.snapshot_entries = 200;  // the restarted node may need a snapshot
  opt.compaction_overhead = 50;
  testing::TestCluster cluster(opt);
  ASSERT_TRUE(cluster.Start()) << cluster.log_of(1);
  lincheck::History history;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> completed{0}, completed_while_down{0};
  std::atomic<bool> down{false};
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      std::unique_ptr<Client> c = MakeClient(cluster);
      std::mt19937_64 rng(static_cast<uint64_t>(1000 + i));
      uint64_t seq = 0;
      while (!stop.load()) {
        if (RunOne(c.get(), &history, static_cast<uint64_t>(i + 1), &rng, &seq)) {
          ++completed;
          if (down.load()) ++completed_while_down;
        }
      }
    });
  }
  std::unique_ptr<Client> admin = MakeClient(cluster);
  const auto start = std::chrono::steady_clock::now();
  const auto run = RunLength();
  int victim = 0;
  int kills = 0;
  for (auto period = start; period + kRestartAt < start + run; period += kKillPeriod) {
    std::this_thread::sleep_until(period + kKillAt);
    victim = LeaderNodeOf(admin.get(), cluster, 1 + static_cast<uint64_t>(kills % 2));
    ASSERT_NE(victim, 0);
    cluster.KillNode(victim);
    ++kills;
    down.store(true);
    std::this_thread::sleep_until(period + kRestartAt);
    down.store(false);
    ASSERT_TRUE(cluster.StartNode(victim));
  }
  std::this_thread::sleep_until(start + run);
  stop.store(true);
  for (std::thread& t : clients) t.join();

  // Final linearizable reads, recorded in the same history.
  std::map<std::string, std::optional<std::string>> final_values;
  for (int k = 0; k < kKeys; ++k) {
    const std::string key = "k" + std::to_string(k);
    const uint64_t id = history.Invoke(99, Command::Get(key));
    GetResponse res;
    CallInfo info;
    for (int attempt = 0; attempt < 10 && !(info = admin->Get(key, false, &res)).ok(); ++attempt)
      std::this_thread::sleep_for(200ms);
    ASSERT_TRUE(info.ok()) << info.status.error_message();
    final_values[key] = res.found() ? std::optional<std::string>(res.value()) : std::nullopt;
    history.Complete(id, Outcome::kOk, Response::Read(final_values[key]));
  }
  const std::vector<lincheck::Operation> ops = history.Operations();
  size_t ok = 0, unknown = 0;
  for (const auto& op : ops) {
    ok += op.outcome == Outcome::kOk;
    unknown += op.outcome == Outcome::kUnknown;
  }
  std::printf(
      "history: %zu operations, %zu ok, %zu unknown; %d SIGKILL(s), last of node %d; %llu "
      "completed while a node was down\n",
      ops.size(), ok, unknown, kills, victim,
      static_cast<unsigned long long>(completed_while_down.load()));
  EXPECT_GT(completed_while_down.load(), 20u) << "the surviving majority stopped serving";
  EXPECT_GT(ok, 500u);
  const lincheck::CheckResult result = lincheck::Check(ops);
  EXPECT_EQ(result.verdict, lincheck::Verdict::kLinearizable) << result.explanation;
  ExpectReplicasAgree(cluster, final_values);
}

}  // namespace
}  // namespace flotilla::nodehost
