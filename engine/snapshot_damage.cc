// A replica's own snapshot damaged at rest, found while it is sent to a
// follower (issue 15): the copy is never sent again, and a fresh snapshot is
// taken from the state machine, which holds the same state. Without this the
// leader sent the damaged copy for ever and the follower, which refuses it,
// never caught up.

#include "engine/log/log.h"
#include "engine/node_host_impl.h"
#include "engine/verified_source.h"

namespace flotilla::engine {

Result<std::unique_ptr<transport::SnapshotSource>> NodeHostImpl::VerifiedOwnSnapshot(
    uint64_t shard, uint64_t replica, uint64_t index, const std::string& dir,
    std::unique_ptr<transport::SnapshotSource> inner) {
  Result<std::vector<SnapshotFileSum>> sums = ReadSnapshotChecksums(dir);
  // Written before checksums were kept: sent as it is (the restore path
  // gives it a checksums file).
  if (sums.status().code() == StatusCode::kNotFound) return inner;
  if (!sums.ok()) {
    OnDamagedOwnSnapshot(shard, replica, index, sums.status());
    return sums.status();
  }
  // The transport stops before this NodeHost goes away, and reads no source
  // after it stopped: `this` outlives the callback.
  return NewVerifiedSnapshotSource(std::move(inner), dir, std::move(sums).value(),
                                   [this, shard, replica, index](const Status& s) {
                                     OnDamagedOwnSnapshot(shard, replica, index, s);
                                   });
}

void NodeHostImpl::OnDamagedOwnSnapshot(uint64_t shard, uint64_t replica, uint64_t index,
                                        const Status& s) {
  std::shared_ptr<Replica> r = Find(shard);
  if (!r || r->replica_id != replica) return;
  // Several streams may find the same damage: it is counted once.
  if (r->damaged_snapshot.exchange(index) == index) return;
  Counters::Add(counters_.snapshots_damaged, 1);
  Counters::Add(counters_.corruptions, 1);
  Log().error(
      "shard {} replica {}: its own snapshot {} failed its checksums while it was sent ({}); "
      "it is not sent again, and a fresh one is taken from the state machine",
      shard, replica, index, s.message());
  apply_worker_for(shard)->Notify(r.get());
}

void ApplyWorker::RetakeDamagedSnapshot(Replica* r) {
  const uint64_t damaged = r->damaged_snapshot.load();
  if (damaged == 0 || r->stopped.load()) return;
  // A snapshot job in flight ends by notifying this worker: looked at then.
  if (r->snapshot_in_flight.load(std::memory_order_acquire)) return;
  uint64_t expected = damaged;
  if (r->last_snapshot_index > damaged) {
    // A newer snapshot was taken meanwhile: the core sends that one.
    r->damaged_snapshot.compare_exchange_strong(expected, 0);
    return;
  }
  const uint64_t target = r->applied.load();
  const bool same_index = target == damaged;
  // Nothing applied since: the fresh snapshot is written at the same index,
  // in place of the damaged directory, and holds what it should have held.
  if (same_index) r->last_snapshot_index = damaged - 1;
  MaybeSnapshot(r, /*requested=*/true);
  if (r->last_snapshot_index == target) {
    r->damaged_snapshot.compare_exchange_strong(expected, 0);
    Log().info("shard {} replica {}: a fresh snapshot at {} replaces the damaged one at {}",
               r->shard_id, r->replica_id, target, damaged);
    return;
  }
  if (same_index) r->last_snapshot_index = damaged;
  // The state machine could not write a snapshot: it cannot be trusted to
  // serve either. Only this replica stops.
  const Status why = Status::Corruption(
      "shard " + std::to_string(r->shard_id) + " replica " + std::to_string(r->replica_id) +
      ": its snapshot " + std::to_string(damaged) +
      " is damaged and the state machine could not write a fresh one (see the log); the "
      "replica stops");
  Log().error("{}", why.message());
  nh_->FailReplica(r);
}

}  // namespace flotilla::engine
