// MemoryLogDB: the LogDB over an in-memory ordered map, for tests and the
// deterministic simulator.
//
// It runs the same KvLogDB logic and record format as the RocksDB LogDB, so
// checksums, poisoning and read semantics are identical; only the store
// differs. It starts no thread and its behaviour depends only on its calls, so
// a simulation that drives it from one seed replays exactly. Every write is
// "durable" on return; crashes are simulated with the fault hooks below.
//
// Thread-safety: thread-safe (the engine may read from another thread); the
// fault hooks may be called from any thread.
#pragma once

#include <memory>

#include "logdb/kv_logdb.h"

namespace flotilla::logdb {

class MemoryStore;

class MemoryLogDB final : public KvLogDB {
 public:
  MemoryLogDB();
  ~MemoryLogDB() override;

  // The next write call (Save, SaveSnapshot, SaveBootstrap, CompactTo,
  // RemoveReplica) fails with `error` (e.g. Status::IOError for a failed
  // fsync, Status::NoSpace for a full disk) and changes nothing. As for any
  // failed write, the LogDB is then poisoned until Restart().
  void FailNextWrite(Status error);

  // Flips bit `bit` (counted from the first byte of the entry's record in its
  // batch, modulo the record's size in bits) of the stored entry; the next
  // read of it reports Corruption. Returns false when no such entry is stored.
  bool FlipEntryBit(raft::ShardId shard, raft::ReplicaId replica, raft::Index index, size_t bit);

  // A torn last write: reverts every effect of the last successful write call
  // as if it had never returned, then restarts. Returns false when there is
  // nothing to revert (no write since the last revert).
  bool DropLastWrite();

  // How many writes have reached the store (successful batches), so that a
  // caller can tell whether a write call wrote anything (a call may return
  // early, e.g. compacting to an index already compacted).
  uint64_t store_writes() const;

  // Simulates a process restart: forgets the in-memory state of the LogDB
  // (poison, cached indexes); everything written stays.
  void Restart() { ForgetVolatileState(); }

 private:
  explicit MemoryLogDB(std::unique_ptr<MemoryStore> store);
  MemoryStore* mem_;  // owned by the base class
};

std::unique_ptr<MemoryLogDB> NewMemoryLogDB();

}  // namespace flotilla::logdb
