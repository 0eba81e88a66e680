#include "engine/node_host_impl.h"

#include <pthread.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <filesystem>

#include "engine/log/log.h"
#include "engine/snapshot_files.h"
#include "engine/snapshot_stream.h"
#include "flotilla/events.h"
#include "logdb/memory_logdb.h"
#include "logdb/rocks_logdb.h"
#include "transport/grpc_transport.h"

namespace flotilla {

std::string_view RequestCodeName(RequestCode c) {
  switch (c) {
    case RequestCode::kCompleted:
      return "completed";
    case RequestCode::kTimeout:
      return "timeout";
    case RequestCode::kTerminated:
      return "terminated";
    case RequestCode::kRejected:
      return "rejected";
    case RequestCode::kDropped:
      return "dropped";
    case RequestCode::kAborted:
      return "aborted";
    case RequestCode::kAppliedResultUnknown:
      return "applied_result_unknown";
  }
  return "unknown";
}

RequestResult RequestHandle::Wait() const {
  if (!state_) {
    RequestResult r;
    r.code = RequestCode::kAborted;
    return r;
  }
  return state_->Wait();
}

bool RequestHandle::Done() const { return state_ && state_->Done(); }

bool RequestHandle::Cancel() const { return state_ && state_->Cancel(); }

void RequestHandle::OnComplete(std::function<void(const RequestResult&)> fn) const {
  if (!state_) {
    RequestResult r;
    r.code = RequestCode::kAborted;
    fn(r);
    return;
  }
  state_->OnComplete(std::move(fn));
}

namespace {

// Waits for a request, or turns its refusal into a result: a full queue is
// "dropped" (retry), anything else "rejected", with the status as error.
RequestResult WaitOrRefusal(const Result<RequestHandle>& h) {
  if (h.ok()) return h->Wait();
  RequestResult r;
  r.code = h.status().code() == StatusCode::kBusy ? RequestCode::kDropped : RequestCode::kRejected;
  r.error = h.status().ToString();
  return r;
}

}  // namespace

RequestResult NodeHost::SyncPropose(uint64_t shard_id, std::string_view cmd, Timeout t) {
  return WaitOrRefusal(Propose(shard_id, cmd, t));
}

RequestResult NodeHost::SyncRead(uint64_t shard_id, std::string_view query, Timeout t) {
  return WaitOrRefusal(Read(shard_id, query, t));
}

Result<Session> NodeHost::SyncRegisterSession(uint64_t shard_id, Timeout t) {
  Result<PendingSession> p = RegisterSession(shard_id, t);
  if (!p.ok()) return p.status();
  const RequestResult r = p->handle.Wait();
  if (!r.ok()) {
    return Status(r.code == RequestCode::kTimeout ? StatusCode::kTimeout : StatusCode::kUnavailable,
                  "registering a session: " + std::string(RequestCodeName(r.code)));
  }
  return p->session;
}

Status NodeHost::SyncCloseSession(const Session& session, Timeout t) {
  Result<RequestHandle> h = CloseSession(session, t);
  if (!h.ok()) return h.status();
  const RequestResult r = h->Wait();
  return r.ok() ? Status::Ok()
                : Status(StatusCode::kUnavailable,
                         "closing a session: " + std::string(RequestCodeName(r.code)));
}

Result<std::unique_ptr<NodeHost>> NodeHost::Create(const NodeHostConfig& config) {
  auto nh = std::make_unique<engine::NodeHostImpl>(config);
  FLOTILLA_RETURN_IF_ERROR(nh->Init());
  return std::unique_ptr<NodeHost>(std::move(nh));
}

namespace engine {
namespace {

constexpr uint64_t kMaxTicksPerPass = 5;
constexpr uint64_t kMaxCacheBytes = 16 << 20;
constexpr uint64_t kSweepEveryTicks = 64;
// Bytes of an on-disk state machine's snapshot held between its writer and
// the transport.
constexpr size_t kStreamPipeBytes = 4 << 20;
constexpr size_t kSnapshotWorkers = 2;
// A rejected peer message is logged at most once per sender and interval.
constexpr auto kRejectLogInterval = std::chrono::seconds(10);
constexpr size_t kMaxRejectLogSenders = 4096;

// A raft address as a peer reports its own: printable ASCII without spaces
// (host:port, or a name on the in-process network), of a sane length.
bool PlausibleAddress(std::string_view a) {
  if (a.empty() || a.size() > 255) return false;
  return std::all_of(a.begin(), a.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

using transport::EscapeForLog;

// A pipe writer that counts the bytes it passes on.
class CountingPipeWriter final : public SnapshotWriter {
 public:
  explicit CountingPipeWriter(std::shared_ptr<SnapshotPipe> pipe) : pipe_(std::move(pipe)) {}
  Status Write(std::string_view b) override {
    bytes_ += b.size();
    return pipe_->Write(b);
  }
  uint64_t bytes() const { return bytes_; }

 private:
  std::shared_ptr<SnapshotPipe> pipe_;
  uint64_t bytes_ = 0;
};
// logdb::Bootstrap::state_machine_kind values.
constexpr uint8_t kInMemoryKind = 0;
constexpr uint8_t kConcurrentKind = 1;
constexpr uint8_t kOnDiskKind = 2;

// Linux keeps at most 15 characters.
void NameThisThread(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

// The public roles are the core's, value for value.
static_assert(static_cast<int>(ReplicaRole::kFollower) == static_cast<int>(raft::Role::kFollower));
static_assert(static_cast<int>(ReplicaRole::kCandidate) ==
              static_cast<int>(raft::Role::kCandidate));
static_assert(static_cast<int>(ReplicaRole::kPreCandidate) ==
              static_cast<int>(raft::Role::kPreCandidate));
static_assert(static_cast<int>(ReplicaRole::kLeader) == static_cast<int>(raft::Role::kLeader));
static_assert(static_cast<int>(ReplicaRole::kNonVoting) ==
              static_cast<int>(raft::Role::kNonVoting));
static_assert(static_cast<int>(ReplicaRole::kWitness) == static_cast<int>(raft::Role::kWitness));

// Bytes of the regular files in `path` (a file or a directory).
uint64_t DirectoryBytes(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(path, ec)) return std::filesystem::file_size(path, ec);
  uint64_t total = 0;
  for (const auto& f : std::filesystem::directory_iterator(path, ec)) {
    if (f.is_regular_file(ec)) total += f.file_size(ec);
  }
  return total;
}

}  // namespace

// ---------------------------------------------------------------------------
// Workers.

void WorkerBase::Notify(Replica* r) {
  if ((r->*queued_).exchange(true, std::memory_order_acq_rel)) return;  // listed already
  {
    std::lock_guard<std::mutex> l(mu_);
    ready_.push_back(r);
  }
  cv_.notify_one();
}

void WorkerBase::Wake() {
  std::lock_guard<std::mutex> l(mu_);
  cv_.notify_one();
}

void StepWorker::Add(Replica* r) {
  std::lock_guard<std::mutex> l(mu_);
  replicas_.push_back(r);
  RelistLocked(r);
  cv_.notify_one();
}

void StepWorker::Remove(Replica* r) {
  std::lock_guard<std::mutex> l(mu_);
  replicas_.erase(std::remove(replicas_.begin(), replicas_.end(), r), replicas_.end());
  ready_.erase(std::remove(ready_.begin(), ready_.end(), r), ready_.end());
}

void StepWorker::NotifyTick() {
  std::lock_guard<std::mutex> l(mu_);
  tick_due_ = true;
  cv_.notify_one();
}

bool StepWorker::RunPass() {
  StopRemoved();
  const uint64_t now = nh_->ticks();
  const uint64_t ticks = std::min(now - last_tick_, kMaxTicksPerPass);
  // Expired requests are swept on every replica once per kSweepEveryTicks.
  const bool sweep = now / kSweepEveryTicks != last_tick_ / kSweepEveryTicks;
  last_tick_ = now;
  work_.clear();
  {
    std::lock_guard<std::mutex> l(mu_);
    // A tick visits the replicas that are not quiesced: a quiesced one has
    // nothing to do on a tick, and anything that wakes it (a message, a
    // proposal, a read) puts it on the ready list. So idle shards cost a
    // flag load per tick, not a visit.
    if (tick_due_ || ticks > 0) {
      for (Replica* r : replicas_) {
        if (sweep || !r->quiesced.load(std::memory_order_relaxed)) work_.push_back(r);
      }
    }
    work_.insert(work_.end(), ready_.begin(), ready_.end());
    taken_.swap(ready_);
    ready_.clear();
    tick_due_ = false;
  }
  Unlist(taken_);
  taken_.clear();
  updated_.clear();
  uint64_t visits = 0;
  for (Replica* r : work_) {
    if (r->in_pass || r->stopped.load()) continue;
    r->in_pass = true;
    ++visits;
    StepReplica(r, ticks, sweep);
    if (FailIfCorrupted(r)) continue;
    if (ticks > 0) CheckRemoved(r, now);
    // Kept current after every visit, not only after an Update: a message
    // can wake a quiesced replica without producing one, and it must be
    // ticked from then on.
    r->quiesced.store(r->peer->raft().quiesced(), std::memory_order_relaxed);
    if (r->peer->HasUpdate()) {
      r->peer->GetUpdate(&r->update);
      if (FailIfCorrupted(r)) continue;
      const std::vector<raft::Entry>& ce = r->update.committed_entries;
      r->conf_committed = std::any_of(ce.begin(), ce.end(), [](const raft::Entry& e) {
        return e.type == raft::EntryType::kConfChange;
      });
      updated_.push_back(r);
    }
  }
  for (Replica* r : work_) r->in_pass = false;
  Counters::Add(nh_->counters().replica_steps, visits);
  if (updated_.empty()) return false;
  for (Replica* r : updated_) {
    if (CanApplyBeforeSave(r)) HandToApply(r);
  }

  // The leader's appends leave before its own fsync (Raft thesis 10.2.1),
  // the messages of every replica of the pass in one SendBatch: one lock and
  // at most one wake-up per lane, and fuller gRPC writes.
  Counters& c = nh_->counters();
  outbox_.clear();
  for (Replica* r : updated_) {
    if (r->update.messages.empty()) continue;
    SendSnapshots(r);
    for (raft::Message& m : r->update.messages) outbox_.push_back(std::move(m));
    r->update.messages.clear();
  }
  SendOutbox(/*report_unreachable=*/true);
  // One durable write for every replica of the pass.
  saves_.clear();
  save_owners_.clear();
  for (Replica* r : updated_) {
    const raft::Update& u = r->update;
    // A hard state that only moved the commit index need not be durable
    // before anything else happens (the commit index is relearned from the
    // leader after a restart): it waits for the replica's next save instead
    // of costing an fsync of its own. Except when it commits a membership
    // change: after a restart the core replays membership changes up to the
    // saved commit index only, and a replica must never forget a change it
    // applied (a removed replica would believe it is a voter again).
    if (u.entries_to_save.empty() && !u.snapshot && u.hard_state && !r->conf_committed &&
        u.hard_state->term == r->saved_hs.term && u.hard_state->vote == r->saved_hs.vote) {
      r->unsaved_hs = u.hard_state;
      continue;
    }
    if (u.snapshot && !PlaceReceivedSnapshot(r)) continue;
    if (!u.entries_to_save.empty() || u.hard_state || u.snapshot) {
      logdb::ReplicaUpdate ru = logdb::ReplicaUpdate::From(u);
      if (!ru.hard_state && r->unsaved_hs) ru.hard_state = r->unsaved_hs;
      if (ru.hard_state) r->saved_hs = *ru.hard_state;
      r->unsaved_hs.reset();
      saves_.push_back(ru);
      save_owners_.push_back(r);
    }
  }
  if (!saves_.empty()) {
    uint64_t entries = 0;
    uint64_t bytes = 0;
    for (const logdb::ReplicaUpdate& ru : saves_) {
      entries += ru.entries.size();
      for (const raft::Entry& e : ru.entries) bytes += e.cmd.size();
    }
    const auto t0 = std::chrono::steady_clock::now();
    Status s = nh_->logdb()->SaveIsolated(saves_, &damaged_);
    c.save_latency.Observe(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
            .count()));
    Counters::Add(c.saves, 1);
    Counters::Add(c.saved_entries, entries);
    Counters::Add(c.saved_bytes, bytes);
    if (s.code() == StatusCode::kNoSpace) {
      // Nothing of the pass was written or acknowledged: it waits until the
      // LogDB takes writes again, then the same updates are saved.
      nh_->OnStorageFailure(s);
      s = nh_->SaveWhenStorageResumes(
          [&] { return nh_->logdb()->SaveIsolated(saves_, &damaged_); });
    }
    if (!s.ok()) {
      // Any other failure is never retried as if nothing happened (an fsync
      // that failed may have lost pages): the replicas of this pass stop.
      nh_->OnStorageFailure(s);
      for (Replica* r : updated_) {
        nh_->FailReplica(r);
      }
      return true;
    }
    FailDamaged();
  }
  // A replica that failed in this pass (its update was not saved) sends
  // nothing that promises it was.
  for (Replica* r : updated_) {
    if (!r->failed.load()) AfterPersist(r);
  }
  SendOutbox(/*report_unreachable=*/false);
  // Advance can produce more work at once (the leader's own persist may
  // commit entries): run those replicas again without waiting for a tick.
  {
    std::lock_guard<std::mutex> l(mu_);
    for (Replica* r : updated_) {
      if (!r->stopped.load() && r->peer->HasUpdate()) RelistLocked(r);
    }
  }
  return true;
}

// Committed entries that this replica holds durably already need not wait
// for the pass's save: they are on a quorum's disks, and on this one, so
// applying them now is what applying them after the save would be. Entries
// still being saved (a follower's, or a leader's committed by the followers
// alone) and snapshots wait. This takes the save's latency out of every
// write's: the leader's pass that learns the commit also saves new entries.
bool StepWorker::CanApplyBeforeSave(const Replica* r) {
  const raft::Update& u = r->update;
  if (u.snapshot) return false;
  if (u.committed_entries.empty()) return true;
  const raft::Index last = u.committed_entries.back().index;
  if (last > r->log->LastIndex()) return false;
  return u.entries_to_save.empty() || last < u.entries_to_save.front().index;
}

// Hands committed entries, ready reads, dropped requests and a snapshot to
// the replica's apply worker. Leaves the lists empty, so a second call for
// the same Update is a no-op unless it holds a snapshot (which never goes
// before the save: see CanApplyBeforeSave).
void StepWorker::HandToApply(Replica* r) {
  raft::Update& u = r->update;
  if (u.committed_entries.empty() && u.ready_reads.empty() && u.dropped_reads.empty() &&
      u.dropped_keys.empty() && !u.snapshot) {
    return;
  }
  Counters::Add(nh_->counters().entries_committed, u.committed_entries.size());
  ApplyTask t;
  t.snapshot = u.snapshot;
  if (u.snapshot) t.snapshot_pin = r->snapshot_pins->Pin(u.snapshot->index);
  t.entries = std::move(u.committed_entries);
  t.reads = std::move(u.ready_reads);
  t.dropped_reads = std::move(u.dropped_reads);
  t.dropped_keys = std::move(u.dropped_keys);
  u.committed_entries.clear();
  u.ready_reads.clear();
  u.dropped_reads.clear();
  u.dropped_keys.clear();
  r->PushApply(std::move(t));
  nh_->apply_worker_for(r->shard_id)->Notify(r);
}

// Sends outbox_ in one transport batch. Before the save, the targets of
// dropped messages are reported unreachable to their senders' cores (in
// their AfterPersist); the messages after persist are only counted.
void StepWorker::SendOutbox(bool report_unreachable) {
  if (outbox_.empty()) return;
  Counters& c = nh_->counters();
  Counters::Add(c.messages_sent, outbox_.size());
  dropped_.clear();
  nh_->transport()->SendBatch(outbox_, &dropped_);
  outbox_.clear();
  Counters::Add(c.messages_dropped, dropped_.size());
  if (!report_unreachable || dropped_.empty()) return;
  // A worker holds each shard once, so the shard names the sender.
  by_shard_.clear();
  for (Replica* r : updated_) by_shard_.emplace_back(r->shard_id, r);
  std::sort(by_shard_.begin(), by_shard_.end());
  for (const transport::DroppedTarget& d : dropped_) {
    auto it = std::lower_bound(by_shard_.begin(), by_shard_.end(),
                               std::pair<uint64_t, Replica*>{d.shard_id, nullptr});
    if (it != by_shard_.end() && it->first == d.shard_id) {
      it->second->unreachable_scratch.push_back(d.replica_id);
    }
  }
}

// Snapshots stream on their own transport streams, from the snapshot files
// (pinned against pruning while they stream); a witness's carries metadata
// only, whatever the state-machine kind.
void StepWorker::SendSnapshots(Replica* r) {
  std::vector<raft::Message>& msgs = r->update.messages;
  auto it = std::stable_partition(msgs.begin(), msgs.end(), [](const raft::Message& m) {
    return m.type != raft::MessageType::kInstallSnapshot;
  });
  for (auto m = it; m != msgs.end(); ++m) {
    const bool witness = r->peer->raft().tracker().IsWitness(m->to);
    if (!witness && m->snapshot.index == r->damaged_snapshot.load()) {
      // Never sent again; the core tries again once a fresh one is taken.
      r->PushSnapshotStatus(m->to, true);
      continue;
    }
    if (r->sm()->on_disk() && !witness) {
      // Streamed straight from the state machine by its apply worker.
      r->PushStreamRequest(std::move(*m));
      nh_->apply_worker_for(r->shard_id)->Notify(r);
      continue;
    }
    Result<std::unique_ptr<transport::SnapshotSource>> src =
        witness ? Result<std::unique_ptr<transport::SnapshotSource>>(
                      NewMetadataOnlySnapshotSource(Sessions().Serialize()))
                : PinnedFileSource(r, m->snapshot.index);
    Status s = src.status();
    if (src.ok()) {
      transport::SnapshotJob job;
      job.install = std::move(*m);
      job.source = std::move(src).value();
      s = nh_->transport()->SendSnapshot(std::move(job));
    }
    if (!s.ok()) {
      Log().warn("shard {} replica {}: cannot send snapshot: {}", r->shard_id, r->replica_id,
                 s.ToString());
      r->PushSnapshotStatus(m->to, true);
      Notify(r);
    }
  }
  msgs.erase(it, msgs.end());
}

Result<std::unique_ptr<transport::SnapshotSource>> StepWorker::PinnedFileSource(Replica* r,
                                                                                uint64_t index) {
  const std::string path = SnapshotPath(r->snapshot_root, index);
  Result<std::unique_ptr<transport::SnapshotSource>> src = transport::NewFileSnapshotSource(path);
  if (!src.ok()) return src.status();
  Result<std::unique_ptr<transport::SnapshotSource>> checked =
      nh_->VerifiedOwnSnapshot(r->shard_id, r->replica_id, index, path, std::move(src).value());
  if (!checked.ok()) return checked.status();
  Counters::Add(nh_->counters().snapshot_bytes_sent, DirectoryBytes(path));
  return HoldWhileStreaming(std::move(checked).value(), r->snapshot_pins->Pin(index));
}

// A core that read a damaged entry halts itself (it neither votes nor
// leads nor applies from then on); the replica stops with it, so that its
// requests end, its campaign slot returns, and the damage is counted and
// named. True when `r` stopped.
bool StepWorker::FailIfCorrupted(Replica* r) {
  if (!r->peer->raft().corrupted()) return false;
  nh_->NoteCorruption(r->shard_id, r->replica_id, nh_->CorruptionOf(r));
  nh_->FailReplica(r);
  nh_->RestartToRepair(r->shard_id);
  return true;
}

// The replicas whose update the LogDB left out because a stored record of
// theirs is damaged stop; the others of the pass were saved and go on.
void StepWorker::FailDamaged() {
  for (const logdb::DamagedUpdate& d : damaged_) {
    Replica* r = save_owners_[d.update];
    nh_->NoteCorruption(r->shard_id, r->replica_id, d.status);
    nh_->FailReplica(r);
    nh_->RestartToRepair(r->shard_id);
  }
}

// The core installs a snapshot received from the leader: its directory
// takes its final name before the LogDB records it. False (the replica
// stops, nothing is recorded) when that fails.
bool StepWorker::PlaceReceivedSnapshot(Replica* r) {
  const uint64_t index = r->update.snapshot->index;
  auto it = r->accepted_snapshots.find(index);
  Status s =
      it == r->accepted_snapshots.end()
          ? Status::NotFound("no accepted install message for snapshot " + std::to_string(index))
          : InstallReceivedSnapshot(r->snapshot_root, index, it->second);
  r->accepted_snapshots.erase(r->accepted_snapshots.begin(),
                              r->accepted_snapshots.upper_bound(index));
  if (s.ok()) return true;
  Log().error("shard {} replica {}: cannot install received snapshot {}, replica stops: {}",
              r->shard_id, r->replica_id, index, s.ToString());
  nh_->FailReplica(r);
  return false;
}

// Notes who sent the snapshot the core is about to hear of: the core
// installs that sender's files (PlaceReceivedSnapshot). Entries the core
// cannot install any more (at or below its commit index) go.
void StepWorker::AcceptSnapshot(Replica* r, const raft::Message& m) {
  const raft::Index commit = r->peer->raft().log().committed();
  r->accepted_snapshots.erase(r->accepted_snapshots.begin(),
                              r->accepted_snapshots.upper_bound(commit));
  r->accepted_snapshots[m.snapshot.index] = {m.from, m.term};
}

// A snapshot taken by the apply worker: record it durably, then compact.
void StepWorker::RecordSnapshots(Replica* r) {
  for (const raft::SnapshotMeta& meta : r->taken_scratch) {
    // A snapshot written in the background may have been overtaken by one
    // received from the leader meanwhile: never record an older one.
    if (meta.index <= r->log->Snapshot().index) continue;
    Status s = nh_->logdb()->SaveSnapshot(r->shard_id, r->replica_id, meta);
    if (!s.ok()) {
      nh_->OnStorageFailure(s);
      continue;
    }
    const uint64_t overhead = r->config.compaction_overhead;
    const raft::Index compact_to = meta.index > overhead ? meta.index - overhead : 0;
    r->log->SetSnapshot(meta, compact_to);
    EventListener* l = nh_->listener();
    if (l) l->SnapshotCreated(r->shard_id, r->replica_id, meta.index);
    if (compact_to >= r->log->FirstIndex() - 1 && compact_to > 0) {
      s = nh_->logdb()->CompactTo(r->shard_id, r->replica_id, compact_to);
      if (!s.ok()) {
        Log().warn("shard {}: compaction failed: {}", r->shard_id, s.ToString());
      } else if (l) {
        l->LogCompacted(r->shard_id, r->replica_id, compact_to);
      }
    }
    PruneSnapshots(r->snapshot_root, r->log->Snapshot().index, r->snapshot_pins.get());
  }
}

// Marks each queued proposal proposed, and leaves out those cancelled
// before (RequestHandle::Cancel completed them kAborted already): they
// never reach the log. One atomic exchange per proposal, no lock.
void StepWorker::DropCancelled(Replica* r) {
  std::vector<raft::Entry>& entries = r->proposal_scratch;
  std::vector<std::shared_ptr<internal::RequestState>>& states = r->proposal_state_scratch;
  size_t kept = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i < states.size() && states[i] && !states[i]->MarkProposed()) {
      r->TakePending(entries[i].key);
      continue;
    }
    if (kept != i) entries[kept] = std::move(entries[i]);
    ++kept;
  }
  entries.resize(kept);
  states.clear();
}

void StepWorker::StepReplica(Replica* r, uint64_t ticks, bool sweep) {
  r->TakeInbound();
  RecordSnapshots(r);
  raft::Peer& p = *r->peer;
  const InboundLimits limits{nh_->config().max_entry_bytes};
  accepted_from_.clear();
  for (raft::Message& m : r->inbound_scratch) {
    // Nothing a peer sends reaches the core unchecked (docs/security.md).
    if (Rejection why = CheckInbound(p.raft(), m, limits); why != Rejection::kNone) {
      nh_->ReportRejected(r->shard_id, m, why, {});
      // Its files never wait for a sender the core will not hear.
      if (m.type == raft::MessageType::kInstallSnapshot) {
        DropReceivedSnapshot(r->snapshot_root, m.snapshot.index, {m.from, m.term});
      }
      continue;
    }
    accepted_from_.push_back(m.from);
    if (m.type == raft::MessageType::kInstallSnapshot) AcceptSnapshot(r, m);
    p.Step(std::move(m));
  }
  // A sender this replica has no address for (a member added after the
  // snapshot it was restored from, or whose conf change it has not applied
  // yet — a new leader it must answer): its NodeHost is the one that sent.
  // Only for senders whose messages passed the checks, and only plausible
  // addresses: a rejected message never makes this host dial anyone. A
  // sender is noted at its first message only, so one whose messages were
  // all refused is forgotten, to be noted again at its next: a new member
  // refused at first (this replica still heard its old leader) may lead
  // next, and must be answered.
  for (const auto& [id, address] : r->learned_scratch) {
    if (std::find(accepted_from_.begin(), accepted_from_.end(), id) == accepted_from_.end()) {
      r->ForgetSender(id);
      continue;
    }
    if (!PlausibleAddress(address)) continue;
    if (!nh_->registry()->Resolve(r->shard_id, id)) nh_->registry()->Add(r->shard_id, id, address);
  }
  for (raft::ReplicaId to : r->unreachable_scratch) p.ReportUnreachable(to);
  r->unreachable_scratch.clear();
  for (const auto& [to, failed] : r->report_scratch) p.ReportSnapshotStatus(to, failed);
  DropCancelled(r);
  if (!r->proposal_scratch.empty()) {
    const raft::ProposeResult pr = p.Propose(&r->proposal_scratch);
    if (pr == raft::ProposeResult::kUncommittedFull || pr == raft::ProposeResult::kUnappliedFull) {
      r->log_full.store(true, std::memory_order_relaxed);
    }
    if (pr != raft::ProposeResult::kOk) {
      Counters::Add(nh_->counters().proposals_dropped, r->proposal_scratch.size());
      for (const raft::Entry& e : r->proposal_scratch) {
        if (auto s = r->TakePending(e.key)) s->Complete(RequestCode::kDropped);
      }
    }
  }
  for (uint64_t ctx : r->read_scratch) {
    if (p.ReadIndex(ctx) != raft::ProposeResult::kOk) {
      if (auto s = r->TakePendingRead(ctx)) s->Complete(RequestCode::kDropped);
    }
  }
  for (ConfRequest& c : r->conf_scratch) {
    const raft::ProposeResult pr = p.ProposeConfChange(c.change, c.key);
    if (pr != raft::ProposeResult::kOk) {
      if (auto s = r->TakePending(c.key)) {
        s->Complete(pr == raft::ProposeResult::kInvalid ? RequestCode::kRejected
                                                        : RequestCode::kDropped);
      }
    }
  }
  for (uint64_t target : r->transfer_scratch) p.TransferLeader(target);
  if (!p.raft().quiesced()) {
    for (uint64_t i = 0; i < ticks; ++i) p.Tick();
  }
  if (ticks > 0 && nh_->storage_low()) HandOffIfStorageLow(r);
  if (sweep) {
    r->SweepExpired(internal::RequestState::Clock::now());
  }
  CampaignIfSlot(r);
}

// A leader on a NodeHost below its storage reserve refuses every write, so
// it hands leadership to the voter whose log is longest: a full disk costs
// this NodeHost its writes, not the shard. The new leader's appends of data
// to this replica are dropped until space is freed (HandleBatch), and it
// catches up afterwards. Once per replica and episode of low storage: when
// every member's disk is low, leadership moves at most once per member and
// then stays. Not once less than half the reserve is left: the election
// that a hand-off starts makes this replica save a new term, and a save that
// fails on an exhausted disk stops the LogDB until a restart.
void StepWorker::HandOffIfStorageLow(Replica* r) {
  raft::Peer& p = *r->peer;
  const raft::Raft& raft = p.raft();
  const uint64_t now = nh_->ticks();
  if (nh_->storage_free_bytes() < nh_->config().min_free_bytes / 2) return;
  if (raft.role() != raft::Role::kLeader || raft.lead_transferee() != raft::kNoReplica ||
      r->handoff_episode == nh_->storage_low_episode() ||
      now < r->handoff_at_tick + r->config.election_rtt) {
    return;
  }
  raft::ReplicaId best = raft::kNoReplica;
  raft::Index best_match = 0;
  for (const auto& [id, pr] : raft.tracker().progress()) {
    if (id == raft.id() || !raft.tracker().IsVoter(id) || raft.tracker().IsWitness(id)) continue;
    if (best == raft::kNoReplica || pr.match > best_match) {
      best = id;
      best_match = pr.match;
    }
  }
  r->handoff_at_tick = now;
  r->handoff_episode = nh_->storage_low_episode();
  if (best == raft::kNoReplica) return;
  Log().warn("shard {} replica {}: storage below the reserve; handing leadership to replica {}",
             r->shard_id, r->replica_id, best);
  p.TransferLeader(best);
}

// A restart of thousands of shards must not start thousands of elections at
// once: a replica whose election timer fired campaigns only with one of the
// NodeHost's max_concurrent_campaigns slots (CampaignSlots). It holds the
// slot while it campaigns, for one election timeout at most: when its timer
// fires again the slot goes back and it queues behind the replicas waiting,
// so campaigns that cannot end (their pre-votes dropped or unanswered) do not
// starve the shards that could elect.
void StepWorker::CampaignIfSlot(Replica* r) {
  raft::Peer& p = *r->peer;
  CampaignSlots& slots = nh_->campaign_slots();
  if (p.raft().wants_campaign()) {
    r->campaign_slot_asked = true;
    // The slot lapses after the longest randomized election timeout; the
    // timer firing again returns it first (see CampaignSlots).
    const uint64_t hold_ticks = 2 * uint64_t{r->config.election_rtt};
    if (slots.Acquire(r, nh_->ticks(), hold_ticks)) {
      Counters::Add(nh_->counters().campaigns, 1);
      p.Campaign();
    }
  }
  if (!r->campaign_slot_asked || p.raft().wants_campaign()) return;
  const raft::Role role = p.raft().role();
  if (role != raft::Role::kPreCandidate && role != raft::Role::kCandidate) {
    // Won, lost, heard from a leader, or could not campaign after all.
    slots.Release(r);
    r->campaign_slot_asked = false;
  }
}

// A replica that applied its own removal stops itself, after a grace of two
// election timeouts: the leader's heartbeats tell the remaining members in
// that time that the removal committed (until they know, they count the old
// configuration, and this replica's vote may still be needed), and a removed
// leader hands its leadership over first (it is never stopped while it
// leads). It also waits until a majority of the new configuration has told
// it that they applied the removal (removal_settled): the leader may have
// failed before telling anyone, and this replica may be the only live one
// that knows. Its data stays until NodeHost::RemoveData.
void StepWorker::CheckRemoved(Replica* r, uint64_t now) {
  const raft::Raft& raft = r->peer->raft();
  const std::vector<raft::ReplicaId>& removed = raft.membership().removed;
  const bool applied = std::find(removed.begin(), removed.end(), r->replica_id) != removed.end();
  if (!raft.told_removed() && !applied) return;
  if (r->removed_at_tick == 0) {
    r->removed_at_tick = now;
    Log().info("shard {} replica {}: removed from the shard; stopping in {} ticks", r->shard_id,
               r->replica_id, 2 * r->config.election_rtt);
    return;
  }
  if (raft.is_leader() || now - r->removed_at_tick < 2 * uint64_t{r->config.election_rtt}) return;
  if (applied && !raft.removal_settled()) return;
  if (std::shared_ptr<Replica> live = nh_->Find(r->shard_id); live.get() == r) {
    to_stop_.push_back(std::move(live));
  }
}

void StepWorker::StopRemoved() {
  for (std::shared_ptr<Replica>& r : to_stop_) {
    if (r->stopped.load()) continue;
    Status s = nh_->StopReplica(r->shard_id);
    if (!s.ok()) {
      Log().warn("shard {} replica {}: stopping the removed replica: {}", r->shard_id,
                 r->replica_id, s.ToString());
    }
  }
  to_stop_.clear();
}

// Entries stay cached while someone may read them soon: this replica's
// apply worker (below `applied` it is done), and as leader, every follower
// it replicates to (an append also reads the term of the entry before the
// follower's next, so the cache keeps from the smallest match). Followers
// being probed or sent a snapshot read from the LogDB. Without this the
// cache held its byte bound (16 MiB) per replica: 2 GiB of RSS for 144
// replicas in the benchmark.
void StepWorker::ReleaseCachedEntries(Replica* r) {
  raft::Index keep = r->applied.load(std::memory_order_relaxed);
  const raft::Raft& raft = r->peer->raft();
  if (raft.is_leader()) {
    for (const auto& [id, pr] : raft.tracker().progress()) {
      if (id != raft.id() && pr.state == raft::ProgressState::kReplicate) {
        keep = std::min(keep, pr.match);
      }
    }
  }
  r->log->Release(keep);
  r->cached_bytes.store(r->log->cached_bytes(), std::memory_order_relaxed);
}

void StepWorker::AfterPersist(Replica* r) {
  raft::Update& u = r->update;
  if (u.snapshot) {
    r->log->ApplySnapshot(*u.snapshot);
    nh_->LearnAddresses(r->shard_id, u.snapshot->membership);
    // Recorded now: older snapshots go (a follower that never takes one of
    // its own would otherwise keep every snapshot its leader sent).
    PruneSnapshots(r->snapshot_root, u.snapshot->index, r->snapshot_pins.get());
  }
  r->log->Append(std::move(u.entries_to_save));
  ReleaseCachedEntries(r);
  nh_->TrackRepair(r);
  Counters& c = nh_->counters();
  // Sent with those of the other replicas once the pass is done.
  for (raft::Message& m : u.messages_after_persist) outbox_.push_back(std::move(m));
  u.messages_after_persist.clear();
  if (u.soft_state) {
    r->leader.store(u.soft_state->leader);
    r->role.store(static_cast<int>(u.soft_state->role));
    if (u.soft_state->leader != r->reported_leader) {
      r->reported_leader = u.soft_state->leader;
      if (u.soft_state->leader != 0) Counters::Add(c.leader_changes, 1);
      Log().info("shard {} replica {}: leader is now {} ({})", r->shard_id, r->replica_id,
                 u.soft_state->leader, raft::RoleName(u.soft_state->role));
      if (auto* l = nh_->listener()) {
        l->LeaderChanged(r->shard_id, r->replica_id, u.soft_state->leader, r->peer->raft().term());
      }
    }
  }
  if (u.hard_state) {
    r->term.store(u.hard_state->term);
    r->commit.store(u.hard_state->commit);
  }
  HandToApply(r);
  r->peer->Advance(u);
  r->peer->ReportApplied(r->applied.load(std::memory_order_acquire));
  const raft::Raft& raft = r->peer->raft();
  r->quiesced.store(raft.quiesced());
  // Back-pressure with hysteresis: set when the core refused proposals for
  // its byte bounds, cleared once both are below half of their bound.
  if (r->log_full.load(std::memory_order_relaxed) &&
      raft.uncommitted_bytes() <= r->config.max_uncommitted_bytes / 2 &&
      raft.unapplied_bytes() <= r->config.max_unapplied_bytes / 2) {
    r->log_full.store(false, std::memory_order_relaxed);
  }
  for (raft::ReplicaId to : r->unreachable_scratch) r->peer->ReportUnreachable(to);
  r->unreachable_scratch.clear();
}

// ---------------------------------------------------------------------------
// ApplyWorker.

bool ApplyWorker::RunOnce() {
  work_.clear();
  {
    std::lock_guard<std::mutex> l(mu_);
    work_.swap(ready_);
  }
  Unlist(work_);
  std::deque<ApplyTask> tasks;
  for (Replica* r : work_) {
    tasks.clear();
    if (r->TakeApply(&tasks)) {
      for (ApplyTask& t : tasks) Apply(r, t);
    } else if (!r->stopped.load()) {
      MaybeSnapshot(r);  // a snapshot in flight ended: one may be due now
    }
    ServeSnapshotRequests(r);
    ServeStreamRequests(r);
    RetakeDamagedSnapshot(r);
  }
  return !work_.empty();
}

void ApplyWorker::ApplyConfChangeEntry(Replica* r, const raft::Entry& e) {
  raft::ConfChange cc;
  if (!raft::DecodeConfChange(e.cmd, &cc)) return;
  raft::ChangeResult next = raft::ApplyConfChange(r->sm_membership, cc);
  if (next.ok) {
    r->sm_membership = std::move(next.membership);
    r->PublishMembership();
    if (auto* l = nh_->listener()) l->MembershipChanged(r->shard_id, r->replica_id, e.index);
  }
  // A removed replica's address is kept: the removal notice that answers
  // its vote requests must reach it (its id is never added again, so the
  // entry can never point to another replica).
  for (const raft::ConfChangeItem& item : cc.items) {
    if (item.type != raft::ConfChangeType::kRemove && !item.context.empty()) {
      nh_->registry()->Add(r->shard_id, item.replica, item.context);
    }
  }
}

// Decides what each committed entry does: go to the state machine, answer
// from the session registry, or only complete its request.
void ApplyWorker::Classify(Replica* r, ApplyTask& t) {
  sm_entries_.clear();
  batch_series_.clear();
  outcomes_.assign(t.entries.size(), Outcome{});
  for (size_t i = 0; i < t.entries.size(); ++i) {
    const raft::Entry& e = t.entries[i];
    Outcome& o = outcomes_[i];
    o.result.value = e.index;
    if (e.type == raft::EntryType::kConfChange) {
      ApplyConfChangeEntry(r, e);
      continue;
    }
    if (e.type != raft::EntryType::kNormal) continue;
    if (e.index <= r->skip_through && e.series_id != Session::kRegisterSeries &&
        e.series_id != Session::kUnregisterSeries) {
      // Applied durably by an on-disk state machine before a restart. Its
      // session record is not in the restored registry: record it as
      // applied with its result lost, so that a retried duplicate is told
      // so, never applied a second time nor given a made-up result.
      const Sessions::Result* cached = nullptr;
      if (e.client_id != 0 && r->sessions.Begin(e.client_id, e.series_id, e.responded_to,
                                                &cached) == Sessions::Check::kApply) {
        r->sessions.Record(e.client_id, e.series_id, Sessions::Result{0, "", /*lost=*/true});
      }
      continue;
    }
    if (e.client_id != 0) {
      if (e.series_id == Session::kRegisterSeries) {
        r->sessions.Register(e.client_id);
        o.result.value = e.client_id;
        continue;
      }
      if (e.series_id == Session::kUnregisterSeries) {
        r->sessions.Unregister(e.client_id);
        continue;
      }
      const Sessions::Result* cached = nullptr;
      switch (r->sessions.Begin(e.client_id, e.series_id, e.responded_to, &cached)) {
        case Sessions::Check::kDuplicate:
          if (cached->lost) o.result.code = RequestCode::kAppliedResultUnknown;
          o.result.value = cached->value;
          o.result.data = cached->data;
          continue;
        case Sessions::Check::kNoSession:
          o.result.code = RequestCode::kRejected;
          o.result.error = "session not registered or expired";
          continue;
        case Sessions::Check::kApply:
          break;
      }
      // A retry of a proposal applied earlier in this same batch is a
      // duplicate too: the registry records results only after the batch.
      auto [first, fresh] = batch_series_.try_emplace({e.client_id, e.series_id}, i);
      if (!fresh) {
        o.dup_of = static_cast<int64_t>(first->second);
        continue;
      }
    }
    SMEntry se;
    se.index = e.index;
    se.cmd = e.cmd;
    o.sm_pos = static_cast<int64_t>(sm_entries_.size());
    sm_entries_.push_back(std::move(se));
  }
}

void ApplyWorker::Apply(Replica* r, ApplyTask& t) {
  if (t.snapshot && !Restore(r, *t.snapshot)) return;
  const uint64_t base = r->applied.load();
  std::erase_if(t.entries, [&](const raft::Entry& e) { return e.index <= base; });
  Classify(r, t);
  // An on-disk state machine's index must reach the batch's last entry even
  // when that entry is not a command (a no-op, a membership change, session
  // bookkeeping): local snapshots are taken at the applied index, and one
  // ahead of the index the state machine reports from Open would leave a
  // gap after a restart.
  if (r->sm()->on_disk() && !t.entries.empty()) {
    const uint64_t last = t.entries.back().index;
    if (last > r->skip_through && (sm_entries_.empty() || sm_entries_.back().index != last)) {
      SMEntry noop;
      noop.index = last;
      noop.noop = true;
      sm_entries_.push_back(std::move(noop));
    }
  }
  if (!sm_entries_.empty()) {
    Status s = r->sm()->Update(sm_entries_);
    if (!s.ok()) {
      Log().error("shard {} replica {}: state machine update failed, replica stops: {}",
                  r->shard_id, r->replica_id, s.ToString());
      nh_->FailReplica(r);
      return;
    }
  }
  for (size_t i = 0; i < t.entries.size(); ++i) {
    const raft::Entry& e = t.entries[i];
    Outcome& o = outcomes_[i];
    if (o.dup_of >= 0) o.result = outcomes_[static_cast<size_t>(o.dup_of)].result;
    if (o.sm_pos >= 0) {
      SMEntry& se = sm_entries_[static_cast<size_t>(o.sm_pos)];
      o.result.value = se.result;
      o.result.data = std::move(se.data);
      if (e.client_id != 0) {
        r->sessions.Record(e.client_id, e.series_id,
                           Sessions::Result{o.result.value, o.result.data});
      }
    }
    if (e.key == 0) continue;
    if (auto s = r->TakePending(e.key)) s->Complete(std::move(o.result));
  }
  if (!t.entries.empty()) {
    Counters::Add(nh_->counters().entries_applied, t.entries.size());
    r->applied_term = t.entries.back().term;
    r->applied.store(t.entries.back().index, std::memory_order_release);
  }
  for (uint64_t key : t.dropped_keys) {
    if (auto s = r->TakePending(key)) s->Complete(RequestCode::kDropped);
  }
  for (uint64_t ctx : t.dropped_reads) {
    if (auto s = r->TakePendingRead(ctx)) s->Complete(RequestCode::kDropped);
  }
  for (const raft::ReadState& rs : t.reads) r->waiting_reads.push_back(rs);
  ServeReads(r);
  MaybeSnapshot(r);
}

bool ApplyWorker::Restore(Replica* r, const raft::SnapshotMeta& meta) {
  std::string sessions;
  const std::string dir = SnapshotPath(r->snapshot_root, meta.index);
  Status s = nh_->VerifySnapshot(r, dir);
  if (s.ok()) s = ReadSnapshot(dir, r->sm(), &sessions);
  if (s.ok()) s = r->sessions.Deserialize(sessions);
  if (!s.ok()) {
    Log().error("shard {} replica {}: cannot restore snapshot {}, replica stops: {}", r->shard_id,
                r->replica_id, meta.index, s.ToString());
    nh_->FailReplica(r);
    return false;
  }
  r->sm_membership = meta.membership;
  r->PublishMembership();
  r->applied_term = meta.term;
  r->last_snapshot_index = meta.index;
  // The state machine now holds the snapshot's state, even when it had
  // applied more before (a repairing replica can be sent a snapshot below
  // that): the entries after the snapshot must all reach it again.
  r->skip_through = std::min(r->skip_through, meta.index);
  r->applied.store(meta.index, std::memory_order_release);
  Log().info("shard {} replica {}: restored snapshot {}", r->shard_id, r->replica_id, meta.index);
  if (auto* l = nh_->listener()) l->SnapshotRecovered(r->shard_id, r->replica_id, meta.index);
  return true;
}

// An on-disk state machine's snapshot for a follower: prepared now, at the
// applied index (which is at or past the index the core asked for, and
// committed), and streamed from the state machine by a snapshot worker.
void ApplyWorker::ServeStreamRequests(Replica* r) {
  r->TakeStreamRequests(&stream_requests_);
  for (raft::Message& install : stream_requests_) {
    const raft::ReplicaId to = install.to;
    // Right after a restart the state machine can be ahead of `applied`
    // until the entries it holds already are handed out again: a snapshot
    // labelled with `applied` would carry entries after it, and the
    // receiver would apply them twice. The core retries later.
    Result<std::shared_ptr<void>> prepared =
        r->stopped.load() ? Result<std::shared_ptr<void>>(Status::Terminated("replica stopped"))
        : r->applied.load() < r->skip_through
            ? Result<std::shared_ptr<void>>(Status::Unavailable(
                  "the state machine is ahead of the applied index until the restart's replay"))
            : r->sm()->Prepare();
    Status s = prepared.status();
    if (s.ok()) {
      install.snapshot.index = r->applied.load();
      install.snapshot.term = r->applied_term;
      install.snapshot.membership = r->sm_membership;
      SnapshotWorkers* workers = nh_->snapshot_workers();
      auto pipe = std::make_shared<SnapshotPipe>(workers->threaded() ? kStreamPipeBytes : 0);
      ManagedStateMachine* sm = r->sm();
      Counters* c = &nh_->counters();
      auto write = [sm, c, pipe, p = std::move(prepared).value()]() mutable {
        CountingPipeWriter w(pipe);
        Status saved = sm->SavePrepared(std::move(p), &w);
        Counters::Add(c->snapshot_bytes_sent, w.bytes());
        pipe->Finish(std::move(saved));
      };
      transport::SnapshotJob job;
      job.install = std::move(install);
      // The writer starts when a transport sender starts reading (see
      // NewStateMachineSnapshotSource); without threads it runs there, to
      // the end.
      job.source = NewStateMachineSnapshotSource(
          r->sessions.Serialize(), pipe,
          [workers, write = std::move(write)] { workers->Submit(write); });
      s = nh_->transport()->SendSnapshot(std::move(job));
    }
    if (!s.ok()) {
      Log().warn("shard {} replica {}: cannot stream a snapshot to replica {}: {}", r->shard_id,
                 r->replica_id, to, s.ToString());
      r->PushSnapshotStatus(to, true);
      nh_->NotifyStep(r);
    }
  }
}

void ApplyWorker::ServeSnapshotRequests(Replica* r) {
  r->TakeSnapshotRequests(&snapshot_keys_);
  if (snapshot_keys_.empty() || r->stopped.load()) return;
  // Nothing applied since the last snapshot: that snapshot is the answer.
  if (r->applied.load() > r->last_snapshot_index) MaybeSnapshot(r, true);
  const bool ok = r->applied.load() == r->last_snapshot_index && r->last_snapshot_index > 0;
  for (uint64_t key : snapshot_keys_) {
    auto s = r->TakePending(key);
    if (!s) continue;
    RequestResult res;
    res.value = r->last_snapshot_index;
    if (!ok) {
      res.code = RequestCode::kRejected;
      res.error = "the snapshot could not be taken (see the log)";
    }
    s->Complete(std::move(res));
  }
}

// A snapshot was written (or failed): the step worker records it and
// compacts. Called on the apply worker or on a snapshot worker.
void ApplyWorker::SnapshotWritten(NodeHostImpl* nh, Replica* r, const raft::SnapshotMeta& meta,
                                  const Status& s) {
  if (!s.ok()) {
    Log().error("shard {} replica {}: snapshot at {} failed: {}", r->shard_id, r->replica_id,
                meta.index, s.ToString());
    return;
  }
  Counters::Add(nh->counters().snapshots_taken, 1);
  r->PushSnapshotTaken(meta);
  nh->NotifyStep(r);
}

void ApplyWorker::MaybeSnapshot(Replica* r, bool requested) {
  const uint64_t every = r->config.snapshot_entries;
  const uint64_t applied = r->applied.load();
  if (!requested && (every == 0 || applied < r->last_snapshot_index + every)) return;
  if (applied <= r->last_snapshot_index) return;
  if (r->snapshot_in_flight.load(std::memory_order_acquire)) return;  // one job per shard
  raft::SnapshotMeta meta;
  meta.index = applied;
  meta.term = r->applied_term;
  meta.membership = r->sm_membership;
  ManagedStateMachine* sm = r->sm();
  // A witness's state machine is never given an entry: its snapshots carry
  // metadata only, like those it receives, whatever its kind.
  const std::vector<raft::ReplicaId>& witnesses = r->sm_membership.witnesses;
  const bool witness =
      std::find(witnesses.begin(), witnesses.end(), r->replica_id) != witnesses.end();
  if (!requested && sm->concurrent() && !sm->on_disk() && !witness) {
    // Concurrent kind: prepared here with updates held off, then written by
    // a snapshot worker while this apply worker goes on with other shards.
    Result<std::shared_ptr<void>> prepared = sm->Prepare();
    if (!prepared.ok()) {
      SnapshotWritten(nh_, r, meta, prepared.status());
      return;
    }
    r->last_snapshot_index = applied;
    r->snapshot_in_flight.store(true, std::memory_order_release);
    nh_->snapshot_workers()->Submit([nh = nh_, r, sm, meta, p = std::move(prepared).value(),
                                     sessions = r->sessions.Serialize()]() mutable {
      Result<std::string> dir = WriteSnapshot(
          r->snapshot_root, meta.index,
          [&](SnapshotWriter* w) { return sm->SavePrepared(std::move(p), w); }, sessions);
      SnapshotWritten(nh, r, meta, dir.status());
      r->snapshot_in_flight.store(false, std::memory_order_release);
      // Entries applied while this one was written may have crossed the
      // next snapshot_entries mark; with no later write, nothing else would
      // look again, and the log would stay uncompacted.
      nh->apply_worker_for(r->shard_id)->Notify(r);
    });
    return;
  }
  Status synced = sm->Sync();
  // An on-disk state machine keeps its own data (durable after Sync): its
  // local snapshot is shallow, and followers get theirs streamed from it.
  SaveFn save;
  if (!sm->on_disk()) save = [sm](SnapshotWriter* w) { return sm->SaveSnapshot(w); };
  Result<std::string> dir =
      synced.ok() ? WriteSnapshot(r->snapshot_root, applied, save, r->sessions.Serialize(), witness)
                  : Result<std::string>(synced);
  if (dir.ok()) r->last_snapshot_index = applied;
  SnapshotWritten(nh_, r, meta, dir.status());
}

void ApplyWorker::ServeReads(Replica* r) {
  const uint64_t applied = r->applied.load();
  // Reads are served in the order they became ready; one whose index is
  // not applied yet waits (with everything after it) for the next round.
  while (!r->waiting_reads.empty() && r->waiting_reads.front().index <= applied) {
    const raft::ReadState rs = r->waiting_reads.front();
    r->waiting_reads.pop_front();
    auto s = r->TakePendingRead(rs.ctx);
    if (!s) continue;
    RequestResult res;
    res.value = rs.index;
    Result<std::string> v = r->sm()->Lookup(s->query);
    if (v.ok()) {
      res.data = std::move(*v);
    } else {
      res.code = RequestCode::kRejected;
      res.error = v.status().ToString();
    }
    s->Complete(std::move(res));
  }
}

// ---------------------------------------------------------------------------
// NodeHostImpl.

NodeHostImpl::NodeHostImpl(const NodeHostConfig& config, NodeHostDeps deps)
    : config_(config), deps_(std::move(deps)), campaign_slots_(config.max_concurrent_campaigns) {
  std::random_device rd;
  rng_.seed(deps_.seed != 0 ? deps_.seed : (static_cast<uint64_t>(rd()) << 32 | rd()));
  key_base_ = NextRandom() & ~uint64_t{0xffffffff};
}

uint64_t NodeHostImpl::NextRandom() {
  std::lock_guard<std::mutex> l(rng_mu_);
  return rng_();
}

bool NodeHostImpl::RunOnce() {
  bool worked = false;
  for (auto& w : step_) worked |= w->RunPass();
  for (auto& w : apply_) worked |= w->RunOnce();
  return worked;
}

NodeHostImpl::~NodeHostImpl() { Close(); }

Status NodeHostImpl::Init() {
  FLOTILLA_RETURN_IF_ERROR(Validate(config_));
  if (!deps_.make_transport) {
    // gRPC listens on host:port; a port it cannot parse would be ignored.
    FLOTILLA_RETURN_IF_ERROR(ValidateHostPort("NodeHostConfig.raft_address", config_.raft_address,
                                              /*min_port=*/0));
  }
  std::error_code ec;
  std::filesystem::create_directories(config_.data_dir, ec);
  if (ec) return Status::IOError("cannot create " + config_.data_dir + ": " + ec.message());
  // The reserve guards the RocksDB LogDB; an in-memory or injected one (the
  // simulator's) writes nothing that could fill a disk.
  check_storage_ = config_.min_free_bytes > 0 && !config_.in_memory_logdb && !deps_.logdb;
  if (deps_.logdb) {
    logdb_ = std::move(deps_.logdb);
  } else if (config_.in_memory_logdb) {
    logdb_ = logdb::NewMemoryLogDB();
  } else {
    logdb::RocksOptions ro;
    ro.dir = config_.data_dir + "/logdb";
    ro.wal_dir = config_.wal_dir;
    Result<std::unique_ptr<logdb::LogDB>> db = logdb::OpenRocksLogDB(ro);
    if (!db.ok()) return db.status();
    logdb_ = std::move(db).value();
  }
  transport::TransportConfig tc;
  tc.listen_address = config_.raft_address;
  tc.deployment_id = config_.deployment_id;
  tc.snapshot_dir = config_.data_dir + "/snapshots-in";
  // A snapshot stream must not take the space the reserve keeps.
  if (check_storage_) tc.snapshot_min_free_bytes = config_.min_free_bytes;
  tc.snapshot_receive = config_.snapshot_streams;
  tc.batch_receive = config_.batch_streams;
  if (!config_.tls_ca_file.empty() && !config_.tls_cert_file.empty() &&
      !config_.tls_key_file.empty()) {
    tc.tls.enabled = true;
    tc.tls.ca_path = config_.tls_ca_file;
    tc.tls.cert_path = config_.tls_cert_file;
    tc.tls.key_path = config_.tls_key_file;
    tc.tls.peer_names = config_.tls_peer_names;
  }
  tc.secret = config_.deployment_secret;
  if (!deps_.make_transport && !tc.tls.enabled && !config_.insecure &&
      !IsLoopbackAddress(config_.raft_address)) {
    return Status::InvalidArgument(
        "NodeHostConfig.raft_address " + config_.raft_address +
        " is not a loopback address and TLS is off: anyone who reaches it could act as a member "
        "of every shard. Set the three TLS files, or insecure = true on a network that is "
        "private by other means");
  }
  transport_ = deps_.make_transport ? deps_.make_transport(&registry_, this)
                                    : transport::NewGrpcTransport(tc, &registry_, this);
  FLOTILLA_RETURN_IF_ERROR(transport_->Start());
  const uint32_t cores = std::max(1u, std::thread::hardware_concurrency());
  const uint32_t steps = config_.step_workers ? config_.step_workers : cores;
  const uint32_t applies = config_.apply_workers ? config_.apply_workers : cores;
  for (uint32_t i = 0; i < steps; ++i) step_.push_back(std::make_unique<StepWorker>(this, i));
  for (uint32_t i = 0; i < applies; ++i) apply_.push_back(std::make_unique<ApplyWorker>(this));
  snapshot_workers_ = std::make_unique<SnapshotWorkers>(kSnapshotWorkers, deps_.start_threads);
  if (deps_.start_threads) StartThreads();
  return Status::Ok();
}

void NodeHostImpl::StartThreads() {
  // Named threads, so that a profile (perf --sort comm) shows where time goes.
  for (size_t i = 0; i < step_.size(); ++i) {
    threads_.emplace_back([this, i, p = step_[i].get()] {
      NameThisThread("step-" + std::to_string(i));
      p->Loop(stop_);
    });
  }
  for (size_t i = 0; i < apply_.size(); ++i) {
    threads_.emplace_back([this, i, p = apply_[i].get()] {
      NameThisThread("apply-" + std::to_string(i));
      p->Loop(stop_);
    });
  }
  // The ticker: one Boost.Asio timer advancing the logical clock.
  threads_.emplace_back([this] {
    NameThisThread("ticker");
    boost::asio::io_context io;
    boost::asio::steady_timer timer(io);
    const auto period = std::chrono::milliseconds(config_.rtt_ms);
    std::function<void(const boost::system::error_code&)> on_tick;
    auto next = std::chrono::steady_clock::now() + period;
    on_tick = [&](const boost::system::error_code& ec) {
      if (ec || stop_.load()) return;
      AdvanceTick();
      next += period;
      timer.expires_at(next);
      timer.async_wait(on_tick);
    };
    timer.expires_at(next);
    timer.async_wait(on_tick);
    while (!stop_.load()) {
      io.run_for(std::chrono::milliseconds(50));
      if (io.stopped()) io.restart();
    }
  });
}

void NodeHostImpl::AdvanceTick() {
  const uint64_t tick = ticks_.fetch_add(1, std::memory_order_acq_rel);
  if (tick >= next_storage_check_tick_) {
    next_storage_check_tick_ =
        tick + std::max<uint64_t>(1, config_.storage_check_interval_ms / config_.rtt_ms);
    CheckStorage();
  }
  for (auto& w : step_) w->NotifyTick();
}

// The storage watermark: one statvfs per directory and interval, off the
// write path, which then reads one flag.
void NodeHostImpl::CheckStorage() {
  if (!check_storage_) return;
  uint64_t least = UINT64_MAX;
  std::string where;
  for (const std::string& dir : {config_.data_dir, config_.wal_dir}) {
    struct statvfs st {};
    if (dir.empty() || ::statvfs(dir.c_str(), &st) != 0) continue;
    const uint64_t free_bytes = uint64_t{st.f_bavail} * st.f_frsize;
    if (free_bytes < least) {
      least = free_bytes;
      where = dir;
    }
  }
  if (where.empty()) return;  // cannot tell: the LogDB reports real failures
  storage_free_bytes_.store(least, std::memory_order_relaxed);
  const bool low = least < config_.min_free_bytes;
  if (low) {
    std::lock_guard<std::mutex> l(storage_mu_);
    storage_low_status_ = Status::NoSpace(
        "storage low: " + std::to_string(least) + " bytes free on " + where +
        ", below the reserve of " + std::to_string(config_.min_free_bytes) +
        " bytes (min_free_bytes); this NodeHost refuses writes until space is freed");
  }
  if (low && !storage_low_.exchange(true)) {
    storage_low_episode_.fetch_add(1, std::memory_order_relaxed);
    Log().error(
        "storage: {} bytes free on {}, below the reserve of {} (min_free_bytes): "
        "new writes are refused until space is freed",
        least, where, config_.min_free_bytes);
  } else if (!low && storage_low_.exchange(false)) {
    Log().info("storage: {} bytes free on {} again, at or above the reserve of {}: writes resume",
               least, where, config_.min_free_bytes);
  }
}

Status NodeHostImpl::StorageStatus() {
  std::lock_guard<std::mutex> l(storage_mu_);
  if (storage_failed_.load()) return storage_status_;
  if (storage_low_.load()) return storage_low_status_;
  return Status::Ok();
}

void NodeHostImpl::Close() {
  if (closed_.exchange(true)) return;
  {
    // Restarts that repair a replica end first (they start nothing once closed).
    std::vector<std::thread> repairs;
    {
      std::lock_guard<std::mutex> l(repair_mu_);
      repairs.swap(repair_threads_);
    }
    for (std::thread& t : repairs) t.join();
  }
  stop_.store(true);
  for (auto& w : step_) w->Wake();
  for (auto& w : apply_) w->Wake();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  if (transport_) transport_->Stop();
  // After the transport: a stopped transport closes the streams' pipes, so
  // writers blocked on them finish.
  if (snapshot_workers_) snapshot_workers_->Stop();
  // The map is emptied under replicas_mu_ and the requests completed after:
  // a completion callback may call back in (Propose, Find), which takes it.
  std::unordered_map<uint64_t, std::shared_ptr<Replica>> replicas;
  {
    std::unique_lock<std::shared_mutex> l(replicas_mu_);
    replicas.swap(replicas_);
  }
  for (auto& [id, r] : replicas) {
    r->stopped.store(true);
    r->FailAllPending(RequestCode::kTerminated);
  }
  if (auto* l = listener()) l->NodeHostClosed();
}

std::string NodeHostImpl::raft_address() const { return transport_ ? transport_->address() : ""; }

void NodeHostImpl::OnStorageFailure(const Status& s) {
  {
    std::lock_guard<std::mutex> l(storage_mu_);
    if (storage_status_.ok()) {
      storage_status_ = Status(
          s.code(), (s.code() == StatusCode::kNoSpace
                         ? "the LogDB found the disk full; this NodeHost refuses writes until "
                           "space is freed: "
                         : "the LogDB failed and this NodeHost stopped accepting writes: ") +
                        s.message());
    }
  }
  if (!storage_failed_.exchange(true)) {
    if (s.code() == StatusCode::kNoSpace) {
      Log().critical(
          "LogDB write failed for want of space; writes are held until space is "
          "freed: {}",
          s.ToString());
    } else {
      Log().critical("LogDB save failed; the replicas of the pass stop accepting writes: {}",
                     s.ToString());
    }
  }
}

// The refusal of a request to a replica that stopped or failed; its
// pending requests were completed with kTerminated.
Status NodeHostImpl::ReplicaStopped(uint64_t shard_id) {
  return Status::Terminated("shard " + std::to_string(shard_id) + " stopped");
}

void NodeHostImpl::NoteCorruption(uint64_t shard, uint64_t replica, const Status& s) {
  if (s.code() != StatusCode::kCorruption) return;
  Counters::Add(counters_.corruptions, 1);
  Log().error(
      "shard {} replica {}: damaged data at rest (repaired from its peers where they "
      "hold it): {}",
      shard, replica, s.message());
  NoteStoreDamage(s, {shard, replica});
}

Status NodeHostImpl::CorruptionOf(const Replica* r) {
  const Status& s = r->log->last_error();
  if (s.code() == StatusCode::kCorruption) return s;
  return Status::Corruption("shard " + std::to_string(r->shard_id) + " replica " +
                            std::to_string(r->replica_id) + ": reading the log failed: " +
                            (s.ok() ? std::string("a committed entry is missing") : s.ToString()));
}

Status NodeHostImpl::VerifySnapshot(Replica* r, const std::string& dir) {
  Result<SnapshotCheck> check = VerifySnapshotFiles(dir);
  if (!check.ok()) {
    NoteCorruption(r->shard_id, r->replica_id, check.status());
    return check.status();
  }
  if (*check == SnapshotCheck::kUpgraded) {
    Log().info(
        "shard {} replica {}: snapshot {} had no checksums (written before they were "
        "kept): accepted, and its checksums file written",
        r->shard_id, r->replica_id, dir);
  }
  return Status::Ok();
}

void NodeHostImpl::FailReplica(Replica* r) {
  r->failed.store(true);
  r->stopped.store(true);
  // Stopped replicas are never stepped again: nothing else returns its slot.
  campaign_slots_.Release(r);
  r->FailAllPending(RequestCode::kTerminated);
}

std::shared_ptr<Replica> NodeHostImpl::Find(uint64_t shard_id) {
  std::shared_lock<std::shared_mutex> l(replicas_mu_);
  auto it = replicas_.find(shard_id);
  return it == replicas_.end() ? nullptr : it->second;
}

Status NodeHostImpl::StartReplica(const ShardConfig& sc, const Members& initial, StartMode mode,
                                  StateMachineFactory factory) {
  return StartReplicaImpl(sc, initial, mode, kInMemoryKind,
                          [factory, sc] { return Manage(factory(sc.shard_id, sc.replica_id)); });
}

Status NodeHostImpl::StartConcurrentReplica(const ShardConfig& sc, const Members& initial,
                                            StartMode mode, ConcurrentStateMachineFactory factory) {
  return StartReplicaImpl(sc, initial, mode, kConcurrentKind,
                          [factory, sc] { return Manage(factory(sc.shard_id, sc.replica_id)); });
}

Status NodeHostImpl::StartOnDiskReplica(const ShardConfig& sc, const Members& initial,
                                        StartMode mode, OnDiskStateMachineFactory factory) {
  return StartReplicaImpl(sc, initial, mode, kOnDiskKind,
                          [factory, sc] { return Manage(factory(sc.shard_id, sc.replica_id)); });
}

NodeHostImpl::ShardReservation::ShardReservation(NodeHostImpl* nh, uint64_t shard_id)
    : nh_(nh), shard_id_(shard_id) {
  std::unique_lock<std::shared_mutex> l(nh_->replicas_mu_);
  if (nh_->closed_.load()) {
    status_ = Status::Terminated("NodeHost is closed");
  } else if (nh_->replicas_.count(shard_id) != 0 || !nh_->starting_.insert(shard_id).second) {
    status_ = Status::AlreadyExists("shard " + std::to_string(shard_id) + " is running");
  } else {
    held_ = true;
  }
}

NodeHostImpl::ShardReservation::~ShardReservation() {
  if (!held_) return;
  std::unique_lock<std::shared_mutex> l(nh_->replicas_mu_);
  nh_->starting_.erase(shard_id_);
}

Status NodeHostImpl::ShardReservation::Commit(std::shared_ptr<Replica> r) {
  if (!held_) std::abort();  // a driver bug: committed without the reservation
  std::unique_lock<std::shared_mutex> l(nh_->replicas_mu_);
  nh_->starting_.erase(shard_id_);
  held_ = false;
  if (nh_->closed_.load()) return Status::Terminated("NodeHost is closed");
  const bool inserted = nh_->replicas_.emplace(shard_id_, std::move(r)).second;
  if (!inserted) std::abort();  // a driver bug: the reservation keeps other starts out
  return Status::Ok();
}

Status NodeHostImpl::StartReplicaImpl(
    const ShardConfig& sc, const Members& initial, StartMode mode, uint8_t kind,
    const std::function<std::unique_ptr<ManagedStateMachine>()>& make) {
  if (closed_.load()) return Status::Terminated("NodeHost is closed");
  FLOTILLA_RETURN_IF_ERROR(Validate(sc));
  if (mode == StartMode::kRestart && !initial.empty()) {
    return Status::InvalidArgument(
        "StartMode::kRestart takes no members: the stored ones are used");
  }
  const bool join = mode == StartMode::kJoin;
  // The shard is reserved before anything is read or built, so that of two
  // concurrent starts one fails here; the reservation ends on every return.
  ShardReservation reservation(this, sc.shard_id);
  FLOTILLA_RETURN_IF_ERROR(reservation.status());
  FLOTILLA_RETURN_IF_ERROR(KnownStoreDamage(sc.shard_id, sc.replica_id));
  // The core needs the last entry's term at any time (a failed read of it
  // stops the process), so the last entry is read now and kept cached.
  // Damaged records are repaired from the peers (engine/repair.cc).
  std::vector<raft::Entry> last_entry;
  Result<logdb::ReplicaState> st = ReadForStart(sc, &last_entry);
  if (!st.ok()) return NamedCorruption(sc.shard_id, sc.replica_id, st.status());
  logdb::Bootstrap boot;
  if (st->bootstrap) {
    boot = *st->bootstrap;  // a restart: the stored state wins
  } else {
    if (mode == StartMode::kRestart) {
      return Status::NotFound("shard " + std::to_string(sc.shard_id) + " replica " +
                              std::to_string(sc.replica_id) +
                              ": nothing stored to restart from (StartMode::kRestart)");
    }
    if (!join && initial.count(sc.replica_id) == 0) {
      return Status::InvalidArgument("initial members must include this replica");
    }
    boot.members = initial;
    boot.join = join;
    boot.state_machine_kind = kind;
    FLOTILLA_RETURN_IF_ERROR(logdb_->SaveBootstrap(sc.shard_id, sc.replica_id, boot));
  }
  if (boot.state_machine_kind != kind) {
    return Status::InvalidArgument("shard " + std::to_string(sc.shard_id) +
                                   " was created with another state-machine kind");
  }
  for (const auto& [rid, addr] : boot.members) registry_.Add(sc.shard_id, rid, addr);
  auto r = std::make_shared<Replica>(sc, make());
  r->make = make;
  r->kind = kind;
  r->join = join;
  r->repair_recorded = st->repair.has_value();
  r->snapshot_root = SnapshotRoot(config_.data_dir, sc.shard_id, sc.replica_id);
  CleanSnapshotRoot(r->snapshot_root);
  // An on-disk state machine keeps its own state: entries up to the index it
  // applied durably are not applied again (the core still hands them out, so
  // that membership changes among them are seen).
  Result<uint64_t> opened = r->sm()->Open();
  if (!opened.ok())
    return Status(opened.status().code(),
                  "opening the state machine: " + opened.status().message());
  // A repairing replica's log view may end below what its on-disk state
  // machine applied (the entries after a damaged one left it): those
  // entries come again from the leader and are skipped like any others the
  // state machine holds (docs/raft-core.md, Repair).
  if (*opened > st->last_index && !st->repair) {
    return Status::Corruption("state machine reports applied index " + std::to_string(*opened) +
                              " beyond the log's last index " + std::to_string(st->last_index));
  }
  r->skip_through = *opened;
  // Every entry the state machine applied was committed: a commit index
  // saved before them (a commit-only hard state waits for the next save) is
  // raised to it, so the core hands out everything up to it at once and the
  // replica is never labelled with an index its state machine has passed.
  st->hard_state.commit =
      std::max(st->hard_state.commit, std::min<uint64_t>(r->skip_through, st->last_index));
  if (!st->snapshot.IsEmpty()) FLOTILLA_RETURN_IF_ERROR(RestoreAtStart(r.get(), *st));
  r->log =
      std::make_unique<LogCache>(logdb_.get(), sc.shard_id, sc.replica_id, *st, kMaxCacheBytes);
  r->log->Append(std::move(last_entry));
  r->saved_hs = st->hard_state;
  raft::Config rc;
  rc.shard_id = sc.shard_id;
  rc.replica_id = sc.replica_id;
  rc.election_ticks = sc.election_rtt;
  rc.heartbeat_ticks = sc.heartbeat_rtt;
  rc.check_quorum = sc.check_quorum;
  rc.pre_vote = sc.pre_vote;
  rc.lease_read = sc.lease_read;
  rc.max_uncommitted_bytes = sc.max_uncommitted_bytes;
  rc.max_unapplied_bytes = sc.max_unapplied_bytes;
  rc.max_inflight_msgs = sc.max_inflight_msgs;
  rc.max_msg_bytes = sc.max_msg_bytes;
  rc.quiesce_after_election_timeouts = sc.quiesce_after_election_timeouts;
  rc.gated_campaigns = true;
  rc.applied = st->snapshot.index;
  if (st->repair) {
    rc.repair_until = std::max<raft::Index>(st->repair->until, 1);
    rc.repair_term = st->repair->term;
    rc.hard_state_lost = st->repair->hard_state_lost;
  }
  rc.seed = NextRandom() ^ (sc.shard_id * 0x9e3779b97f4a7c15ULL);
  raft::Membership m;
  if (!boot.join) {
    for (const auto& [rid, addr] : boot.members) m.voters.push_back(rid);
  }
  // The bootstrap entries carry every initial member's address, so a replica
  // that joins later learns them by replaying the log.
  r->peer = std::make_unique<raft::Peer>(rc, r->log.get(), st->hard_state, m, boot.members);
  // The core replays the committed membership changes from the log as it
  // starts: a damaged entry there refuses this replica, naming the entry.
  if (r->peer->raft().corrupted()) {
    const Status damaged = CorruptionOf(r.get());
    NoteCorruption(sc.shard_id, sc.replica_id, damaged);
    return NamedCorruption(sc.shard_id, sc.replica_id, damaged);
  }
  r->term.store(st->hard_state.term);
  r->commit.store(st->hard_state.commit);
  FLOTILLA_RETURN_IF_ERROR(reservation.Commit(r));
  step_[sc.shard_id % step_.size()]->Add(r.get());
  if (auto* l = listener()) l->ReplicaStarted(sc.shard_id, sc.replica_id);
  Log().info("shard {} replica {}: started ({})", sc.shard_id, sc.replica_id,
             st->bootstrap ? "restart" : (join ? "join" : "new"));
  return Status::Ok();
}

// Restores a starting replica from its newest local snapshot. An on-disk
// state machine at or past the snapshot keeps its own state; one behind a
// shallow snapshot (no data of its own to restore) is brought up to it from
// the log where the log can, instead of refusing to start.
Status NodeHostImpl::RestoreAtStart(Replica* r, const logdb::ReplicaState& st) {
  std::string sessions;
  const std::string dir = SnapshotPath(r->snapshot_root, st.snapshot.index);
  Status s = VerifySnapshot(r, dir);
  if (s.ok() && r->skip_through >= st.snapshot.index) {
    s = ReadSnapshotSessions(dir, &sessions);
  } else if (s.ok() && r->sm()->on_disk() && IsShallowSnapshot(dir)) {
    s = FillOnDiskGap(r, st);
    if (s.ok()) s = ReadSnapshotSessions(dir, &sessions);
  } else if (s.ok()) {
    s = ReadSnapshot(dir, r->sm(), &sessions);
  }
  if (s.ok()) s = r->sessions.Deserialize(sessions);
  if (!s.ok()) {
    return Status(s.code(), "shard " + std::to_string(r->shard_id) + " replica " +
                                std::to_string(r->replica_id) +
                                ": restoring snapshot: " + s.message());
  }
  r->sm_membership = st.snapshot.membership;
  r->PublishMembership();
  LearnAddresses(r->shard_id, st.snapshot.membership);
  r->applied_term = st.snapshot.term;
  r->last_snapshot_index = st.snapshot.index;
  r->applied.store(st.snapshot.index);
  return Status::Ok();
}

// An on-disk state machine behind its replica's shallow snapshot. Written
// before state machines were given `noop` entries (issue 21), a snapshot
// could be ahead of the index the state machine reports whenever the batch
// that crossed snapshot_entries ended with entries that were not commands.
// Sync ran before that snapshot was written, so every command up to it had
// reached the state machine durably and the gap holds none: the state
// machine's state is the snapshot's. Where the log still holds the gap this
// is checked, and a plain command found there (a state machine that lost
// data it had synced) is applied now; session commands in the gap were
// answered as duplicates then and are not applied. The state machine then
// records the snapshot's index.
Status NodeHostImpl::FillOnDiskGap(Replica* r, const logdb::ReplicaState& st) {
  const uint64_t from = r->skip_through + 1;
  const uint64_t to = st.snapshot.index;
  std::vector<raft::Entry> gap;
  const bool held = st.first_index <= from && st.last_index >= to;
  if (held) {
    FLOTILLA_RETURN_IF_ERROR(
        logdb_->Entries(r->shard_id, r->replica_id, from, to + 1, UINT64_MAX, &gap));
  }
  std::vector<SMEntry> replay;
  for (const raft::Entry& e : gap) {
    if (e.type != raft::EntryType::kNormal || e.client_id != 0) continue;
    SMEntry se;
    se.index = e.index;
    se.cmd = e.cmd;
    replay.push_back(std::move(se));
  }
  const size_t commands = replay.size();
  if (replay.empty() || replay.back().index != to) {
    SMEntry noop;
    noop.index = to;
    noop.noop = true;
    replay.push_back(std::move(noop));
  }
  FLOTILLA_RETURN_IF_ERROR(r->sm()->Update(replay));
  FLOTILLA_RETURN_IF_ERROR(r->sm()->Sync());
  Log().warn(
      "shard {} replica {}: the state machine was at {}, behind its shallow snapshot {}; "
      "brought up to it from {} ({} commands applied)",
      r->shard_id, r->replica_id, r->skip_through, to,
      held ? "the log" : "the snapshot (the log no longer holds the gap)", commands);
  r->skip_through = to;
  return Status::Ok();
}

Status NodeHostImpl::StopReplica(uint64_t shard_id) {
  std::shared_ptr<Replica> r;
  {
    std::unique_lock<std::shared_mutex> l(replicas_mu_);
    auto it = replicas_.find(shard_id);
    if (it == replicas_.end()) return Status::NotFound("shard " + std::to_string(shard_id));
    r = it->second;
    replicas_.erase(it);
  }
  r->stopped.store(true);
  campaign_slots_.Release(r.get());
  step_[shard_id % step_.size()]->Remove(r.get());
  // Let a pass that may hold the replica finish before it is freed: the
  // worker's next pass no longer sees it. Keep it alive until then.
  step_[shard_id % step_.size()]->Wake();
  r->FailAllPending(RequestCode::kTerminated);
  Log().info("shard {} replica {}: stopped", r->shard_id, r->replica_id);
  if (auto* l = listener()) l->ReplicaStopped(r->shard_id, r->replica_id);
  // Workers hold raw pointers to replicas; a stopped replica is skipped by
  // every later pass but is kept alive until Close so that a pass running
  // now never touches freed memory.
  std::lock_guard<std::mutex> l(graveyard_mu_);
  graveyard_.push_back(std::move(r));
  return Status::Ok();
}

Status NodeHostImpl::RemoveData(uint64_t shard_id, uint64_t replica_id) {
  if (std::shared_ptr<Replica> r = Find(shard_id); r && r->replica_id == replica_id) {
    return Status::Rejected("shard " + std::to_string(shard_id) + " replica " +
                            std::to_string(replica_id) +
                            " is running; stop it before removing its data");
  }
  FLOTILLA_RETURN_IF_ERROR(logdb_->RemoveReplica(shard_id, replica_id));
  std::error_code ec;
  std::filesystem::remove_all(SnapshotRoot(config_.data_dir, shard_id, replica_id), ec);
  if (ec)
    return Status::IOError("removing snapshots of shard " + std::to_string(shard_id) + ": " +
                           ec.message());
  Log().info("shard {} replica {}: data removed", shard_id, replica_id);
  return Status::Ok();
}

Result<RequestHandle> NodeHostImpl::RequestSnapshot(uint64_t shard_id, Timeout t) {
  std::shared_ptr<Replica> r = Find(shard_id);
  if (!r) return Status::NotFound("shard " + std::to_string(shard_id) + " is not on this NodeHost");
  auto s = std::make_shared<internal::RequestState>(internal::RequestState::Clock::now() + t);
  const uint64_t key = NextKey();
  if (!r->AddPending(key, s)) return ReplicaStopped(shard_id);
  r->PushSnapshotRequest(key);
  apply_worker_for(shard_id)->Notify(r.get());
  return internal::HandleAccess::Make(std::move(s));
}

Result<RequestHandle> NodeHostImpl::Propose(uint64_t shard_id, std::string_view cmd, Timeout t) {
  raft::Entry e;
  e.cmd.assign(cmd);
  return ProposeEntry(shard_id, std::move(e), t);
}

Result<RequestHandle> NodeHostImpl::ProposeEntry(uint64_t shard_id, raft::Entry e, Timeout t) {
  Result<RequestHandle> h = ProposeEntryImpl(shard_id, std::move(e), t);
  Counters::Add(h.ok() ? counters_.proposals : counters_.proposals_refused, 1);
  return h;
}

Result<RequestHandle> NodeHostImpl::ProposeEntryImpl(uint64_t shard_id, raft::Entry e, Timeout t) {
  if (e.cmd.size() > config_.max_entry_bytes) {
    return Status::TooLarge("proposal of " + std::to_string(e.cmd.size()) +
                            " bytes exceeds max_entry_bytes " +
                            std::to_string(config_.max_entry_bytes));
  }
  if (storage_failed_.load() || storage_low_.load(std::memory_order_relaxed)) {
    // Say why: the disk failed (I/O error or no space), or its free space is
    // below the reserve (cleared by itself once space is freed).
    Status s = StorageStatus();
    if (!s.ok()) return s;
  }
  std::shared_ptr<Replica> r = Find(shard_id);
  if (!r) return Status::NotFound("shard " + std::to_string(shard_id) + " is not on this NodeHost");
  if (r->stopped.load()) return ReplicaStopped(shard_id);
  if (r->unrepairable.load(std::memory_order_acquire)) return r->UnrepairableError();
  // Back-pressure: refused before anything is queued, so memory stays bounded.
  if (r->log_full.load(std::memory_order_relaxed)) {
    return Status::Busy("shard " + std::to_string(shard_id) +
                        ": too many bytes proposed and not yet committed or applied "
                        "(max_uncommitted_bytes / max_unapplied_bytes); retry later");
  }
  if (logdb_->Overloaded()) {
    return Status::Busy("the LogDB is stalling writes for compaction; retry later");
  }
  auto s = std::make_shared<internal::RequestState>(internal::RequestState::Clock::now() + t);
  s->MakeCancellable();
  e.key = NextKey();
  const uint64_t key = e.key;
  if (!r->AddPending(key, s)) return ReplicaStopped(shard_id);
  if (!r->PushProposal(std::move(e), s, config_.max_proposal_queue_length,
                       config_.max_proposal_queue_bytes)) {
    r->TakePending(key);
    return Status::Busy("proposal queue of shard " + std::to_string(shard_id) +
                        " is full (max_proposal_queue_length / max_proposal_queue_bytes)");
  }
  step_[shard_id % step_.size()]->Notify(r.get());
  return internal::HandleAccess::Make(std::move(s));
}

Result<NodeHost::PendingSession> NodeHostImpl::RegisterSession(uint64_t shard_id, Timeout t) {
  uint64_t client_id = 0;
  while (client_id == 0) client_id = NextKey() ^ NextRandom();
  raft::Entry e;
  e.client_id = client_id;
  e.series_id = Session::kRegisterSeries;
  Result<RequestHandle> h = ProposeEntry(shard_id, std::move(e), t);
  if (!h.ok()) return h.status();
  return PendingSession{Session(shard_id, client_id), std::move(*h)};
}

Result<RequestHandle> NodeHostImpl::ProposeInSession(const Session& session, std::string_view cmd,
                                                     Timeout t) {
  if (!session.valid()) return Status::InvalidArgument("session is not registered");
  raft::Entry e;
  e.client_id = session.client_id();
  e.series_id = session.series_id();
  e.responded_to = session.responded_to();
  e.cmd.assign(cmd);
  return ProposeEntry(session.shard_id(), std::move(e), t);
}

Result<RequestHandle> NodeHostImpl::CloseSession(const Session& session, Timeout t) {
  if (!session.valid()) return Status::InvalidArgument("session is not registered");
  raft::Entry e;
  e.client_id = session.client_id();
  e.series_id = Session::kUnregisterSeries;
  return ProposeEntry(session.shard_id(), std::move(e), t);
}

Result<RequestHandle> NodeHostImpl::Read(uint64_t shard_id, std::string_view query, Timeout t) {
  std::shared_ptr<Replica> r = Find(shard_id);
  if (!r) return Status::NotFound("shard " + std::to_string(shard_id) + " is not on this NodeHost");
  if (r->unrepairable.load(std::memory_order_acquire)) return r->UnrepairableError();
  auto s = std::make_shared<internal::RequestState>(internal::RequestState::Clock::now() + t);
  s->MakeCancellable();  // a read applies nothing: a cancel only answers it early
  s->query.assign(query);
  const uint64_t ctx = NextKey();
  if (!r->AddPendingRead(ctx, s)) return ReplicaStopped(shard_id);
  if (!r->PushRead(ctx, config_.max_proposal_queue_length)) {
    r->TakePendingRead(ctx);
    return Status::Busy("read queue of shard " + std::to_string(shard_id) + " is full");
  }
  Counters::Add(counters_.reads, 1);
  step_[shard_id % step_.size()]->Notify(r.get());
  return internal::HandleAccess::Make(std::move(s));
}

Result<std::string> NodeHostImpl::StaleRead(uint64_t shard_id, std::string_view query) {
  std::shared_ptr<Replica> r = Find(shard_id);
  if (!r) return Status::NotFound("shard " + std::to_string(shard_id) + " is not on this NodeHost");
  return r->sm()->Lookup(query);
}

Result<RequestHandle> NodeHostImpl::ProposeConf(uint64_t shard_id, raft::ConfChange cc, Timeout t) {
  std::shared_ptr<Replica> r = Find(shard_id);
  if (!r) return Status::NotFound("shard " + std::to_string(shard_id) + " is not on this NodeHost");
  auto s = std::make_shared<internal::RequestState>(internal::RequestState::Clock::now() + t);
  ConfRequest c;
  c.change = std::move(cc);
  c.key = NextKey();
  if (!r->AddPending(c.key, s)) return ReplicaStopped(shard_id);
  r->PushConfChange(std::move(c));
  step_[shard_id % step_.size()]->Notify(r.get());
  return internal::HandleAccess::Make(std::move(s));
}

Result<RequestHandle> NodeHostImpl::AddReplica(uint64_t shard_id, uint64_t replica_id,
                                               const std::string& address, MemberKind kind,
                                               Timeout t) {
  raft::ConfChange cc;
  raft::ConfChangeItem item;
  item.replica = replica_id;
  item.context = address;
  item.type = kind == MemberKind::kVoter       ? raft::ConfChangeType::kAddVoter
              : kind == MemberKind::kNonVoting ? raft::ConfChangeType::kAddNonVoting
                                               : raft::ConfChangeType::kAddWitness;
  cc.items.push_back(std::move(item));
  return ProposeConf(shard_id, std::move(cc), t);
}

Result<RequestHandle> NodeHostImpl::RemoveReplica(uint64_t shard_id, uint64_t replica_id,
                                                  Timeout t) {
  raft::ConfChange cc;
  cc.items.push_back({raft::ConfChangeType::kRemove, replica_id, ""});
  return ProposeConf(shard_id, std::move(cc), t);
}

Status NodeHostImpl::TransferLeader(uint64_t shard_id, uint64_t target) {
  std::shared_ptr<Replica> r = Find(shard_id);
  if (!r) return Status::NotFound("shard " + std::to_string(shard_id) + " is not on this NodeHost");
  r->PushTransfer(target);
  step_[shard_id % step_.size()]->Notify(r.get());
  return Status::Ok();
}

Result<ReplicaInfo> NodeHostImpl::GetReplicaInfo(uint64_t shard_id) {
  std::shared_ptr<Replica> r = Find(shard_id);
  if (!r) return Status::NotFound("shard " + std::to_string(shard_id) + " is not on this NodeHost");
  ReplicaInfo info;
  info.shard_id = r->shard_id;
  info.replica_id = r->replica_id;
  info.leader_id = r->leader.load();
  info.term = r->term.load();
  info.commit_index = r->commit.load();
  info.applied_index = r->applied.load();
  info.role = static_cast<ReplicaRole>(r->role.load());
  info.quiesced = r->quiesced.load();
  return info;
}

Result<ShardMembership> NodeHostImpl::GetMembership(uint64_t shard_id) {
  std::shared_ptr<Replica> r = Find(shard_id);
  if (!r) return Status::NotFound("shard " + std::to_string(shard_id) + " is not on this NodeHost");
  const raft::Membership m = r->MembershipView();
  ShardMembership out;
  auto fill = [&](const std::vector<raft::ReplicaId>& ids, Members* members) {
    for (raft::ReplicaId id : ids) (*members)[id] = registry_.Resolve(shard_id, id).value_or("");
  };
  fill(m.voters, &out.voters);
  fill(m.voters_outgoing, &out.voters);
  fill(m.non_voting, &out.non_voting);
  fill(m.witnesses, &out.witnesses);
  return out;
}

NodeHostInfo NodeHostImpl::GetInfo() {
  NodeHostInfo info;
  info.raft_address = raft_address();
  info.storage = StorageStatus();
  std::vector<uint64_t> ids;
  {
    std::shared_lock<std::shared_mutex> l(replicas_mu_);
    for (const auto& [id, r] : replicas_) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  for (uint64_t id : ids) {
    Result<ReplicaInfo> ri = GetReplicaInfo(id);
    if (ri.ok()) info.replicas.push_back(std::move(*ri));
  }
  return info;
}

NodeHostMetrics NodeHostImpl::GetMetrics() {
  NodeHostMetrics m;
  const Counters& c = counters_;
  m.proposals = c.proposals.load();
  m.proposals_refused = c.proposals_refused.load();
  m.proposals_dropped = c.proposals_dropped.load();
  m.reads = c.reads.load();
  m.entries_committed = c.entries_committed.load();
  m.entries_applied = c.entries_applied.load();
  m.saves = c.saves.load();
  m.saved_entries = c.saved_entries.load();
  m.saved_bytes = c.saved_bytes.load();
  m.messages_sent = c.messages_sent.load();
  m.messages_received = c.messages_received.load();
  m.messages_dropped = c.messages_dropped.load();
  m.snapshots_sent = c.snapshots_sent.load();
  m.snapshots_received = c.snapshots_received.load();
  m.snapshot_bytes_sent = c.snapshot_bytes_sent.load();
  m.snapshot_bytes_received = c.snapshot_bytes_received.load();
  m.snapshots_taken = c.snapshots_taken.load();
  m.leader_changes = c.leader_changes.load();
  m.campaigns = c.campaigns.load();
  m.replica_steps = c.replica_steps.load();
  m.corruptions = c.corruptions.load();
  m.storage_resumes = c.storage_resumes.load();
  m.snapshots_damaged = c.snapshots_damaged.load();
  for (size_t i = 1; i < static_cast<size_t>(Rejection::kCount); ++i) {
    m.messages_rejected[std::string(RejectionName(static_cast<Rejection>(i)))] =
        c.rejected.by_reason[i].load(std::memory_order_relaxed);
  }
  for (size_t i = 0; i < static_cast<size_t>(transport::StreamRefusal::kCount); ++i) {
    m.streams_refused[std::string(
        transport::StreamRefusalName(static_cast<transport::StreamRefusal>(i)))] =
        c.streams_refused[i].load(std::memory_order_relaxed);
  }
  m.save_latency = c.save_latency.Read();
  if (logdb_) m.fsync_latency = logdb_->SyncLatency();
  m.campaigning = campaign_slots_.held();
  m.storage_failed = storage_failed_.load();
  m.storage_low = storage_low_.load();
  m.storage_free_bytes = storage_free_bytes_.load(std::memory_order_relaxed);
  if (transport_) {
    const transport::SnapshotStreamStats ss = transport_->SnapshotReceiveStats();
    m.snapshot_receives_active = ss.active;
    m.snapshot_receives_ended = {
        {"busy", ss.refused_busy},           {"peer_streams", ss.refused_peer_streams},
        {"peer_bytes", ss.ended_peer_bytes}, {"idle", ss.ended_idle},
        {"total", ss.ended_total},           {"evicted", ss.evicted}};
  }
  std::shared_lock<std::shared_mutex> l(replicas_mu_);
  for (const auto& [id, r] : replicas_) {
    ++m.shards;
    if (r->role.load() == static_cast<int>(raft::Role::kLeader)) ++m.leaders;
    if (r->quiesced.load()) ++m.quiesced;
    m.proposal_queue_depth += r->QueueDepth();
    m.apply_queue_depth += r->ApplyDepth();
    m.log_cache_bytes += r->cached_bytes.load(std::memory_order_relaxed);
  }
  return m;
}

namespace {

bool CarriesData(const raft::Message& m) {
  return std::any_of(m.entries.begin(), m.entries.end(), [](const raft::Entry& e) {
    return e.type == raft::EntryType::kNormal && !e.cmd.empty();
  });
}

}  // namespace

void NodeHostImpl::HandleBatch(std::vector<raft::Message>&& messages,
                               const std::string& source_address) {
  Counters::Add(counters_.messages_received, messages.size());
  uint64_t dropped = 0;
  std::shared_lock<std::shared_mutex> l(replicas_mu_);
  Replica* last = nullptr;
  for (raft::Message& m : messages) {
    if (Rejection why = CheckBatchMessage(m); why != Rejection::kNone) {
      ReportRejected(m.shard_id, m, why, source_address);
      continue;
    }
    // Below the storage reserve no new data is stored: a dropped append is
    // a lost message the leader resends once this NodeHost has space again.
    // Appends of no-ops and membership changes only still pass, so a new
    // leader can commit its first entry and members can still be changed.
    if (storage_low() && CarriesData(m) &&
        (m.type == raft::MessageType::kReplicate || m.type == raft::MessageType::kPropose)) {
      ReportRejected(m.shard_id, m, Rejection::kStorageLow, source_address);
      continue;
    }
    auto it = replicas_.find(m.shard_id);
    if (it == replicas_.end() || it->second->replica_id != m.to) {
      ++dropped;  // not ours
      continue;
    }
    Replica* r = it->second.get();
    if (!r->PushMessage(std::move(m), config_.max_inbound_queue_length, source_address)) {
      ++dropped;  // queue full
      continue;
    }
    if (r != last) {
      step_[r->shard_id % step_.size()]->Notify(r);
      last = r;
    }
  }
  Counters::Add(counters_.messages_dropped, dropped);
}

void NodeHostImpl::HandleUnreachable(raft::ShardId shard, raft::ReplicaId replica) {
  std::shared_ptr<Replica> r = Find(shard);
  if (!r) return;
  r->PushUnreachable(replica);
  step_[shard % step_.size()]->Notify(r.get());
}

// The addresses a membership carries (a snapshot's): a replica restored from
// one, after a restart or from its leader, learns how to reach the members
// added before the snapshot, whose conf-change entries it never replays.
void NodeHostImpl::LearnAddresses(raft::ShardId shard, const raft::Membership& m) {
  for (const auto& [id, address] : m.contexts) registry_.Add(shard, id, address);
}

// A snapshot of metadata only is a witness's: the receiver must not be a
// voter or non-voting member at the snapshot's index (it may be no member
// yet: a witness added after the snapshot learns so from the entries after
// it). A witness is listed among the voters too.
bool NodeHostImpl::MayTakeMetadataOnly(const raft::Message& install) {
  const raft::Membership& m = install.snapshot.membership;
  auto has = [&](const std::vector<raft::ReplicaId>& ids) {
    return std::find(ids.begin(), ids.end(), install.to) != ids.end();
  };
  if (has(m.witnesses)) return true;
  return !has(m.voters) && !has(m.voters_outgoing) && !has(m.non_voting) && !has(m.non_voting_next);
}

// Runs on a transport thread: reads only what the replica publishes. The
// step worker checks the whole message again when the stream has ended.
Status NodeHostImpl::AdmitSnapshot(const raft::Message& install,
                                   const std::string& source_address) {
  std::shared_ptr<Replica> r = Find(install.shard_id);
  Rejection why = Rejection::kBadAddress;  // no replica of the shard, or another one
  if (r && r->replica_id == install.to) {
    const raft::Membership members = r->MembershipView();
    why = CheckSnapshotStreamStart({r->replica_id, r->term.load(), r->leader.load(), &members},
                                   install);
  }
  if (why == Rejection::kNone) return Status::Ok();
  ReportRejected(install.shard_id, install, why, source_address);
  return Status::Rejected(std::string(RejectionName(why)));
}

void NodeHostImpl::HandleSnapshot(raft::Message install, std::string snapshot_path) {
  std::error_code ec;
  std::shared_ptr<Replica> r = Find(install.shard_id);
  if (!r || r->replica_id != install.to) {
    std::filesystem::remove_all(snapshot_path, ec);
    return;
  }
  Counters::Add(counters_.snapshots_received, 1);
  Counters::Add(counters_.snapshot_bytes_received, DirectoryBytes(snapshot_path));
  if (IsMetadataOnlySnapshot(snapshot_path) && !MayTakeMetadataOnly(install)) {
    Log().warn("shard {} replica {}: refused a snapshot of metadata only at {}: not a witness",
               r->shard_id, r->replica_id, install.snapshot.index);
    std::filesystem::remove_all(snapshot_path, ec);
    return;
  }
  // The verified snapshot waits under a name of its own until the core
  // installs it (StepWorker::PlaceReceivedSnapshot): the directory the LogDB
  // records is never replaced by one the core may refuse. One at or below
  // the commit index is refused for sure: only the core's answer matters.
  const uint64_t index = install.snapshot.index;
  if (index > r->commit.load()) {
    // The stream's chunks were verified on the way; the sender's checksums
    // file, when it sent one, proves its copy was whole at rest too.
    Status sealed = SealReceivedSnapshot(snapshot_path);
    if (!sealed.ok()) {
      NoteCorruption(r->shard_id, r->replica_id, sealed);
      std::filesystem::remove_all(snapshot_path, ec);
      return;
    }
  }
  const SnapshotSender sender{install.from, install.term};
  Status s = index <= r->commit.load()
                 ? Status::Ok()
                 : KeepReceivedSnapshot(r->snapshot_root, index, sender, snapshot_path);
  std::filesystem::remove_all(snapshot_path, ec);
  if (!s.ok()) {
    Log().error("shard {}: cannot keep received snapshot {}: {}", install.shard_id, index,
                s.ToString());
    return;
  }
  Log().info("shard {} replica {}: received snapshot {}", r->shard_id, r->replica_id, index);
  if (auto* l = listener()) l->SnapshotReceived(r->shard_id, r->replica_id, index);
  if (r->PushMessage(std::move(install), config_.max_inbound_queue_length, std::string())) {
    NotifyStep(r.get());
  } else {
    DropReceivedSnapshot(r->snapshot_root, index, sender);  // no message will refer to it
  }
}

void NodeHostImpl::NotifyStep(Replica* r) { step_[r->shard_id % step_.size()]->Notify(r); }

void NodeHostImpl::ReportRejected(uint64_t shard, const raft::Message& m, Rejection why,
                                  std::string_view source) {
  counters_.rejected.Add(why);
  const uint64_t sender = shard * 0x9e3779b97f4a7c15ULL ^ m.from;
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> l(reject_log_mu_);
    if (reject_logged_.size() >= kMaxRejectLogSenders) reject_logged_.clear();
    auto [it, fresh] = reject_logged_.try_emplace(sender, now);
    if (!fresh && now - it->second < kRejectLogInterval) return;
    it->second = now;
  }
  Log().warn(
      "shard {}: dropped {} from replica {} to replica {} (term {}, index {}, commit {}{}{}): {}",
      shard, raft::MessageTypeName(m.type), m.from, m.to, m.term, m.log_index, m.commit,
      source.empty() ? "" : ", from ", EscapeForLog(source), RejectionName(why));
}

void NodeHostImpl::HandleStreamRefused(transport::StreamRefusal why) {
  counters_.streams_refused[static_cast<size_t>(why)].fetch_add(1, std::memory_order_relaxed);
}

void NodeHostImpl::HandleConnectionUp(const std::string& address) {
  if (auto* l = listener()) l->ConnectionUp(address);
}

void NodeHostImpl::HandleConnectionDown(const std::string& address) {
  if (auto* l = listener()) l->ConnectionDown(address);
}

void NodeHostImpl::HandleSnapshotStatus(raft::ShardId shard, raft::ReplicaId replica, bool failed) {
  if (!failed) Counters::Add(counters_.snapshots_sent, 1);
  if (auto* l = listener()) l->SnapshotSent(shard, replica, failed);
  std::shared_ptr<Replica> r = Find(shard);
  if (!r) return;
  r->PushSnapshotStatus(replica, failed);
  step_[shard % step_.size()]->Notify(r.get());
}

}  // namespace engine
}  // namespace flotilla
