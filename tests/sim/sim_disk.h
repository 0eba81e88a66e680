// SimDisk: the LogDB a simulated NodeHost owns. It forwards to a MemoryLogDB
// that the simulator owns, so the stored data outlives a crash of the
// NodeHost, and it can crash the NodeHost inside its next write.
//
// A crash inside a write comes in two kinds, both legal for a real disk and
// RocksDB's WAL (a torn tail record is dropped on recovery):
//  - kBeforeWrite: the write never reaches the store;
//  - kTornWrite: the write reaches the store and is then torn: the
//    MemoryLogDB's DropLastWrite reverts it, as recovery would;
//  - kAfterWrite: the write reaches the store whole and the process dies
//    before the call returns (nothing that waited for it happens).
// Either way the write call fails, so the engine never acts on it, and the
// simulator destroys the NodeHost at the end of the pass (`crashed()`).
//
// Not thread-safe: the simulator is single-threaded.
#pragma once

#include "logdb/memory_logdb.h"

namespace flotilla::sim {

enum class CrashInWrite { kNone, kBeforeWrite, kTornWrite, kAfterWrite };

class SimDisk final : public logdb::LogDB {
 public:
  explicit SimDisk(logdb::MemoryLogDB* mem) : mem_(mem) {}

  void ArmCrash(CrashInWrite mode) { armed_ = mode; }
  CrashInWrite armed() const { return armed_; }
  bool crashed() const { return crashed_; }
  bool torn() const { return torn_; }
  // A write failed by itself (a damaged record it had to read, say): the
  // engine stops writing until an operator restarts the NodeHost.
  bool failed() const { return failed_; }
  uint64_t writes() const { return writes_; }

  Status Save(const std::vector<logdb::ReplicaUpdate>& updates) override {
    return Write([&] { return mem_->Save(updates); });
  }
  Status SaveIsolated(const std::vector<logdb::ReplicaUpdate>& updates,
                      std::vector<logdb::DamagedUpdate>* damaged) override {
    return Write([&] { return mem_->SaveIsolated(updates, damaged); });
  }
  Status SaveSnapshot(raft::ShardId shard, raft::ReplicaId replica,
                      const raft::SnapshotMeta& meta) override {
    return Write([&] { return mem_->SaveSnapshot(shard, replica, meta); });
  }
  Status SaveBootstrap(raft::ShardId shard, raft::ReplicaId replica,
                       const logdb::Bootstrap& bootstrap) override {
    return Write([&] { return mem_->SaveBootstrap(shard, replica, bootstrap); });
  }
  Status CompactTo(raft::ShardId shard, raft::ReplicaId replica, raft::Index index) override {
    return Write([&] { return mem_->CompactTo(shard, replica, index); });
  }
  Status RemoveReplica(raft::ShardId shard, raft::ReplicaId replica) override {
    return Write([&] { return mem_->RemoveReplica(shard, replica); });
  }
  Status Entries(raft::ShardId shard, raft::ReplicaId replica, raft::Index lo, raft::Index hi,
                 uint64_t max_bytes, std::vector<raft::Entry>* out) override {
    return mem_->Entries(shard, replica, lo, hi, max_bytes, out);
  }
  Result<raft::Term> Term(raft::ShardId shard, raft::ReplicaId replica,
                          raft::Index index) override {
    return mem_->Term(shard, replica, index);
  }
  Result<logdb::ReplicaState> ReadState(raft::ShardId shard, raft::ReplicaId replica) override {
    return mem_->ReadState(shard, replica);
  }
  Result<logdb::ReplicaState> ReadStateForRepair(raft::ShardId shard, raft::ReplicaId replica,
                                                 Status* hard_state_damage) override {
    return mem_->ReadStateForRepair(shard, replica, hard_state_damage);
  }
  Status SaveRepair(raft::ShardId shard, raft::ReplicaId replica,
                    const std::optional<logdb::RepairRecord>& repair) override {
    return Write([&] { return mem_->SaveRepair(shard, replica, repair); });
  }
  Status ResetForRebuild(raft::ShardId shard, raft::ReplicaId replica,
                         const logdb::Bootstrap& bootstrap, const raft::HardState& hs,
                         const logdb::RepairRecord& repair) override {
    return Write([&] { return mem_->ResetForRebuild(shard, replica, bootstrap, hs, repair); });
  }
  Result<std::vector<logdb::ReplicaKey>> ListReplicas() override { return mem_->ListReplicas(); }
  const char* Name() const override { return "sim"; }

 private:
  template <typename Fn>
  Status Write(Fn fn) {
    if (crashed_) return Status::IOError("simulated crash: the process is gone");
    ++writes_;
    const CrashInWrite mode = armed_;
    armed_ = CrashInWrite::kNone;
    if (mode == CrashInWrite::kNone) {
      Status s = fn();
      if (!s.ok()) failed_ = true;
      return s;
    }
    crashed_ = true;
    if (mode == CrashInWrite::kBeforeWrite)
      return Status::IOError("simulated crash before a write");
    if (mode == CrashInWrite::kAfterWrite) {
      Status s = fn();
      (void)s;  // durable or not, the process is gone before it can act
      return Status::IOError("simulated crash after a write");
    }
    // Only a write that reached the store is torn; a call that wrote nothing
    // must not revert the write before it, which was acknowledged.
    const uint64_t before = mem_->store_writes();
    Status s = fn();
    if (s.ok() && mem_->store_writes() > before) torn_ = mem_->DropLastWrite();
    return Status::IOError("simulated crash: torn write");
  }

  logdb::MemoryLogDB* const mem_;
  CrashInWrite armed_ = CrashInWrite::kNone;
  bool crashed_ = false;
  bool torn_ = false;
  bool failed_ = false;
  uint64_t writes_ = 0;
};

}  // namespace flotilla::sim
