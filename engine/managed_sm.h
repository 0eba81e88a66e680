// ManagedStateMachine: one face for the three state-machine kinds, with the
// locking each kind promises its implementation.
//
// Thread-safe: Update, snapshots and Recover come from the replica's apply
// worker; Lookup from any thread.
#pragma once

#include <memory>
#include <mutex>

#include "flotilla/state_machine.h"

namespace flotilla::engine {

class ManagedStateMachine {
 public:
  virtual ~ManagedStateMachine() = default;
  // On-disk kind: the index it applied durably; 0 for the others.
  virtual Result<uint64_t> Open() { return uint64_t{0}; }
  virtual Status Update(std::span<SMEntry> entries) = 0;
  virtual Result<std::string> Lookup(std::string_view query) = 0;
  // Writes a snapshot of the state after the last Update.
  virtual Status SaveSnapshot(SnapshotWriter* w) = 0;
  virtual Status Recover(SnapshotReader* r) = 0;
  // On-disk kind: make every applied entry durable.
  virtual Status Sync() { return Status::Ok(); }
  // On-disk kind: snapshots stream from the state machine itself.
  virtual bool on_disk() const { return false; }
  // Concurrent and on-disk kinds: Prepare/SavePrepared are available.
  virtual bool concurrent() const { return false; }
  // Concurrent and on-disk kinds: captures the state after the last Update
  // (updates held off meanwhile); SavePrepared then writes it while updates
  // go on, from any thread.
  virtual Result<std::shared_ptr<void>> Prepare() {
    return Status::Internal("this state-machine kind has no prepared snapshots");
  }
  virtual Status SavePrepared(std::shared_ptr<void> prepared, SnapshotWriter* w) {
    (void)prepared;
    (void)w;
    return Status::Internal("this state-machine kind has no prepared snapshots");
  }
};

std::unique_ptr<ManagedStateMachine> Manage(std::unique_ptr<StateMachine> sm);
std::unique_ptr<ManagedStateMachine> Manage(std::unique_ptr<ConcurrentStateMachine> sm);
std::unique_ptr<ManagedStateMachine> Manage(std::unique_ptr<OnDiskStateMachine> sm);

}  // namespace flotilla::engine
