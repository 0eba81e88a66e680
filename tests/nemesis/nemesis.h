// Nemesis: the seeded fault schedule of the nemesis test. Each fault is
// applied, held for a while and healed; the schedule, the victims and the
// durations come from the seed alone, so a run's faults replay exactly
// (the clients' timing does not).
//
// Not thread-safe: one thread runs it.
#pragma once

#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "tests/nemesis/daemons.h"
#include "tests/nemesis/net_ns.h"
#include "tests/nemesis/workload.h"

namespace flotilla::nemesis {

enum class FaultKind {
  kIsolate,              // one node cut off from the others
  kSplit,                // a majority and a minority
  kOneWayLoss,           // a node's packets to one or all others lost (20, 50 or 100%)
  kBridge,               // two halves that one node connects
  kRing,                 // each node hears only its ring neighbours (3 nodes: one direction)
  kKill,                 // SIGKILL of one node, restarted later
  kStopStart,            // SIGTERM (must exit 0) and a restart
  kKillAll,              // SIGKILL of every node, all restarted
  kPauseLeader,          // SIGSTOP of a shard's leader, SIGCONT later
  kTransfer,             // leader transfer with the CLI
  kIdleTransferRestart,  // clients idle; a transfer, then a node restarted (clean or not)
  kTwoAtOnce,            // a network fault and a process fault together
  kCount,
};
const char* FaultName(FaultKind k);

struct FaultRecord {
  FaultKind kind;
  std::string what;                // victims and parameters
  double start_s = 0, heal_s = 0;  // since the workload started
  bool idle = false;               // the clients were idle during it
};

class Nemesis {
 public:
  Nemesis(NetNs* net, Daemons* daemons, Workload* workload, uint64_t seed);

  // Runs faults until `length` after the workload started, then heals
  // everything. Stops early after the first daemon exit it did not cause.
  void Run(std::chrono::seconds length);
  const std::vector<FaultRecord>& records() const { return records_; }
  // Everything that went wrong (unexpected exits, failed restarts, nft).
  const std::vector<std::string>& failures() const { return failures_; }
  // Idle spells, seconds since the workload started.
  const std::vector<std::pair<double, double>>& idle_spells() const { return idle_; }
  void Fail(std::string why) { failures_.push_back(std::move(why)); }
  // Restarts what is down, resumes what is paused, heals the network, and
  // waits until every node serves.
  void HealAll();
  // The node leading `shard` as the running, unpaused nodes report it; 0 if none.
  int LeaderOf(uint64_t shard);

 private:
  double Now() const;
  int RandomNode();
  std::chrono::milliseconds Hold();
  void Network(FaultKind kind, FaultRecord* r);
  void Process(FaultKind kind, FaultRecord* r, std::chrono::milliseconds hold);
  bool Transfer(uint64_t shard, int target);
  void Restart(int node, bool clean, FaultRecord* r);
  void SetIdle(bool idle);
  void CheckExits();
  FaultKind Next();

  NetNs* net_;
  Daemons* d_;
  Workload* w_;
  std::mt19937_64 rng_;
  std::vector<FaultKind> bag_;  // the kinds not yet drawn in this round
  std::vector<FaultRecord> records_;
  std::vector<std::string> failures_;
  std::vector<std::pair<double, double>> idle_;
  double idle_since_ = -1;
};

}  // namespace flotilla::nemesis
