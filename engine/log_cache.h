// LogCache: the raft::LogReader of one replica in a NodeHost. Recent entries
// are kept in memory (bounded by bytes) so that replication and applying stay
// off RocksDB reads; older entries are read from the LogDB.
//
// Not thread-safe: used by the step worker that owns the replica.
#pragma once

#include <deque>

#include "engine/raft/log_reader.h"
#include "logdb/logdb.h"

namespace flotilla::engine {

class LogCache final : public raft::LogReader {
 public:
  // `state` is what the LogDB holds for the replica on start.
  LogCache(logdb::LogDB* db, raft::ShardId shard, raft::ReplicaId replica,
           const logdb::ReplicaState& state, uint64_t max_cache_bytes);

  raft::Index FirstIndex() const override { return first_index_; }
  raft::Index LastIndex() const override { return last_index_; }
  raft::LogStatus TermAt(raft::Index index, raft::Term* term) const override;
  raft::LogStatus Entries(raft::Index lo, raft::Index hi, uint64_t max_bytes,
                          std::vector<raft::Entry>* out) const override;
  raft::SnapshotMeta Snapshot() const override { return snapshot_; }

  // After a save: entries replace everything at or above the first index.
  void Append(std::vector<raft::Entry>&& entries);
  void ApplySnapshot(const raft::SnapshotMeta& meta);
  // A snapshot was taken locally; entries up to `compact_to` may go.
  void SetSnapshot(const raft::SnapshotMeta& meta, raft::Index compact_to);
  // No one needs entries below `keep_from` from memory any more (applied
  // here, and matched by every follower the leader replicates to): they leave
  // the cache, still readable from the LogDB. The last entry always stays.
  void Release(raft::Index keep_from);
  uint64_t cached_bytes() const { return cache_bytes_; }
  // The last LogDB read that failed with anything but NotFound (OK when
  // none): what the core's kCorruption stands for, with what and where.
  const Status& last_error() const { return last_error_; }
  raft::Index cache_first() const { return cache_first_; }

 private:
  void Trim();

  logdb::LogDB* db_;
  raft::ShardId shard_;
  raft::ReplicaId replica_;
  uint64_t max_cache_bytes_;
  raft::Index first_index_;
  raft::Index last_index_;
  raft::Term prev_term_;  // term of first_index_ - 1
  raft::SnapshotMeta snapshot_;
  std::deque<raft::Entry> cache_;  // entries [cache_first_, last_index_]
  raft::Index cache_first_;
  uint64_t cache_bytes_ = 0;
  // Set by the const reads the core makes; only the owning step worker
  // touches it.
  mutable Status last_error_;
};

}  // namespace flotilla::engine
