// LogDB: the durable store of the Raft logs of every replica on one NodeHost.
//
// The engine calls Save once per worker pass with the updates of all the
// shards that worker stepped; one Save is one atomic write and (with sync on)
// one fsync, so durability is paid once per pass, not once per shard. Reads
// happen on restart (ReadState, Entries) and when the in-memory entry cache of
// a replica misses.
//
// Contract shared by every implementation (tests/logdb/conformance_test.cc
// checks it against each of them):
//  - A Save that returns OK is entirely durable; a Save that fails, or that was
//    interrupted by a crash, is either entirely visible after restart or not at
//    all, never in part.
//  - Any failed write leaves the LogDB "poisoned": every later write returns
//    the same error. An fsync that failed is never retried as if nothing had
//    happened, because the kernel may already have dropped the dirty pages it
//    could not write (see docs/logdb.md for what the engine does then). Reads
//    keep working so the engine can report state.
//  - Every stored entry is verified against its checksum when read; a mismatch
//    is a Corruption status naming shard, replica and index.
//
// Record layout: logdb/format.h and docs/logdb-format.md.
//
// Thread-safety: every implementation is thread-safe. Calls that write the
// same replica must not run concurrently (the engine guarantees this: one step
// worker owns a shard); calls on different replicas may.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/raft/types.h"
#include "flotilla/metrics.h"
#include "flotilla/status.h"

namespace flotilla::logdb {

struct ReplicaKey {
  raft::ShardId shard_id = 0;
  raft::ReplicaId replica_id = 0;
  friend auto operator<=>(const ReplicaKey&, const ReplicaKey&) = default;
};

// How a replica was created; written once before its first Save.
struct Bootstrap {
  std::map<raft::ReplicaId, std::string> members;  // initial members: replica id -> raft address
  bool join = false;               // the replica joins an existing shard (members empty)
  uint8_t state_machine_kind = 0;  // engine-defined: in-memory, concurrent, on-disk
  friend bool operator==(const Bootstrap&, const Bootstrap&) = default;
};

// What one replica persists in a Save.
struct ReplicaUpdate {
  raft::ShardId shard_id = 0;
  raft::ReplicaId replica_id = 0;
  // Contiguous, ascending, indexes in [1, format::kMaxIndex]. Storing entries
  // from index i replaces every stored entry at or above i (the suffix a new
  // leader overwrote). Not owned: must stay valid during Save.
  std::span<const raft::Entry> entries;
  std::optional<raft::HardState> hard_state;
  // A snapshot received from the leader: it replaces the whole log (every
  // stored entry is removed before `entries` are written). `entries`, if any,
  // must start at snapshot->index + 1. Locally taken snapshots, which keep the
  // log, use LogDB::SaveSnapshot instead.
  std::optional<raft::SnapshotMeta> snapshot;

  // The part of a core Update that must be persisted. `u` must outlive the result.
  static ReplicaUpdate From(const raft::Update& u) {
    return {u.shard_id, u.replica_id, u.entries_to_save, u.hard_state, u.snapshot};
  }
};

// A replica that lost stored records and repairs them from its peers
// (docs/raft-core.md, Repair): kept until the repair ends, so that a restart
// in the middle keeps its rule.
struct RepairRecord {
  raft::Index until = 0;  // the last index it held: it may have acknowledged up to there
  raft::Term term = 0;    // its term when the loss was found
  bool hard_state_lost = false;
  friend bool operator==(const RepairRecord&, const RepairRecord&) = default;
};

// What a replica finds on start.
struct ReplicaState {
  raft::HardState hard_state;
  raft::SnapshotMeta snapshot;         // empty when none
  std::optional<Bootstrap> bootstrap;  // unset when never saved
  // The entries held are [first_index, last_index]; none when
  // first_index == last_index + 1. With no entries held, last_index is the
  // newest of the snapshot index and the compaction point.
  raft::Index first_index = 1;
  raft::Index last_index = 0;
  // The term of entry first_index - 1 (0 when unknown or first_index is 1),
  // from the snapshot or the compaction record: what the core's log needs
  // to match an append right after its first entry.
  raft::Term prev_term = 0;
  std::optional<RepairRecord> repair;  // set while the replica repairs
  friend bool operator==(const ReplicaState&, const ReplicaState&) = default;
};

// An update that SaveIsolated left out: a stored record of its replica that
// the update had to read is damaged.
struct DamagedUpdate {
  size_t update = 0;  // its position in the updates given
  Status status;      // Corruption, naming shard, replica and record
};

class LogDB {
 public:
  virtual ~LogDB() = default;

  // Persists the updates of many replicas in one atomic write and, when the
  // implementation syncs, one fsync. On a write error (IOError, NoSpace, ...)
  // nothing is acknowledged and the LogDB is poisoned. InvalidArgument
  // (malformed update: non-contiguous entries, index 0, a gap after the
  // stored log, entries not following a snapshot in the same update, a
  // replica named by two updates of the call) is returned before anything is
  // written and does not poison.
  [[nodiscard]] virtual Status Save(const std::vector<ReplicaUpdate>& updates) = 0;

  // Save, with the damage of one replica kept to that replica: an update
  // that must read a stored record of its replica to be encoded (the bounds
  // of its log, the batch a new suffix cuts) and finds it damaged
  // (Corruption) is left out and listed in `damaged`; the other updates are
  // saved in one write as Save saves them, and the LogDB is not poisoned.
  // An implementation that never reads to save forwards to Save.
  [[nodiscard]] virtual Status SaveIsolated(const std::vector<ReplicaUpdate>& updates,
                                            std::vector<DamagedUpdate>* damaged) {
    damaged->clear();
    return Save(updates);
  }

  // Records a snapshot taken locally; the entries stay (CompactTo removes
  // them later). A snapshot older than the stored one is ignored. Durable.
  [[nodiscard]] virtual Status SaveSnapshot(raft::ShardId shard, raft::ReplicaId replica,
                                            const raft::SnapshotMeta& meta) = 0;

  // Records how a replica was created. Durable.
  [[nodiscard]] virtual Status SaveBootstrap(raft::ShardId shard, raft::ReplicaId replica,
                                             const Bootstrap& bootstrap) = 0;

  // Appends entries [lo, hi) to `out`, stopping before the entry that would
  // take the accounted size (Entry::SizeBytes) above `max_bytes`; at least one
  // entry is returned when lo < hi. Errors: DataLoss when lo is below the first
  // entry held (compacted), NotFound when hi - 1 is above the last entry held,
  // Corruption when an entry fails its checksum or is missing inside the held
  // range. On error `out` may hold the entries read before the failure.
  [[nodiscard]] virtual Status Entries(raft::ShardId shard, raft::ReplicaId replica, raft::Index lo,
                                       raft::Index hi, uint64_t max_bytes,
                                       std::vector<raft::Entry>* out) = 0;

  // The term of entry `index`; also answers for the snapshot index and the
  // compaction point. DataLoss below them, NotFound above the last entry,
  // Corruption on a checksum mismatch.
  [[nodiscard]] virtual Result<raft::Term> Term(raft::ShardId shard, raft::ReplicaId replica,
                                                raft::Index index) = 0;

  // Everything a replica needs to restart. A replica with no records gets the
  // empty state (not NotFound): check `bootstrap` to tell.
  [[nodiscard]] virtual Result<ReplicaState> ReadState(raft::ShardId shard,
                                                       raft::ReplicaId replica) = 0;

  // ReadState for a replica that repairs: a damaged hard state does not fail
  // the read; it is reported in `*hard_state_damage` (Corruption) and left
  // empty. Other damage fails the read as in ReadState.
  [[nodiscard]] virtual Result<ReplicaState> ReadStateForRepair(raft::ShardId shard,
                                                                raft::ReplicaId replica,
                                                                Status* hard_state_damage) {
    *hard_state_damage = Status::Ok();
    return ReadState(shard, replica);
  }

  // Records (or, with nullopt, ends) the repair of a replica. Durable.
  [[nodiscard]] virtual Status SaveRepair(raft::ShardId shard, raft::ReplicaId replica,
                                          const std::optional<RepairRecord>& repair) = 0;

  // Replaces every record of a replica, in one durable write, with a
  // bootstrap, a hard state and a repair record: the replica is rebuilt from
  // its peers, and a crash never leaves it without the repair record.
  [[nodiscard]] virtual Status ResetForRebuild(raft::ShardId shard, raft::ReplicaId replica,
                                               const Bootstrap& bootstrap,
                                               const raft::HardState& hs,
                                               const RepairRecord& repair) = 0;

  // Every replica with at least one record, in (shard, replica) order.
  [[nodiscard]] virtual Result<std::vector<ReplicaKey>> ListReplicas() = 0;

  // Removes entries at or below `index` (range delete) and records the index
  // and term of the last removed one. A no-op when `index` is at or below an
  // earlier compaction; InvalidArgument when no entry `index` is held (nor
  // is it the snapshot index). Removing every held entry is allowed. Not synced: a
  // compaction lost in a crash only leaves entries that are removed again.
  [[nodiscard]] virtual Status CompactTo(raft::ShardId shard, raft::ReplicaId replica,
                                         raft::Index index) = 0;

  // Removes every record of a replica. Durable.
  [[nodiscard]] virtual Status RemoveReplica(raft::ShardId shard, raft::ReplicaId replica) = 0;

  // Human-readable name of the implementation ("rocksdb", "memory").
  virtual const char* Name() const = 0;

  // Latency of each fsync of the write-ahead log (empty when the
  // implementation does not measure it).
  virtual LatencyHistogram SyncLatency() const { return {}; }
  // True while the database cannot keep up (RocksDB is stalling or stopping
  // writes for compaction): new proposals are refused as busy until it
  // clears, so that memory does not grow behind a slow disk. Cheap: callers
  // may ask on every proposal.
  virtual bool Overloaded() const { return false; }

  // After a write failed for want of space (NoSpace), tries to take writes
  // again: the store clears its failed state (RocksDB's DB::Resume, which
  // moves writes to a new write-ahead log) and the poison is lifted. OK when
  // writes are taken again (or nothing was poisoned); NoSpace while the disk
  // is still full, so the caller tries again later. A LogDB poisoned by any
  // other failure (IOError: an fsync that failed may have lost dirty pages)
  // is never resumed and returns that poison, until a restart. The write
  // that failed was not acknowledged: the caller saves it again.
  [[nodiscard]] virtual Status Resume() { return Status::Ok(); }

  // The store's own damage (RocksDB: a block of an SST file that fails its
  // checksum) reported by `corruption`, a Corruption status a read
  // returned: the damaged file, and every replica with records in it whose
  // records can no longer all be read. Empty when the status names no file
  // of the store (our own checksums, or an implementation without files).
  struct StoreDamage {
    std::string file;
    std::vector<ReplicaKey> replicas;
  };
  [[nodiscard]] virtual StoreDamage DamageOf(const Status& corruption) {
    (void)corruption;
    return {};
  }
};

}  // namespace flotilla::logdb
