// Replica: one shard replica inside a NodeHost, and the queues through which
// client threads, the transport, the step worker and the apply worker meet.
//
// Thread-safety, per group of fields:
//  - `peer`, `log`, `update` and the scratch vectors: the owning step worker only.
//  - inbound queues: `mu_`.
//  - pending requests: `pending_mu_`.
//  - the state machine: locked inside ManagedStateMachine per its kind;
//    the apply queue: `apply_mu_`.
//  - reported state (leader, term, ...): atomics, read by any thread.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/log_cache.h"
#include "engine/managed_sm.h"
#include "engine/raft/conf_change.h"
#include "engine/raft/peer.h"
#include "engine/request_state.h"
#include "engine/sessions.h"
#include "engine/snapshot_files.h"
#include "flotilla/config.h"
#include "flotilla/state_machine.h"

namespace flotilla::engine {

// Work handed from the step worker to the apply worker.
struct ApplyTask {
  std::optional<raft::SnapshotMeta> snapshot;  // restore this first
  // Keeps `snapshot`'s directory until it is restored: a later snapshot that
  // the step worker records meanwhile prunes the ones below it.
  std::shared_ptr<void> snapshot_pin;
  std::vector<raft::Entry> entries;
  std::vector<raft::ReadState> reads;
  std::vector<uint64_t> dropped_reads;
  std::vector<uint64_t> dropped_keys;
};

struct ConfRequest {
  raft::ConfChange change;
  uint64_t key = 0;
};

class Replica {
 public:
  Replica(const ShardConfig& cfg, std::unique_ptr<ManagedStateMachine> sm)
      : shard_id(cfg.shard_id), replica_id(cfg.replica_id), config(cfg), sm_(std::move(sm)) {}

  const uint64_t shard_id;
  const uint64_t replica_id;
  const ShardConfig config;

  // --- Step worker only.
  std::unique_ptr<LogCache> log;
  std::unique_ptr<raft::Peer> peer;
  raft::Update update;
  bool in_pass = false;
  bool has_update = false;
  std::vector<raft::Message> inbound_scratch;
  std::vector<raft::Entry> proposal_scratch;
  // The request of each entry of proposal_scratch, index for index.
  std::vector<std::shared_ptr<internal::RequestState>> proposal_state_scratch;
  std::vector<uint64_t> read_scratch;
  std::vector<ConfRequest> conf_scratch;
  std::vector<uint64_t> transfer_scratch;
  std::vector<std::pair<raft::ReplicaId, bool>> report_scratch;  // (replica, snapshot failed?)
  std::vector<raft::ReplicaId> unreachable_scratch;
  std::vector<raft::SnapshotMeta> taken_scratch;
  std::vector<std::pair<raft::ReplicaId, std::string>> learned_scratch;  // (sender, its address)
  // It asked the NodeHost's CampaignSlots for a slot: it holds one or waits.
  bool campaign_slot_asked = false;
  bool conf_committed = false;                // the current Update commits a membership change
  raft::HardState saved_hs;                   // the last hard state saved
  std::optional<raft::HardState> unsaved_hs;  // a commit-only change not yet saved
  uint64_t reported_leader = 0;
  uint64_t removed_at_tick = 0;  // when it saw its own removal applied (0: not removed)
  // When it last tried to hand leadership off for a full disk, and in which
  // episode of low storage (HandOffIfStorageLow).
  uint64_t handoff_at_tick = 0;
  uint64_t handoff_episode = 0;
  std::string snapshot_root;  // immutable after start
  // Who sent each received snapshot whose install message passed the
  // inbound checks, by index: the core installs the directory of that
  // sender only (step worker only; entries at or below the commit index go).
  std::map<uint64_t, SnapshotSender> accepted_snapshots;
  // Snapshot directories being streamed to followers (any thread).
  const std::shared_ptr<SnapshotPins> snapshot_pins = std::make_shared<SnapshotPins>();

  // --- Inbound queues (any thread). Return false when the bounded queue is full.
  // `source` is the address of the NodeHost that sent `m` (empty: unknown): the
  // first message from each sender records it, for the step worker to add
  // to the registry when the sender's address is not known yet.
  bool PushMessage(raft::Message&& m, size_t max_len, const std::string& source);
  // Bounded by count and by payload bytes.
  // Queues a proposal and its request (null in tests that drive the queue
  // alone).
  bool PushProposal(raft::Entry&& e, std::shared_ptr<internal::RequestState> state, size_t max_len,
                    uint64_t max_bytes);
  bool PushRead(uint64_t ctx, size_t max_len);
  void PushConfChange(ConfRequest&& c);
  void PushTransfer(uint64_t target);
  void PushUnreachable(raft::ReplicaId to);
  void PushSnapshotStatus(raft::ReplicaId to, bool failed);
  // The apply worker took a snapshot; the step worker records it and compacts.
  void PushSnapshotTaken(const raft::SnapshotMeta& meta);
  // Moves every queued input into the scratch vectors (step worker).
  void TakeInbound();
  // Notes `sender` again at its next message: its first one was refused,
  // so its address was not taken up (StepWorker::StepReplica).
  void ForgetSender(raft::ReplicaId sender);
  // Proposals and reads waiting for the step worker (for the metrics).
  size_t QueueDepth();

  // --- Pending requests (any thread).
  // False, and nothing is kept, once FailAllPending ran: the replica is never
  // stepped again, so a request added after it would never be answered or
  // swept. The check and the insertion share pending_mu_ with
  // FailAllPending, so no request slips in between.
  [[nodiscard]] bool AddPending(uint64_t key, std::shared_ptr<internal::RequestState> s);
  [[nodiscard]] bool AddPendingRead(uint64_t ctx, std::shared_ptr<internal::RequestState> s);
  std::shared_ptr<internal::RequestState> TakePending(uint64_t key);
  std::shared_ptr<internal::RequestState> TakePendingRead(uint64_t ctx);
  // Completes every request whose deadline passed (they are timed out on the
  // client side already; this frees them). Like FailAllPending, it runs the
  // completion callbacks with no lock of the replica held.
  void SweepExpired(internal::RequestState::Clock::time_point now);
  // Completes every pending request with `code` (replica stopping) and
  // refuses every later one. The callbacks run after pending_mu_ is
  // released, so they may call back in.
  void FailAllPending(RequestCode code);

  // --- Apply side.
  ManagedStateMachine* sm() { return sm_.get(); }
  void PushApply(ApplyTask&& t);
  bool TakeApply(std::deque<ApplyTask>* out);
  // Snapshot requests (keys of pending requests) for the apply worker.
  void PushSnapshotRequest(uint64_t key);
  void TakeSnapshotRequests(std::vector<uint64_t>* out);
  // On-disk kind: kInstallSnapshot messages the core wants sent; the apply
  // worker streams a fresh snapshot from the state machine for each.
  void PushStreamRequest(raft::Message&& install);
  void TakeStreamRequests(std::vector<raft::Message>* out);
  size_t ApplyDepth();
  // Reads confirmed by Raft that wait for the state machine to catch up.
  std::deque<raft::ReadState> waiting_reads;  // apply worker only
  raft::Membership sm_membership;             // apply worker only: at `applied`
  // Copies sm_membership for readers on other threads (apply worker).
  void PublishMembership();
  raft::Membership MembershipView();
  uint64_t applied_term = 0;         // apply worker only
  uint64_t last_snapshot_index = 0;  // apply worker only
  Sessions sessions;                 // apply worker only
  uint64_t skip_through = 0;         // on-disk kind: applied durably before start
  // How the replica was started, so that it can be started again to repair
  // damage found while it runs (engine/repair.cc).
  std::function<std::unique_ptr<ManagedStateMachine>()> make;
  uint8_t kind = 0;
  bool join = false;
  // The LogDB holds a repair record for it (step worker only): removed
  // once the core says the repair ended.
  bool repair_recorded = false;
  // Set while the core reports the shard unrepairable (every voter lost
  // entries, engine/repair.cc): proposals and reads are refused with
  // UnrepairableError() instead of waiting for a leader that cannot come.
  std::atomic<bool> unrepairable{false};
  Status UnrepairableError() {
    std::lock_guard<std::mutex> l(unrepairable_mu_);
    return unrepairable_error_;
  }
  void SetUnrepairableError(Status s) {
    std::lock_guard<std::mutex> l(unrepairable_mu_);
    unrepairable_error_ = std::move(s);
  }
  // A snapshot worker is writing a snapshot of this replica: at most one
  // snapshot job per shard at a time.
  std::atomic<bool> snapshot_in_flight{false};
  // The index of this replica's own snapshot found damaged while it was
  // sent (0: none): it is never sent again, and the apply worker takes a
  // fresh one (snapshot_damage.cc).
  std::atomic<uint64_t> damaged_snapshot{0};

  // --- Reported state.
  std::atomic<uint64_t> applied{0};
  std::atomic<uint64_t> cached_bytes{0};  // the log cache's, after each pass (metrics)
  std::atomic<uint64_t> leader{0};
  std::atomic<uint64_t> term{0};
  std::atomic<uint64_t> commit{0};
  std::atomic<int> role{0};
  std::atomic<bool> quiesced{false};
  // Set by the step worker when the core refused proposals because its
  // uncommitted or unapplied bytes reached their bound, until they fall to
  // half of it: meanwhile new proposals are refused as busy up front.
  std::atomic<bool> log_full{false};
  std::atomic<bool> stopped{false};
  std::atomic<bool> failed{false};
  // Listed on its step / apply worker's ready list (see WorkerBase).
  std::atomic<bool> step_queued{false};
  std::atomic<bool> apply_queued{false};

 private:
  std::mutex unrepairable_mu_;
  Status unrepairable_error_;
  std::mutex mu_;
  std::vector<raft::Message> inbound_;
  std::vector<raft::Entry> proposals_;
  std::vector<std::shared_ptr<internal::RequestState>> proposal_states_;
  uint64_t proposal_bytes_ = 0;
  std::vector<uint64_t> reads_;
  std::vector<ConfRequest> confs_;
  std::vector<uint64_t> transfers_;
  std::vector<std::pair<raft::ReplicaId, bool>> reports_;
  std::vector<raft::ReplicaId> unreachable_;
  std::vector<raft::SnapshotMeta> taken_;
  std::vector<raft::ReplicaId> senders_seen_;  // bounded: kMaxSendersSeen
  std::vector<std::pair<raft::ReplicaId, std::string>> learned_;

  std::mutex pending_mu_;
  std::unordered_map<uint64_t, std::shared_ptr<internal::RequestState>> pending_;
  std::unordered_map<uint64_t, std::shared_ptr<internal::RequestState>> pending_reads_;
  bool pending_closed_ = false;  // guarded by pending_mu_

  std::unique_ptr<ManagedStateMachine> sm_;

  std::mutex apply_mu_;
  std::deque<ApplyTask> apply_queue_;
  std::vector<uint64_t> snapshot_requests_;     // guarded by apply_mu_
  std::vector<raft::Message> stream_requests_;  // guarded by apply_mu_

  std::mutex view_mu_;
  raft::Membership membership_view_;  // guarded by view_mu_
};

}  // namespace flotilla::engine
