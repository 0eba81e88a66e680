// Repair from peers (docs/raft-core.md, Repair): a replica whose stored
// entries, hard state or snapshot are damaged does not stop. It drops what is
// damaged (an entry and everything after it; for a snapshot, everything),
// records the last index it held (it may have acknowledged up to there), and
// starts with a core that neither votes nor campaigns until its log matches a
// leader's far enough; the leader sends the lost entries (or a snapshot)
// through ordinary replication.

#include <algorithm>
#include <filesystem>

#include "engine/log/log.h"
#include "engine/node_host_impl.h"
#include "engine/snapshot_files.h"

namespace flotilla::engine {

namespace {

constexpr uint64_t kScanChunkBytes = 4 << 20;

std::string Name(const ShardConfig& sc) {
  return "shard " + std::to_string(sc.shard_id) + " replica " + std::to_string(sc.replica_id);
}

// True when a voter other than `self` may hold a copy of what this replica
// lost: the voters of its snapshot, or else its initial members (a joiner
// was added by a running shard).
bool HasOtherVoters(const logdb::ReplicaState& st, raft::ReplicaId self) {
  if (st.bootstrap->join && st.snapshot.IsEmpty()) return true;
  std::vector<raft::ReplicaId> voters = st.snapshot.membership.voters;
  if (st.snapshot.IsEmpty()) {
    for (const auto& [id, addr] : st.bootstrap->members) voters.push_back(id);
  }
  return std::any_of(voters.begin(), voters.end(), [&](raft::ReplicaId v) { return v != self; });
}

// When no peer can supply what was lost, the replica is refused with the
// damage named: serving without it could serve wrong data.
Status NoCopyElsewhere(const Status& damage) {
  return Status::Corruption(damage.message() +
                            "; no other voter holds a copy, so it cannot be repaired");
}

}  // namespace

Result<raft::Index> NodeHostImpl::FirstDamagedEntry(const ShardConfig& sc,
                                                    const logdb::ReplicaState& st,
                                                    std::vector<raft::Entry>* last_good,
                                                    raft::Term* max_term, Status* damage) {
  std::vector<raft::Entry> chunk;
  raft::Index lo = st.first_index;
  while (lo <= st.last_index) {
    chunk.clear();
    const Status s =
        logdb_->Entries(sc.shard_id, sc.replica_id, lo, st.last_index + 1, kScanChunkBytes, &chunk);
    for (const raft::Entry& e : chunk) *max_term = std::max(*max_term, e.term);
    if (chunk.empty() && s.ok()) break;  // never: a read returns at least one entry
    if (!chunk.empty()) {
      last_good->assign(1, std::move(chunk.back()));
      lo += chunk.size();
    }
    if (s.code() == StatusCode::kCorruption) {
      NoteCorruption(sc.shard_id, sc.replica_id, s);
      *damage = s;
      return lo;
    }
    if (!s.ok()) return s;
  }
  return raft::Index{0};
}

Status NodeHostImpl::RebuildFromPeers(const ShardConfig& sc, bool hard_state_lost,
                                      logdb::ReplicaState* st) {
  logdb::RepairRecord rec;
  rec.until = std::max(st->last_index, st->repair ? st->repair->until : 0);
  rec.term = std::max(st->hard_state.term, st->repair ? st->repair->term : 0);
  rec.hard_state_lost = hard_state_lost || (st->repair && st->repair->hard_state_lost);
  const raft::HardState hs{st->hard_state.term, hard_state_lost ? 0 : st->hard_state.vote, 0};
  FLOTILLA_RETURN_IF_ERROR(
      logdb_->ResetForRebuild(sc.shard_id, sc.replica_id, *st->bootstrap, hs, rec));
  std::error_code ec;
  std::filesystem::remove_all(SnapshotRoot(config_.data_dir, sc.shard_id, sc.replica_id), ec);
  logdb::ReplicaState fresh;
  fresh.hard_state = hs;
  fresh.bootstrap = st->bootstrap;
  fresh.repair = rec;
  *st = std::move(fresh);
  Log().warn(
      "{}: rebuilt from its peers: every record dropped; it votes again once it holds "
      "the log up to index {}",
      Name(sc), rec.until);
  return Status::Ok();
}

// The view of a log damaged at entry `d`: entries d and after are left out.
// Below the snapshot the view starts after it, and the LogDB is compacted to
// it, so that no later save reads the damaged entry.
static Status TruncateView(logdb::LogDB* db, const ShardConfig& sc, raft::Index d,
                           logdb::ReplicaState* st) {
  if (d <= st->snapshot.index) {
    st->first_index = st->snapshot.index + 1;
    st->last_index = st->snapshot.index;
    st->prev_term = st->snapshot.term;
    return db->CompactTo(sc.shard_id, sc.replica_id, st->snapshot.index);
  }
  st->last_index = d - 1;
  return Status::Ok();
}

Result<logdb::ReplicaState> NodeHostImpl::ReadForStart(const ShardConfig& sc,
                                                       std::vector<raft::Entry>* last_entry) {
  Status hs_damage;
  Result<logdb::ReplicaState> st =
      logdb_->ReadStateForRepair(sc.shard_id, sc.replica_id, &hs_damage);
  if (!st.ok() || !st->bootstrap) {
    NoteCorruption(sc.shard_id, sc.replica_id, st.status());
    return st;
  }
  NoteCorruption(sc.shard_id, sc.replica_id, hs_damage);
  if (!st->snapshot.IsEmpty()) {
    const std::string dir = SnapshotPath(SnapshotRoot(config_.data_dir, sc.shard_id, sc.replica_id),
                                         st->snapshot.index);
    Result<SnapshotCheck> check = VerifySnapshotFiles(dir);
    if (check.status().code() == StatusCode::kCorruption) {
      NoteCorruption(sc.shard_id, sc.replica_id, check.status());
      if (!HasOtherVoters(*st, sc.replica_id)) return NoCopyElsewhere(check.status());
      FLOTILLA_RETURN_IF_ERROR(RebuildFromPeers(sc, !hs_damage.ok(), &*st));
      return st;
    }
  }
  raft::Term max_term = st->snapshot.term;
  Status entry_damage;
  Result<raft::Index> d = FirstDamagedEntry(sc, *st, last_entry, &max_term, &entry_damage);
  if (!d.ok()) return d.status();
  if (*d == 0 && hs_damage.ok()) return st;
  if (!HasOtherVoters(*st, sc.replica_id))
    return NoCopyElsewhere(*d != 0 ? entry_damage : hs_damage);
  logdb::RepairRecord rec;
  rec.until = std::max(st->last_index, st->repair ? st->repair->until : 0);
  rec.hard_state_lost = !hs_damage.ok() || (st->repair && st->repair->hard_state_lost);
  if (*d != 0) {
    const Status cut = TruncateView(logdb_.get(), sc, *d, &*st);
    if (cut.code() == StatusCode::kCorruption) {
      // The damaged entry is the snapshot's own (compacting to it reads it):
      // the replica starts again from nothing instead.
      last_entry->clear();
      FLOTILLA_RETURN_IF_ERROR(RebuildFromPeers(sc, !hs_damage.ok(), &*st));
      return st;
    }
    FLOTILLA_RETURN_IF_ERROR(cut);
    if (st->last_index < st->first_index) last_entry->clear();
  }
  if (!hs_damage.ok()) {
    // The term is at least the highest of the log; the vote is unknown, so
    // the core first asks every voter's term (Config::hard_state_lost).
    st->hard_state = raft::HardState{max_term, raft::kNoReplica, st->snapshot.index};
  }
  st->hard_state.commit = std::clamp(st->hard_state.commit, st->snapshot.index,
                                     std::max(st->snapshot.index, st->last_index));
  rec.term = std::max(st->hard_state.term, st->repair ? st->repair->term : 0);
  FLOTILLA_RETURN_IF_ERROR(logdb_->SaveRepair(sc.shard_id, sc.replica_id, rec));
  if (!hs_damage.ok()) {
    logdb::ReplicaUpdate ru;
    ru.shard_id = sc.shard_id;
    ru.replica_id = sc.replica_id;
    ru.hard_state = st->hard_state;
    FLOTILLA_RETURN_IF_ERROR(logdb_->Save({ru}));
  }
  st->repair = rec;
  Log().warn(
      "{}: repairing from its peers: {}; its log now ends at {}; it votes again once it "
      "holds the log up to index {}",
      Name(sc),
      *d != 0 ? "entries from " + std::to_string(*d) + " on are damaged"
              : std::string("its hard state is damaged"),
      st->last_index, rec.until);
  return st;
}

void NodeHostImpl::RestartToRepair(uint64_t shard_id) {
  std::lock_guard<std::mutex> l(repair_mu_);
  if (closed_.load()) return;
  if (!deps_.start_threads) {
    pending_repairs_.push_back(shard_id);
    return;
  }
  repair_threads_.emplace_back([this, shard_id] { RestartNow(shard_id); });
}

void NodeHostImpl::RunPendingRepairs() {
  std::vector<uint64_t> shards;
  {
    std::lock_guard<std::mutex> l(repair_mu_);
    shards.swap(pending_repairs_);
  }
  for (uint64_t shard : shards) RestartNow(shard);
}

void NodeHostImpl::RestartNow(uint64_t shard_id) {
  std::shared_ptr<Replica> r = Find(shard_id);
  if (!r || !r->make) return;
  const ShardConfig sc = r->config;
  const auto make = r->make;
  const uint8_t kind = r->kind;
  const bool join = r->join;
  r.reset();
  if (!StopReplica(shard_id).ok()) return;
  const Status s =
      StartReplicaImpl(sc, Members{}, join ? StartMode::kJoin : StartMode::kNewShard, kind, make);
  if (!s.ok()) {
    Log().error("shard {} replica {}: could not start again to repair: {}", sc.shard_id,
                sc.replica_id, s.ToString());
  }
}

// After each pass of a replica's step worker.
void NodeHostImpl::TrackRepair(Replica* r) {
  ReportUnrepairable(r);
  EndRepairIfDone(r);
}

// Every voter lost entries it may have acknowledged (raft::Raft::
// unrepairable): no leader can be elected to repair any of them. The shard
// keeps what it may have acknowledged unavailable rather than serve without
// it, and says so, naming the replicas and what this one lost, once when it
// starts and once when it ends (a voter whose data an operator restored can
// lead again).
void NodeHostImpl::ReportUnrepairable(Replica* r) {
  const raft::Raft& raft = r->peer->raft();
  const bool stuck = raft.unrepairable();
  if (stuck == r->unrepairable.load(std::memory_order_relaxed)) return;
  if (!stuck) {
    r->unrepairable.store(false, std::memory_order_release);
    Log().info("shard {} replica {}: a voter that can repair the shard answers again", r->shard_id,
               r->replica_id);
    return;
  }
  std::vector<raft::ReplicaId> ids = raft.repairing_voters();
  ids.push_back(r->replica_id);
  std::sort(ids.begin(), ids.end());
  std::string names;
  for (raft::ReplicaId id : ids) names += (names.empty() ? "" : ", ") + std::to_string(id);
  Status s = Status::Corruption(
      "shard " + std::to_string(r->shard_id) +
      " cannot be repaired: every voter lost stored entries it may have acknowledged (replicas " +
      names + " are all repairing; replica " + std::to_string(r->replica_id) +
      " holds its log up to index " + std::to_string(raft.log().LastIndex()) +
      " and lost what it held up to index " + std::to_string(raft.repair_until()) +
      "), so no undamaged copy is left to repair them from; the shard serves nothing rather "
      "than serve without them");
  Log().error("{}", s.message());
  r->SetUnrepairableError(std::move(s));
  r->unrepairable.store(true, std::memory_order_release);
}

void NodeHostImpl::EndRepairIfDone(Replica* r) {
  if (!r->repair_recorded || r->peer->raft().repairing()) return;
  const Status s = logdb_->SaveRepair(r->shard_id, r->replica_id, std::nullopt);
  if (!s.ok()) return;  // kept: the repair is done again after a restart, which is safe
  r->repair_recorded = false;
  Log().info("shard {} replica {}: repaired from its peers; it votes again", r->shard_id,
             r->replica_id);
}

}  // namespace flotilla::engine
