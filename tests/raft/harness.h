// A test harness that drives several Raft peers of one shard with an
// in-memory log per node and an explicit message queue. Used by the scenario
// runner (text scripts), the safety-rule tests and the randomized simulation.
//
// Persistence model: ProcessUpdate(id) takes one Update, "persists" it into
// the node's MemoryLog (a crash after GetUpdate and before the persist loses
// it), queues its messages, applies its committed entries and advances.
//
// Not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/raft/peer.h"

namespace flotilla::raft::testing {

// The state machine of a test node: the sequence of applied normal commands.
struct AppliedState {
  std::vector<std::string> cmds;
  Index applied = 0;
  friend bool operator==(const AppliedState&, const AppliedState&) = default;
};

struct Node {
  ReplicaId id = 0;
  Config cfg;
  Membership initial;
  std::unique_ptr<MemoryLog> log;
  std::unique_ptr<Peer> peer;  // null while crashed
  AppliedState sm;
  // Snapshot data taken locally or received, by snapshot index.
  std::map<Index, AppliedState> snapshots;
  std::vector<ReadState> reads;  // ready reads, in order
  bool removed = false;
};

// Observes every event for invariant checks (the randomized simulation).
struct Observer {
  std::function<void(ReplicaId, const Entry&)> on_apply;
  std::function<void(ReplicaId, const ReadState&)> on_read;
  std::function<void(ReplicaId, const Update&)> on_update;
};

class Harness {
 public:
  explicit Harness(std::string* out = nullptr) : out_(out) {}

  // Adds node `id` that bootstraps with `initial` (empty: joins later).
  void AddNode(ReplicaId id, const Config& cfg, const Membership& initial);
  // Adds node `id` as if restarted from a persisted log and hard state.
  void AddNodeWithLog(ReplicaId id, const Config& cfg, const std::vector<Entry>& entries,
                      const HardState& hs);
  Node& node(ReplicaId id) { return nodes_.at(id); }
  std::map<ReplicaId, Node>& nodes() { return nodes_; }
  bool Has(ReplicaId id) const { return nodes_.count(id) != 0; }

  // Takes, persists and applies one Update of `id`. Returns false when it
  // had none.
  bool ProcessUpdate(ReplicaId id);
  // Like ProcessUpdate, but the node crashes after GetUpdate and before the
  // persist: the Update is lost, messages sent before persisting are kept.
  void CrashDuringUpdate(ReplicaId id);
  // Delivers queued messages addressed to `to` (all queued when to == 0).
  // Returns the number delivered.
  size_t Deliver(ReplicaId to = 0);
  // Delivers the queued message at position `i`.
  void DeliverAt(size_t i);
  // Repeats updates and deliveries until nothing is left.
  void Stabilize(const std::vector<ReplicaId>& ids = {});

  void Tick(ReplicaId id, int n = 1);
  void Crash(ReplicaId id);
  void Restart(ReplicaId id);
  // Takes a snapshot on `id` at its applied index and compacts the log so
  // that only entries after `index` remain.
  void Compact(ReplicaId id, Index index);

  // Network faults. Messages between a cut pair (from, to) are dropped.
  void Cut(ReplicaId from, ReplicaId to) { cut_.insert({from, to}); }
  void Isolate(ReplicaId id);
  void Heal() { cut_.clear(); }
  std::deque<Message>& queue() { return queue_; }

  void set_observer(Observer o) { observer_ = std::move(o); }
  void set_verbose(bool v) { verbose_ = v; }
  // Report the outcome of each delivered (or lost) snapshot to its sender.
  void set_auto_report_snapshots(bool v) { auto_report_ = v; }

  // Formatting used by the scenario files.
  static std::string Describe(const Message& m);
  static std::string Describe(const Entry& e);
  std::string StatusLine(ReplicaId id);
  std::string LogLine(ReplicaId id);

 private:
  void Print(const std::string& s);
  void Enqueue(std::vector<Message>* msgs);
  void Apply(Node& n, const Update& u);
  void DeliverOne(Message m);

  std::string* out_;
  bool verbose_ = true;
  bool auto_report_ = false;
  std::map<ReplicaId, Node> nodes_;
  // Snapshot data by index, shared by all nodes: state-machine safety makes
  // the state at one index the same everywhere.
  std::map<Index, AppliedState> snapshot_data_;
  std::deque<Message> queue_;
  std::set<std::pair<ReplicaId, ReplicaId>> cut_;
  Observer observer_;
};

}  // namespace flotilla::raft::testing
