#include "tests/nemesis/checks.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <thread>

#include "tests/lincheck/lincheck.h"
#include "tests/nemesis/nemesis.h"
#include "tests/nemesis/workload.h"
#include "tools/nodehost/client.h"

namespace flotilla::nemesis {
namespace {

using namespace std::chrono_literals;
using Contents = std::map<std::string, std::string>;

constexpr auto kConvergeLimit = 30s;
constexpr auto kServeLimit = 20s;
constexpr uint64_t kFinalClient = 999;
// Recovery ends at the first bucket after the heal with at least this share
// of the run's median throughput; the search stops after kRecoveryLimit.
constexpr double kRecoveredShare = 0.5;
constexpr double kRecoveryLimitS = 15;

std::unique_ptr<nodehost::Client> ClientOf(const std::string& endpoints, bool follow) {
  nodehost::ClientOptions o;
  o.endpoints = nodehost::SplitList(endpoints);
  o.timeout = 2s;
  o.follow_leader = follow;
  std::string error;
  return nodehost::Client::Create(o, &error);
}

// Every shard has a leader that every node knows, and every replica has
// applied what its shard committed, the same index everywhere.
bool Converged(Daemons* d, std::string* why) {
  std::unique_ptr<nodehost::Client> c = ClientOf(d->endpoints(), false);
  std::map<uint64_t, std::vector<uint64_t>> applied;
  for (int n = 1; n <= d->nodes(); ++n) {
    nodehost::ShardsResponse res;
    if (!c->Shards(d->client_address(n), &res).ok()) {
      *why = "node " + std::to_string(n) + " does not answer Shards";
      return false;
    }
    if (res.replicas().size() != static_cast<int>(d->shards())) {
      *why = "node " + std::to_string(n) + " runs " + std::to_string(res.replicas().size()) +
             " of " + std::to_string(d->shards()) +
             " shards (a replica failed to start?); its log ends:\n" + d->LogTail(n);
      return false;
    }
    for (const nodehost::ReplicaStatus& r : res.replicas()) {
      if (r.leader() == 0 || r.applied_index() != r.commit_index()) {
        *why = "node " + std::to_string(n) + " shard " + std::to_string(r.shard()) + ": leader " +
               std::to_string(r.leader()) + ", commit " + std::to_string(r.commit_index()) +
               ", applied " + std::to_string(r.applied_index());
        return false;
      }
      applied[r.shard()].push_back(r.applied_index());
    }
  }
  for (const auto& [shard, v] : applied) {
    if (v.size() != static_cast<size_t>(d->nodes()) ||
        std::adjacent_find(v.begin(), v.end(), std::not_equal_to<>()) != v.end()) {
      *why = "shard " + std::to_string(shard) + ": the replicas' applied indexes differ";
      return false;
    }
  }
  return true;
}

bool WaitConverged(Daemons* d, std::string* why) {
  const auto deadline = std::chrono::steady_clock::now() + kConvergeLimit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (Converged(d, why)) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

// What node `n`'s own replica of `shard` holds now (stale scans, paged).
bool ReadReplica(Daemons* d, int n, uint64_t shard, Contents* out) {
  std::unique_ptr<nodehost::Client> c = ClientOf(d->client_address(n), false);
  nodehost::Client::ScanRange range;
  for (;;) {
    std::vector<nodehost::KeyValue> kvs;
    bool more = false;
    if (!c->Scan(range, 1000, shard, /*stale=*/true, &kvs, &more).ok()) return false;
    for (const nodehost::KeyValue& kv : kvs) (*out)[kv.key()] = kv.value();
    if (!more || kvs.empty()) return true;
    range.start_after = kvs.back().key();
  }
}

// Every replica of every shard holds the same keys and values; `all` gets
// node 1's contents of every shard.
bool ReplicasIdentical(Daemons* d, Contents* all, std::vector<std::string>* failures) {
  bool same = true;
  for (uint64_t s = 1; s <= static_cast<uint64_t>(d->shards()); ++s) {
    std::vector<Contents> per_node(static_cast<size_t>(d->nodes()));
    for (int n = 1; n <= d->nodes(); ++n) {
      if (!ReadReplica(d, n, s, &per_node[static_cast<size_t>(n - 1)])) {
        failures->push_back("cannot scan node " + std::to_string(n) + " shard " +
                            std::to_string(s));
        return false;
      }
    }
    for (int n = 2; n <= d->nodes(); ++n) {
      if (per_node[static_cast<size_t>(n - 1)] == per_node[0]) continue;
      same = false;
      failures->push_back("shard " + std::to_string(s) + ": node " + std::to_string(n) + " holds " +
                          std::to_string(per_node[static_cast<size_t>(n - 1)].size()) +
                          " keys, node 1 " + std::to_string(per_node[0].size()) +
                          ", and they differ");
    }
    all->insert(per_node[0].begin(), per_node[0].end());
  }
  return same;
}

// Linearizable reads of the shared keys at the end, in the same history.
void FinalReads(Daemons* d, lincheck::History* h, std::vector<std::string>* failures) {
  std::unique_ptr<nodehost::Client> c = ClientOf(d->endpoints(), true);
  for (int k = 0; k < Workload::kSharedKeys; ++k) {
    const std::string key = "k" + std::to_string(k);
    const uint64_t id = h->Invoke(kFinalClient, lincheck::Command::Get(key));
    nodehost::GetResponse res;
    nodehost::CallInfo info;
    for (int i = 0; i < 20 && !(info = c->Get(key, false, &res)).ok(); ++i)
      std::this_thread::sleep_for(250ms);
    if (!info.ok()) {
      h->Complete(id, lincheck::Outcome::kFailed);
      failures->push_back("final read of " + key + " failed: " + info.status.error_message());
      continue;
    }
    h->Complete(id, lincheck::Outcome::kOk,
                lincheck::Response::Read(res.found() ? std::optional<std::string>(res.value())
                                                     : std::nullopt));
  }
}

// Each daemon is stopped with SIGTERM (exit 0 expected) and restarted, then
// SIGKILLed and restarted; each must serve again and the shards converge.
void RestartEach(Daemons* d, std::vector<std::string>* failures) {
  for (int n = 1; n <= d->nodes(); ++n) {
    for (bool clean : {true, false}) {
      if (clean) {
        const int rc = d->Stop(n);
        if (rc != 0)
          failures->push_back("final restart: node " + std::to_string(n) + " exited with " +
                              std::to_string(rc) + " on SIGTERM; its log ends:\n" + d->LogTail(n));
      } else {
        d->Kill(n);
      }
      std::string why;
      if (!d->Start(n) || !d->WaitServing(n, kServeLimit, &why)) {
        failures->push_back(std::string("final restart (") +
                            (clean ? "after SIGTERM" : "after SIGKILL") + "): " + why);
        return;
      }
    }
  }
  std::string why;
  if (!WaitConverged(d, &why)) failures->push_back("after the final restarts: " + why);
}

struct Recovery {
  double outage_s = 0, recovery_s = 0;
};

bool InIdle(const std::vector<std::pair<double, double>>& idle, double t) {
  for (const auto& [a, b] : idle)
    if (t >= a && t < b) return true;
  return false;
}

// Recovery: from the heal to the first 100 ms with at least half the
// run's median throughput (-1: the run ended first). Outage: the longest
// stretch below that from the fault's start until it recovered, idle spells
// excluded.
Recovery Measure(const FaultRecord& r, const std::vector<uint64_t>& buckets, double median,
                 const std::vector<std::pair<double, double>>& idle) {
  const double step = std::chrono::duration<double>(Workload::kBucket).count();
  const auto good = [&](size_t i) {
    return static_cast<double>(buckets[i]) >= kRecoveredShare * median;
  };
  Recovery out;
  out.recovery_s = -1;
  for (double t = r.heal_s; t < r.heal_s + kRecoveryLimitS; t += step) {
    const auto i = static_cast<size_t>(t / step);
    if (i >= buckets.size()) break;
    if (!InIdle(idle, t) && good(i)) {
      out.recovery_s = t - r.heal_s;
      break;
    }
  }
  const double end = out.recovery_s < 0 ? r.heal_s : r.heal_s + out.recovery_s;
  double gap = 0;
  for (double t = r.start_s; t < end; t += step) {
    const auto i = static_cast<size_t>(t / step);
    if (i >= buckets.size() || InIdle(idle, t) || good(i)) {
      gap = 0;
      continue;
    }
    gap += step;
    out.outage_s = std::max(out.outage_s, gap);
  }
  return out;
}

void Report(const Nemesis& nem, const Workload& w) {
  const std::vector<uint64_t> buckets = w.Buckets();
  std::vector<uint64_t> busy;
  for (size_t i = 0; i < buckets.size(); ++i)
    if (buckets[i] > 0) busy.push_back(buckets[i]);
  std::sort(busy.begin(), busy.end());
  const double median = busy.empty() ? 0 : static_cast<double>(busy[busy.size() / 2]);
  std::printf("\nnemesis: median throughput %.0f ops/s\n%-8s %-22s %-8s %-9s %s\n", median * 10,
              "start_s", "fault", "outage_s", "recover_s", "detail");
  std::map<std::string, std::vector<Recovery>> by_kind;
  for (const FaultRecord& r : nem.records()) {
    const Recovery m = Measure(r, buckets, median, nem.idle_spells());
    by_kind[FaultName(r.kind)].push_back(m);
    std::printf("%-8.1f %-22s %-8.1f %-9.1f%s%s\n", r.start_s, FaultName(r.kind), m.outage_s,
                m.recovery_s, r.what.c_str(), r.idle ? " (idle)" : "");
  }
  std::printf("\n%-22s %5s %10s %10s %12s %12s\n", "kind", "count", "outage_avg", "outage_max",
              "recover_avg", "recover_max");
  for (const auto& [kind, v] : by_kind) {
    double oa = 0, om = 0, ra = 0, rm = 0;
    size_t measured = 0;
    for (const Recovery& m : v) {
      if (m.recovery_s < 0) continue;  // the run ended before it recovered
      ++measured;
      oa += m.outage_s;
      ra += m.recovery_s;
      om = std::max(om, m.outage_s);
      rm = std::max(rm, m.recovery_s);
    }
    if (measured > 0) {
      oa /= static_cast<double>(measured);
      ra /= static_cast<double>(measured);
    }
    std::printf("%-22s %5zu %10.2f %10.2f %12.2f %12.2f\n", kind.c_str(), v.size(), oa, om, ra, rm);
  }
  const WorkloadStats s = w.stats();
  std::printf(
      "\noperations: %lu ok, %lu failed, %lu unknown; gets %lu, puts %lu, cas %lu, session "
      "writes %lu (%lu resent, %lu applied earlier with the result lost), own-key puts %lu\n",
      s.ok, s.failed, s.unknown, s.gets, s.puts, s.cas, s.session_writes, s.session_resends,
      s.session_result_lost, s.own_puts);
}

bool StartAll(Daemons* d, std::vector<std::string>* failures) {
  for (int n = 1; n <= d->nodes(); ++n) d->Start(n);
  for (int n = 1; n <= d->nodes(); ++n) {
    std::string why;
    if (!d->WaitServing(n, kServeLimit, &why)) return failures->push_back(why), false;
  }
  std::string why;
  if (!WaitConverged(d, &why)) return failures->push_back("no leaders at start: " + why), false;
  return true;
}

// After the run: linearizability, acknowledged writes, identical replicas.
void CheckData(Daemons* d, Workload* w, std::vector<std::string>* failures) {
  FinalReads(d, &w->history(), failures);
  std::string why;
  if (!WaitConverged(d, &why)) failures->push_back("after the heal: " + why);
  Contents all;
  if (ReplicasIdentical(d, &all, failures)) {
    size_t missing = 0;
    std::string example;
    for (const auto& [key, value] : w->Acknowledged()) {
      const auto it = all.find(key);
      if (it != all.end() && it->second == value) continue;
      if (++missing == 1) example = key;
    }
    std::printf("nemesis: %zu acknowledged own-key writes, %zu missing; %zu keys in all\n",
                w->Acknowledged().size(), missing, all.size());
    if (missing > 0)
      failures->push_back(std::to_string(missing) + " acknowledged writes are missing, e.g. " +
                          example);
  }
  const std::vector<lincheck::Operation> ops = w->history().Operations();
  const lincheck::CheckResult result = lincheck::Check(ops);
  std::printf("nemesis: history of %zu operations: %s\n", ops.size(),
              std::string(lincheck::VerdictName(result.verdict)).c_str());
  if (result.verdict == lincheck::Verdict::kViolation ||
      result.verdict == lincheck::Verdict::kInvalidHistory)
    failures->push_back("the history is not linearizable:\n" + result.explanation);
}

}  // namespace

int RunAndCheck(NetNs* net, Daemons* d, uint64_t seed, int clients, std::chrono::seconds length) {
  std::vector<std::string> failures;
  if (!StartAll(d, &failures)) {
    std::fprintf(stderr, "nemesis: FAILED to start: %s\n", failures[0].c_str());
    return 1;
  }
  Workload w(d->endpoints(), clients, seed);
  Nemesis nem(net, d, &w, seed);
  w.Start();
  nem.Run(length);
  w.Stop();
  failures = nem.failures();
  if (failures.empty()) CheckData(d, &w, &failures);
  if (failures.empty()) RestartEach(d, &failures);
  for (std::string& e : d->Reap()) failures.push_back(std::move(e));
  Report(nem, w);
  for (const std::string& f : failures) std::printf("\nnemesis: FAILURE: %s\n", f.c_str());
  return failures.empty() ? 0 : 1;
}

}  // namespace flotilla::nemesis
