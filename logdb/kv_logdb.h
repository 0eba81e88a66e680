// KvLogDB: the LogDB contract implemented once over an ordered KvStore.
//
// Holds, besides the store, the index of the last stored entry of each replica
// it has seen (so a Save knows, without a read, when new entries cut off a
// longer stored suffix that must be range-deleted), a pool of encoding buffers
// reused by every Save (no per-entry heap allocation on the hot path beyond
// the store's own), and the poison status of the first failed write.
//
// Thread-safety: thread-safe (see LogDB for the per-replica rule). mu_ guards
// only the small shared maps; no lock is held across store I/O.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "logdb/kv_store.h"
#include "logdb/logdb.h"

namespace flotilla::logdb {

class KvLogDB : public LogDB {
 public:
  // `sync`: make durable writes (Save, SaveSnapshot, SaveBootstrap,
  // RemoveReplica) fsync before returning. Off only for benchmarks and tests.
  KvLogDB(std::unique_ptr<KvStore> store, bool sync, const char* name);
  ~KvLogDB() override;

  Status Save(const std::vector<ReplicaUpdate>& updates) override;
  Status SaveIsolated(const std::vector<ReplicaUpdate>& updates,
                      std::vector<DamagedUpdate>* damaged) override;
  Status SaveSnapshot(raft::ShardId shard, raft::ReplicaId replica,
                      const raft::SnapshotMeta& meta) override;
  Status SaveBootstrap(raft::ShardId shard, raft::ReplicaId replica,
                       const Bootstrap& bootstrap) override;
  Status Entries(raft::ShardId shard, raft::ReplicaId replica, raft::Index lo, raft::Index hi,
                 uint64_t max_bytes, std::vector<raft::Entry>* out) override;
  Result<raft::Term> Term(raft::ShardId shard, raft::ReplicaId replica, raft::Index index) override;
  Result<ReplicaState> ReadState(raft::ShardId shard, raft::ReplicaId replica) override;
  Result<ReplicaState> ReadStateForRepair(raft::ShardId shard, raft::ReplicaId replica,
                                          Status* hard_state_damage) override;
  Status SaveRepair(raft::ShardId shard, raft::ReplicaId replica,
                    const std::optional<RepairRecord>& repair) override;
  Status ResetForRebuild(raft::ShardId shard, raft::ReplicaId replica, const Bootstrap& bootstrap,
                         const raft::HardState& hs, const RepairRecord& repair) override;
  Result<std::vector<ReplicaKey>> ListReplicas() override;
  Status CompactTo(raft::ShardId shard, raft::ReplicaId replica, raft::Index index) override;
  Status RemoveReplica(raft::ShardId shard, raft::ReplicaId replica) override;
  const char* Name() const override { return name_; }
  LatencyHistogram SyncLatency() const override { return store_->SyncLatency(); }
  bool Overloaded() const override { return store_->Overloaded(); }
  Status Resume() override;
  StoreDamage DamageOf(const Status& corruption) override;

  // Reads every record of the store in key order and verifies it (each
  // entry of each batch, the batches of a replica contiguous): `problem` is
  // called with a Corruption naming each failure, and reading goes on.
  // Counts records and entries read. Returns a store error only (never the
  // problems found). Defined in logdb/verify.cc; for the offline inspector.
  struct VerifyCounts {
    uint64_t records = 0;
    uint64_t entries = 0;
    uint64_t problems = 0;
  };
  Status VerifyAll(const std::function<void(const Status&)>& problem, VerifyCounts* counts);

  // The store underneath, for tests that damage stored bytes on purpose.
  KvStore* store_for_testing() { return store_.get(); }
  // Where the record of entry `index` lies: the key of its batch and the
  // byte range inside the batch's value. NotFound when it is not stored.
  Status LocateEntryForTesting(raft::ShardId shard, raft::ReplicaId replica, raft::Index index,
                               std::string* key, size_t* offset, size_t* size);

 protected:
  // Forgets everything held in memory (cached indexes, poison), as a process
  // restart would; what the store holds stays.
  void ForgetVolatileState();

 private:
  struct Scratch;
  struct KeyHash {
    size_t operator()(const ReplicaKey& k) const {
      return std::hash<uint64_t>()(k.shard_id * 0x9e3779b97f4a7c15ULL ^ k.replica_id);
    }
  };
  // Sentinel in Scratch::lasts for a replica whose last index is not cached.
  static constexpr raft::Index kUnknown = UINT64_MAX;

  std::unique_ptr<Scratch> AcquireScratch(Status* poisoned);
  void ReleaseScratch(std::unique_ptr<Scratch> s);
  // Writes `batch` unless poisoned; poisons on failure.
  Status Commit(KvStore::Batch* batch, bool durable);
  // Builds a batch with `fill` in pooled buffers and commits it.
  Status WriteWith(bool durable, const std::function<void(Scratch*)>& fill);
  // Deletes every record of a replica, then lets `then` add to the same write.
  Status RemoveRecords(raft::ShardId shard, raft::ReplicaId replica,
                       const std::function<void(Scratch*)>& then);
  // Save; with `damaged` non-null, an update whose stored records fail
  // their checksum is left out and listed there (SaveIsolated).
  Status SaveImpl(const std::vector<ReplicaUpdate>& updates, std::vector<DamagedUpdate>* damaged);
  // Reads what an update needs (so that a damaged record leaves the batch
  // untouched), then adds its records to the batch.
  Status EncodeUpdate(const ReplicaUpdate& u, raft::Index* last, Scratch* s);
  // First and last stored entry index (0, 0 when none), read from the store.
  Status EntryBounds(ReplicaKey r, raft::Index* first, raft::Index* last);
  // Appends to `out` the entries in [from, to] of the last batch that starts
  // below index `below` (none when there is no such batch).
  Status ReadBatchRange(ReplicaKey r, raft::Index from, raft::Index to, raft::Index below,
                        std::vector<raft::Entry>* out);
  // Entries stopped short at `missing`: tell compacted, absent and holes apart.
  Status ExplainMissing(ReplicaKey r, raft::Index missing);
  Status ReadCompaction(ReplicaKey r, raft::Index* index, raft::Term* term);
  Status ReadSnapshot(ReplicaKey r, raft::SnapshotMeta* meta);
  bool ReadsCleanly(ReplicaKey r);

  const std::unique_ptr<KvStore> store_;
  const bool sync_;
  const char* const name_;

  std::mutex mu_;
  Status poisoned_;                                                  // guarded by mu_
  std::unordered_map<ReplicaKey, raft::Index, KeyHash> last_entry_;  // guarded by mu_; 0 = none
  std::vector<std::unique_ptr<Scratch>> free_scratch_;               // guarded by mu_
};

}  // namespace flotilla::logdb
