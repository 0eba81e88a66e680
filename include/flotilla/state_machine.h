// The state-machine interfaces a user implements for each shard.
//
// Flotilla calls a state machine of one replica from one apply thread at a
// time for Update/Save/Recover; Lookup may be called from other threads as
// described per kind. Entries arrive in log order, exactly once per replica
// lifetime (after a restart they are replayed from the last snapshot, or,
// for an on-disk state machine, from the index its Open returned).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "flotilla/status.h"

namespace flotilla {

// One committed entry handed to Update. The state machine sets `result`
// (and optionally `data`); they complete the proposal's request.
struct SMEntry {
  uint64_t index = 0;
  std::string_view cmd;
  uint64_t result = 0;
  std::string data;
  // On-disk kind only: the entry carries no command (a leader's no-op, a
  // membership change or session bookkeeping that ended the batch). The
  // state machine records `index` as applied, exactly as for a command, and
  // changes nothing else; `result` and `data` are ignored. It keeps the
  // index that Open returns equal to the replica's applied index, so that a
  // snapshot is never ahead of the state machine (issue 21).
  bool noop = false;
};

// Where a snapshot is written to and read from. Implementations are the
// engine's; they stream to the snapshot file.
class SnapshotWriter {
 public:
  virtual ~SnapshotWriter() = default;
  [[nodiscard]] virtual Status Write(std::string_view bytes) = 0;
};
class SnapshotReader {
 public:
  virtual ~SnapshotReader() = default;
  // Reads up to `max` bytes into `out` (replacing it); empty at the end.
  [[nodiscard]] virtual Status Read(size_t max, std::string* out) = 0;
};

// In-memory kind: Flotilla serialises every call (Update, Lookup, Save,
// Recover) with a lock, so the implementation needs no synchronisation.
class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // Applies `entries` in order. A returned error stops the replica: the
  // state machine must be deterministic, so an error is a bug or a disk fault.
  [[nodiscard]] virtual Status Update(std::span<SMEntry> entries) = 0;
  // Answers a read. Called after a ReadIndex confirmed the applied state
  // covers every write acknowledged before the read started.
  [[nodiscard]] virtual Result<std::string> Lookup(std::string_view query) = 0;
  [[nodiscard]] virtual Status SaveSnapshot(SnapshotWriter* w) = 0;
  [[nodiscard]] virtual Status RecoverFromSnapshot(SnapshotReader* r) = 0;
};

// Concurrent kind: Update calls are serialised, but Lookup may run at the
// same time as Update (the implementation synchronises its own data), and a
// snapshot is saved beside updates: PrepareSnapshot runs with updates held
// off and captures what SaveSnapshot then writes while updates continue.
class ConcurrentStateMachine {
 public:
  virtual ~ConcurrentStateMachine() = default;
  [[nodiscard]] virtual Status Update(std::span<SMEntry> entries) = 0;
  [[nodiscard]] virtual Result<std::string> Lookup(std::string_view query) = 0;
  [[nodiscard]] virtual Result<std::shared_ptr<void>> PrepareSnapshot() = 0;
  [[nodiscard]] virtual Status SaveSnapshot(std::shared_ptr<void> prepared, SnapshotWriter* w) = 0;
  [[nodiscard]] virtual Status RecoverFromSnapshot(SnapshotReader* r) = 0;
};

// On-disk kind: like the concurrent kind, and the state machine persists its
// own state. Open returns the index of the last entry it applied durably
// (commands and `noop` entries alike: the last entry of every Update carries
// the replica's applied index); entries up to it are not applied again after
// a restart. Sync makes every applied entry durable (called before the log
// before a snapshot is compacted away). A snapshot it saves must carry that
// index, and RecoverFromSnapshot must restore it: after a recovery, Open
// reports the index of the snapshot's last entry.
class OnDiskStateMachine : public ConcurrentStateMachine {
 public:
  [[nodiscard]] virtual Result<uint64_t> Open() = 0;
  [[nodiscard]] virtual Status Sync() = 0;
};

// Create the state machine of a replica of `shard_id`, one per kind.
using StateMachineFactory =
    std::function<std::unique_ptr<StateMachine>(uint64_t shard_id, uint64_t replica_id)>;
using ConcurrentStateMachineFactory =
    std::function<std::unique_ptr<ConcurrentStateMachine>(uint64_t shard_id, uint64_t replica_id)>;
using OnDiskStateMachineFactory =
    std::function<std::unique_ptr<OnDiskStateMachine>(uint64_t shard_id, uint64_t replica_id)>;

}  // namespace flotilla
