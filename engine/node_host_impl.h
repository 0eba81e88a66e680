// NodeHostImpl: the driver. Step workers own disjoint shard sets and save
// each pass in one LogDB write; apply workers run the state machines; one
// Boost.Asio timer advances the logical clock.
//
// A worker pass (StepWorker::RunPass), an apply round (ApplyWorker::RunOnce)
// and a tick (NodeHostImpl::AdvanceTick) are plain calls; the threads only
// call them in loops, so a deterministic scheduler can drive them instead.
//
// Thread-safe: the public NodeHost methods may be called from any thread.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/campaign_slots.h"
#include "engine/inbound_check.h"
#include "engine/replica.h"
#include "engine/snapshot_stream.h"
#include "flotilla/metrics.h"
#include "flotilla/node_host.h"
#include "logdb/latency_recorder.h"
#include "logdb/logdb.h"
#include "transport/registry.h"
#include "transport/transport.h"

namespace flotilla::engine {

class NodeHostImpl;

// The NodeHost's counters: relaxed atomics, added to once per pass or per
// request, never per entry.
struct Counters {
  std::atomic<uint64_t> proposals{0}, proposals_refused{0}, proposals_dropped{0}, reads{0};
  std::atomic<uint64_t> entries_committed{0}, entries_applied{0};
  std::atomic<uint64_t> saves{0}, saved_entries{0}, saved_bytes{0};
  std::atomic<uint64_t> messages_sent{0}, messages_received{0}, messages_dropped{0};
  std::atomic<uint64_t> snapshots_sent{0}, snapshots_received{0}, snapshot_bytes_sent{0},
      snapshot_bytes_received{0}, snapshots_taken{0};
  std::atomic<uint64_t> leader_changes{0}, campaigns{0}, replica_steps{0};
  std::atomic<uint64_t> corruptions{0};
  std::atomic<uint64_t> storage_resumes{0};
  std::atomic<uint64_t> snapshots_damaged{0};
  LatencyRecorder save_latency;
  RejectionCounters rejected;  // inbound messages dropped by validation
  // Streams refused by peer authentication, by transport::StreamRefusal.
  std::array<std::atomic<uint64_t>, static_cast<size_t>(transport::StreamRefusal::kCount)>
      streams_refused{};
  static void Add(std::atomic<uint64_t>& c, uint64_t n) {
    if (n != 0) c.fetch_add(n, std::memory_order_relaxed);
  }
};

// The wake-up side shared by both kinds of worker: a list of replicas with
// work, and a condition variable the worker thread sleeps on.
//
// A replica is on the list at most once: its `queued` flag (one per kind of
// worker) is set by the Notify that lists it and cleared by the worker when
// it takes the list. A Notify that finds the flag set costs one atomic
// exchange: no lock, no wake-up. The flag is cleared (with an exchange, so
// that it synchronises with every Notify before it) before the worker reads
// the replica's queues, so input pushed after that lists the replica again.
class WorkerBase {
 public:
  explicit WorkerBase(std::atomic<bool> Replica::*queued) : queued_(queued) {}
  // Marks `r` as having work; wakes the worker if `r` was not listed yet.
  void Notify(Replica* r);
  void Wake();

 protected:
  // Clears the listed flag of every replica of `taken` (just taken from
  // ready_), before their queues are read.
  void Unlist(const std::vector<Replica*>& taken) {
    for (Replica* r : taken) (r->*queued_).exchange(false, std::memory_order_acq_rel);
  }
  // Lists `r` again unless it is listed. REQUIRES: mu_ is held.
  void RelistLocked(Replica* r) {
    if (!(r->*queued_).exchange(true, std::memory_order_acq_rel)) ready_.push_back(r);
  }

  // Until `stop`: sleeps until a replica is ready or `more()` holds (both
  // under mu_), then calls `run()`.
  template <typename More, typename Run>
  void LoopUntil(const std::atomic<bool>& stop, More more, Run run) {
    while (!stop.load(std::memory_order_acquire)) {
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return stop.load() || !ready_.empty() || more(); });
      }
      if (stop.load()) return;
      run();
    }
  }

  std::atomic<bool> Replica::*const queued_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Replica*> ready_;  // guarded by mu_; each replica once
};

class StepWorker : public WorkerBase {
 public:
  StepWorker(NodeHostImpl* nh, size_t index)
      : WorkerBase(&Replica::step_queued), nh_(nh), index_(index) {}

  void Add(Replica* r);
  void Remove(Replica* r);
  void NotifyTick();
  // One pass over every replica with input (all replicas when a tick is due).
  // Returns true when it did any work.
  bool RunPass();
  void Loop(const std::atomic<bool>& stop) {
    LoopUntil(
        stop, [&] { return tick_due_; }, [&] { RunPass(); });
  }

 private:
  void StepReplica(Replica* r, uint64_t ticks, bool sweep);
  void DropCancelled(Replica* r);
  void SendSnapshots(Replica* r);
  Result<std::unique_ptr<transport::SnapshotSource>> PinnedFileSource(Replica* r, uint64_t index);
  bool PlaceReceivedSnapshot(Replica* r);
  void FailDamaged();
  bool FailIfCorrupted(Replica* r);
  void AcceptSnapshot(Replica* r, const raft::Message& m);
  void RecordSnapshots(Replica* r);
  void AfterPersist(Replica* r);
  void ReleaseCachedEntries(Replica* r);
  void CheckRemoved(Replica* r, uint64_t now);
  void StopRemoved();
  void SendOutbox(bool report_unreachable);
  void CampaignIfSlot(Replica* r);
  void HandOffIfStorageLow(Replica* r);
  bool CanApplyBeforeSave(const Replica* r);
  void HandToApply(Replica* r);

  NodeHostImpl* nh_;
  size_t index_;
  std::vector<Replica*> replicas_;  // guarded by mu_
  bool tick_due_ = false;           // guarded by mu_
  uint64_t last_tick_ = 0;
  std::vector<Replica*> work_;
  std::vector<Replica*> taken_;  // ready_ as taken by a pass
  std::vector<Replica*> updated_;
  std::vector<std::shared_ptr<Replica>> to_stop_;  // removed replicas, stopped at the next pass
  std::vector<raft::ReplicaId> accepted_from_;     // senders whose messages passed this visit
  std::vector<logdb::ReplicaUpdate> saves_;
  std::vector<Replica*> save_owners_;  // the replica of each of saves_
  std::vector<logdb::DamagedUpdate> damaged_;
  std::vector<transport::DroppedTarget> dropped_;
  std::vector<raft::Message> outbox_;  // the messages of a pass, sent at once
  std::vector<std::pair<uint64_t, Replica*>> by_shard_;
};

class ApplyWorker : public WorkerBase {
 public:
  explicit ApplyWorker(NodeHostImpl* nh) : WorkerBase(&Replica::apply_queued), nh_(nh) {}
  bool RunOnce();
  void Loop(const std::atomic<bool>& stop) {
    LoopUntil(
        stop, [] { return false; }, [&] { RunOnce(); });
  }

 private:
  void Apply(Replica* r, ApplyTask& t);
  void ServeReads(Replica* r);
  bool Restore(Replica* r, const raft::SnapshotMeta& meta);
  void Classify(Replica* r, ApplyTask& t);
  void ApplyConfChangeEntry(Replica* r, const raft::Entry& e);
  struct Outcome {
    int64_t sm_pos = -1;  // position in sm_entries_, or -1
    int64_t dup_of = -1;  // a session retry of the entry at this position of the batch, or -1
    RequestResult result;
  };
  std::vector<Outcome> outcomes_;
  std::map<std::pair<uint64_t, uint64_t>, size_t> batch_series_;  // (client, series) -> position
  void MaybeSnapshot(Replica* r, bool requested = false);
  static void SnapshotWritten(NodeHostImpl* nh, Replica* r, const raft::SnapshotMeta& meta,
                              const Status& s);
  void ServeSnapshotRequests(Replica* r);
  void ServeStreamRequests(Replica* r);
  // Replaces the replica's own snapshot found damaged while it was sent
  // (Replica::damaged_snapshot) with a fresh one from the state machine
  // (snapshot_damage.cc).
  void RetakeDamagedSnapshot(Replica* r);

  NodeHostImpl* nh_;
  std::vector<Replica*> work_;
  std::vector<SMEntry> sm_entries_;
  std::vector<uint64_t> snapshot_keys_;
  std::vector<raft::Message> stream_requests_;
};

// What a NodeHost is built from. The defaults (RocksDB, gRPC, threads, a
// random seed) are production; the deterministic simulation injects an
// in-memory LogDB, the in-process transport, no threads and a fixed seed,
// and drives passes, apply rounds and ticks itself.
struct NodeHostDeps {
  std::unique_ptr<logdb::LogDB> logdb;  // null: from the config
  std::function<std::unique_ptr<transport::Transport>(transport::Registry*, transport::Handler*)>
      make_transport;  // null: gRPC from the config
  bool start_threads = true;
  uint64_t seed = 0;  // 0: random
};

class NodeHostImpl final : public NodeHost, public transport::Handler {
 public:
  explicit NodeHostImpl(const NodeHostConfig& config, NodeHostDeps deps = {});
  ~NodeHostImpl() override;
  Status Init();

  // NodeHost.
  void Close() override;
  std::string raft_address() const override;
  Status StartReplica(const ShardConfig& config, const Members& initial, StartMode mode,
                      StateMachineFactory factory) override;
  Status StartConcurrentReplica(const ShardConfig& config, const Members& initial, StartMode mode,
                                ConcurrentStateMachineFactory factory) override;
  Status StartOnDiskReplica(const ShardConfig& config, const Members& initial, StartMode mode,
                            OnDiskStateMachineFactory factory) override;
  Status StopReplica(uint64_t shard_id) override;
  Status RemoveData(uint64_t shard_id, uint64_t replica_id) override;
  Result<RequestHandle> RequestSnapshot(uint64_t shard_id, Timeout t) override;
  Result<RequestHandle> Propose(uint64_t shard_id, std::string_view cmd, Timeout t) override;
  Result<RequestHandle> Read(uint64_t shard_id, std::string_view query, Timeout t) override;
  Result<PendingSession> RegisterSession(uint64_t shard_id, Timeout t) override;
  Result<RequestHandle> ProposeInSession(const Session& session, std::string_view cmd,
                                         Timeout t) override;
  Result<RequestHandle> CloseSession(const Session& session, Timeout t) override;
  Result<std::string> StaleRead(uint64_t shard_id, std::string_view query) override;
  Result<RequestHandle> AddReplica(uint64_t shard_id, uint64_t replica_id,
                                   const std::string& address, MemberKind kind, Timeout t) override;
  Result<RequestHandle> RemoveReplica(uint64_t shard_id, uint64_t replica_id, Timeout t) override;
  Status TransferLeader(uint64_t shard_id, uint64_t target) override;
  Result<ReplicaInfo> GetReplicaInfo(uint64_t shard_id) override;
  NodeHostInfo GetInfo() override;
  Result<ShardMembership> GetMembership(uint64_t shard_id) override;
  NodeHostMetrics GetMetrics() override;

  // transport::Handler.
  void HandleBatch(std::vector<raft::Message>&& messages,
                   const std::string& source_address) override;
  void HandleUnreachable(raft::ShardId shard, raft::ReplicaId replica) override;
  Status AdmitSnapshot(const raft::Message& install, const std::string& source_address) override;
  void HandleSnapshot(raft::Message install, std::string snapshot_path) override;
  static bool MayTakeMetadataOnly(const raft::Message& install);
  void HandleSnapshotStatus(raft::ShardId shard, raft::ReplicaId replica, bool failed) override;
  void HandleStreamRefused(transport::StreamRefusal why) override;
  void HandleConnectionUp(const std::string& address) override;
  void HandleConnectionDown(const std::string& address) override;
  EventListener* listener() const { return config_.listener.get(); }

  // Advances the logical clock by one tick and wakes the step workers.
  void AdvanceTick();
  // For a driver without threads (the simulation): one pass of every step
  // worker and one round of every apply worker. Returns true when any did work.
  bool RunOnce();
  size_t step_workers() const { return step_.size(); }
  StepWorker* step_worker(size_t i) { return step_[i].get(); }
  ApplyWorker* apply_worker(size_t i) { return apply_[i].get(); }

  // Used by the workers.
  const NodeHostConfig& config() const { return config_; }
  logdb::LogDB* logdb() { return logdb_.get(); }
  transport::Transport* transport() { return transport_.get(); }
  transport::Registry* registry() { return &registry_; }
  void LearnAddresses(raft::ShardId shard, const raft::Membership& m);
  ApplyWorker* apply_worker_for(uint64_t shard) { return apply_[shard % apply_.size()].get(); }
  uint64_t ticks() const { return ticks_.load(std::memory_order_acquire); }
  CampaignSlots& campaign_slots() { return campaign_slots_; }
  Counters& counters() { return counters_; }
  SnapshotWorkers* snapshot_workers() { return snapshot_workers_.get(); }
  void OnStorageFailure(const Status& s);
  // After a LogDB write failed for want of space: waits, resumes the LogDB
  // (ResumeStorage) once it can write, and runs `save` again; repeats while
  // the disk stays full. OK once `save` succeeded; Terminated when the
  // NodeHost closes meanwhile; any other failure as it came (storage_resume.cc).
  Status SaveWhenStorageResumes(const std::function<Status()>& save);
  bool storage_low() const { return storage_low_.load(std::memory_order_relaxed); }
  uint64_t storage_free_bytes() const {
    return storage_free_bytes_.load(std::memory_order_relaxed);
  }
  uint64_t storage_low_episode() const {
    return storage_low_episode_.load(std::memory_order_relaxed);
  }
  // Counts a peer's message that failed validation and logs it, at most
  // once per sender and kRejectLogInterval; `source` (may be empty) is the
  // sending NodeHost's address, escaped before it is logged.
  void ReportRejected(uint64_t shard, const raft::Message& m, Rejection why,
                      std::string_view source);
  // Stops `r` for good after a storage or state-machine failure: it takes
  // no more input, its requests end as terminated, its campaign slot returns.
  void FailReplica(Replica* r);
  // Damage found while the replica runs: it is stopped and started again,
  // which repairs it (on a thread of its own; Close waits for it). Without
  // threads (a deterministic driver) it waits for RunPendingRepairs.
  void RestartToRepair(uint64_t shard_id);
  void RunPendingRepairs();
  // Step worker: ends the recorded repair once the core says it ended.
  void TrackRepair(Replica* r);
  void EndRepairIfDone(Replica* r);
  void ReportUnrepairable(Replica* r);
  static Status ReplicaStopped(uint64_t shard_id);
  // Counts and logs a Corruption status of replica `r` (other codes are
  // ignored): damaged data at rest, which stops that replica only.
  void NoteCorruption(uint64_t shard, uint64_t replica, const Status& s);
  // Verifies the files of the snapshot in `dir` of replica `r` before a
  // restore (VerifySnapshotFiles; a snapshot written before checksums is
  // given them).
  Status VerifySnapshot(Replica* r, const std::string& dir);
  // The snapshot `index` of replica (shard, replica) of this NodeHost failed
  // its checksums while it was sent: counted, logged, never sent again, and
  // a fresh one is taken (snapshot_damage.cc). Any thread.
  void OnDamagedOwnSnapshot(uint64_t shard, uint64_t replica, uint64_t index, const Status& s);
  // `inner`, which streams this NodeHost's own snapshot `index` of (shard,
  // replica) from `dir`, checked against the snapshot's checksums file on
  // the way (NewVerifiedSnapshotSource); Corruption at once when that file
  // is damaged.
  Result<std::unique_ptr<transport::SnapshotSource>> VerifiedOwnSnapshot(
      uint64_t shard, uint64_t replica, uint64_t index, const std::string& dir,
      std::unique_ptr<transport::SnapshotSource> inner);
  // A Corruption status of replica (shard, replica), its name put first
  // when the status does not start with it (RocksDB's own name only a file).
  static Status NamedCorruption(uint64_t shard, uint64_t replica, const Status& s);
  // When `s` is damage RocksDB found in one of the LogDB's files: names the
  // file and the replicas with records in it that can no longer be read,
  // and takes those replicas out (store_damage.cc), but for `reporter`,
  // whose caller stops it. Once per file.
  void NoteStoreDamage(const Status& s, logdb::ReplicaKey reporter);
  // The reason replica (shard, replica) stays out after NoteStoreDamage, or OK.
  Status KnownStoreDamage(uint64_t shard, uint64_t replica);
  // What a replica's halted core read: the LogDB's Corruption status.
  static Status CorruptionOf(const Replica* r);
  void NotifyStep(Replica* r);
  std::shared_ptr<Replica> Find(uint64_t shard_id);

 private:
  uint64_t NextKey() { return key_base_ + next_key_.fetch_add(1, std::memory_order_relaxed); }
  Result<RequestHandle> ProposeEntry(uint64_t shard_id, raft::Entry e, Timeout t);
  Result<RequestHandle> ProposeEntryImpl(uint64_t shard_id, raft::Entry e, Timeout t);
  Result<RequestHandle> ProposeConf(uint64_t shard_id, raft::ConfChange cc, Timeout t);
  void StartThreads();
  void CheckStorage();
  // Lifts a storage failure when the LogDB resumes (LogDB::Resume); OK when
  // nothing had failed. Counted and logged.
  Status ResumeStorage();
  Status StorageStatus();
  Status StartReplicaImpl(const ShardConfig& config, const Members& initial, StartMode mode,
                          uint8_t kind,
                          const std::function<std::unique_ptr<ManagedStateMachine>()>& make);
  Status RestoreAtStart(Replica* r, const logdb::ReplicaState& st);
  // Repair from peers (engine/repair.cc, docs/raft-core.md, Repair).
  // What a starting replica finds in the LogDB, with damage repaired where
  // its peers can supply it: entries from the first damaged one on are left
  // out of its log view, a damaged hard state is recovered, a damaged
  // snapshot makes it start again from nothing; the repair is recorded.
  // `last_entry` receives the last entry of the view (read and verified).
  Result<logdb::ReplicaState> ReadForStart(const ShardConfig& sc,
                                           std::vector<raft::Entry>* last_entry);
  // Finds the first damaged entry of the held log (0: none) and leaves the
  // last entry before it in `last_good` and the highest term read in `max_term`.
  Result<raft::Index> FirstDamagedEntry(const ShardConfig& sc, const logdb::ReplicaState& st,
                                        std::vector<raft::Entry>* last_good, raft::Term* max_term,
                                        Status* damage);
  // Drops every record and snapshot of the replica, keeping its bootstrap,
  // term and (unless lost) vote, and records the repair.
  Status RebuildFromPeers(const ShardConfig& sc, bool hard_state_lost, logdb::ReplicaState* st);
  // Stops the replica of `shard_id` and starts it again (RestartToRepair).
  void RestartNow(uint64_t shard_id);
  Status FillOnDiskGap(Replica* r, const logdb::ReplicaState& st);

  const NodeHostConfig config_;
  NodeHostDeps deps_;
  // When each (shard, sender) last had a rejected message logged; bounded
  // (cleared when it reaches kMaxRejectLogSenders).
  std::mutex reject_log_mu_;
  std::unordered_map<uint64_t, std::chrono::steady_clock::time_point> reject_logged_;
  std::mt19937_64 rng_;  // seeds keys and election timeouts; guarded by rng_mu_
  std::mutex rng_mu_;
  uint64_t NextRandom();
  std::unique_ptr<logdb::LogDB> logdb_;
  transport::Registry registry_;
  std::unique_ptr<transport::Transport> transport_;
  std::vector<std::unique_ptr<StepWorker>> step_;
  std::vector<std::unique_ptr<ApplyWorker>> apply_;
  std::unique_ptr<SnapshotWorkers> snapshot_workers_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> closed_{false};
  std::atomic<uint64_t> ticks_{0};
  CampaignSlots campaign_slots_;
  Counters counters_;
  std::atomic<bool> storage_failed_{false};
  std::mutex storage_mu_;
  Status storage_status_;  // guarded by storage_mu_: why writes stopped
  std::mutex resume_mu_;   // one LogDB::Resume at a time
  // Damage RocksDB found in the LogDB's files (NoteStoreDamage).
  std::mutex store_damage_mu_;
  std::set<std::string> damaged_files_;                   // guarded by store_damage_mu_
  std::map<logdb::ReplicaKey, Status> damaged_replicas_;  // guarded by store_damage_mu_
  // Free space below min_free_bytes (CheckStorage, on the ticker).
  std::atomic<bool> storage_low_{false};
  std::atomic<uint64_t> storage_low_episode_{0};  // counts the times it went low
  std::atomic<uint64_t> storage_free_bytes_{0};
  Status storage_low_status_;             // guarded by storage_mu_: the figures, while low
  uint64_t next_storage_check_tick_ = 0;  // ticker thread only
  bool check_storage_ = false;            // set by Init
  uint64_t key_base_;
  std::atomic<uint64_t> next_key_{1};

  std::mutex repair_mu_;
  std::vector<std::thread> repair_threads_;  // guarded by repair_mu_
  std::vector<uint64_t> pending_repairs_;    // guarded by repair_mu_; without threads
  std::mutex graveyard_mu_;
  std::vector<std::shared_ptr<Replica>> graveyard_;  // guarded by graveyard_mu_
  std::shared_mutex replicas_mu_;
  std::unordered_map<uint64_t, std::shared_ptr<Replica>> replicas_;  // guarded by replicas_mu_
  // Shards being started: reserved by StartReplicaImpl before it reads or
  // builds anything, so that two concurrent starts of one shard cannot both
  // succeed. Guarded by replicas_mu_.
  std::unordered_set<uint64_t> starting_;

  // A shard id held in starting_ for one StartReplicaImpl call: released by
  // the destructor, or moved to replicas_ by Commit.
  class ShardReservation {
   public:
    ShardReservation(NodeHostImpl* nh, uint64_t shard_id);
    ~ShardReservation();
    ShardReservation(const ShardReservation&) = delete;
    ShardReservation& operator=(const ShardReservation&) = delete;
    // AlreadyExists when the shard runs or is being started, Terminated when
    // the NodeHost is closed; Ok when this object holds the shard id.
    const Status& status() const { return status_; }
    // Publishes `r` under the reserved id (REQUIRES: status() is Ok).
    // Terminated when the NodeHost closed meanwhile: Close() fails and stops
    // only the replicas it finds in replicas_.
    Status Commit(std::shared_ptr<Replica> r);

   private:
    NodeHostImpl* const nh_;
    const uint64_t shard_id_;
    Status status_;
    bool held_ = false;
  };
};

}  // namespace flotilla::engine
