// KvStateMachine: the nodehost daemon's key-value store of one replica, an
// on-disk state machine over its own RocksDB database.
//
// Layout (docs/cli.md, "Storage"): user keys are stored as 'd' + key; the
// index of the last applied entry is stored under "m/applied" in the same
// WriteBatch as the data it covers, so Open() returns exactly the index the
// data reflects. Commands and queries are the protobuf messages Command and
// Query of proto/kv.proto.
//
// Thread-safety: Update, PrepareSnapshot, SaveSnapshot and RecoverFromSnapshot
// are called by one apply thread at a time (the engine's contract); Lookup may
// run beside them (RocksDB reads are thread-safe).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "flotilla/state_machine.h"

namespace rocksdb {
class DB;
class Status;
class WriteBatchWithIndex;
}  // namespace rocksdb

namespace flotilla::nodehost {

// SMEntry::result values of an applied command.
enum ApplyResult : uint64_t {
  kApplied = 1,      // put, delete, or a cas that swapped
  kCasMismatch = 2,  // a cas whose expectation did not hold; nothing written
  kMalformed = 3,    // the entry is not a Command; nothing written; the error says why
};

// Bounds of one scan answer.
inline constexpr uint32_t kMaxScanKeys = 1000;
inline constexpr uint64_t kMaxScanBytes = 4 << 20;
// A dump (snapshot export) larger than this is refused: it is one message.
inline constexpr uint64_t kMaxDumpBytes = uint64_t{1} << 30;

// Walks a state stream (a DumpQuery's QueryResult::state, the format of the
// engine snapshots this state machine writes): `applied` gets its index,
// `fn` every key and value in key order. Corruption when it is malformed.
Status ParseKvState(std::string_view state, uint64_t* applied,
                    const std::function<Status(std::string_view, std::string_view)>& fn);

class KvStateMachine final : public OnDiskStateMachine {
 public:
  // `dir`: the RocksDB directory of this replica (created by Open).
  explicit KvStateMachine(std::string dir);
  ~KvStateMachine() override;

  Result<uint64_t> Open() override;
  Status Sync() override;
  // Applies the entries in one WriteBatch together with the applied index.
  // SMEntry::result is an ApplyResult; SMEntry::data a serialized
  // CommandResult (the index, and for delete and cas the previous value).
  Status Update(std::span<SMEntry> entries) override;
  // `query` is a serialized Query; the answer a serialized QueryResult.
  // InvalidArgument for a malformed query. A HashOp command hashes the
  // state as of its entry (FNV-1a 64 of every key and value) and keeps its
  // index and the hash; a HashQuery returns them, a DumpQuery the whole
  // state at one applied index.
  Result<std::string> Lookup(std::string_view query) override;
  Result<std::shared_ptr<void>> PrepareSnapshot() override;
  Status SaveSnapshot(std::shared_ptr<void> prepared, SnapshotWriter* w) override;
  Status RecoverFromSnapshot(SnapshotReader* r) override;

  uint64_t applied_index() const { return applied_; }

 private:
  Status ApplyHash(rocksdb::WriteBatchWithIndex* batch, SMEntry* e);
  Result<std::string> Dump();
  Result<std::string> LastHash();
  // Records a failed write in failed_ and returns it.
  Status Written(const rocksdb::Status& s, std::string_view what);

  std::string dir_;
  std::unique_ptr<rocksdb::DB> db_;
  uint64_t applied_ = 0;  // touched by the apply thread only
  // After a failed write (a full disk) every write, sync and recovery
  // returns this without touching RocksDB again: RocksDB asserts on a write
  // to a log file that has seen an error. Apply thread only.
  Status failed_;
};

}  // namespace flotilla::nodehost
