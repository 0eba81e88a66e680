// The simulator's key-value state machine: put, compare-and-set and get, with
// results that the linearizability checker can use, and a hook that reports
// every applied entry so that the simulator can compare replicas entry by
// entry.
//
// Commands (space separated; keys and values never contain spaces):
//   "P <key> <value>[ s]"            put; result = index << 1 | 1
//   "C <key> <expected|-> <value>[ s]" CAS; result = index << 1 | swapped
// A trailing " s" marks a proposal made through a session (only the checker
// cares). Lookups: "<key>" answers "=<value>" or "-" when absent; kStateQuery
// answers a fingerprint of the whole state.
//
// Three kinds (SimKv, SimConcurrentKv, SimDiskKv) share one KvCore.
// Not thread-safe: the simulation runs the engine on one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "flotilla/state_machine.h"

namespace flotilla::sim {

// Told about every entry a replica's state machine applies, in order.
class ApplyObserver {
 public:
  virtual ~ApplyObserver() = default;
  virtual void OnApply(uint64_t shard, uint64_t replica, uint64_t index, std::string_view cmd) = 0;
  // A replica's state machine went from `from` to `to` (a restore moves it
  // to the snapshot's index; anything else must only move forward).
  virtual void OnOrderViolation(uint64_t shard, uint64_t replica, uint64_t from, uint64_t to) = 0;
};

inline constexpr std::string_view kStateQuery = "\x01state";

uint64_t Fnv(std::string_view s, uint64_t h = 1469598103934665603ULL);

struct KvCommand {
  char op = 'P';  // 'P' put, 'C' cas
  std::string key;
  std::optional<std::string> expected;  // CAS only; nullopt = absent
  std::string value;
  bool session = false;

  std::string Encode() const;
  static bool Decode(std::string_view cmd, KvCommand* out);
};

// The data and apply logic shared by the three kinds: a map and the index
// of the last entry applied (or restored).
class KvCore {
 public:
  KvCore(uint64_t shard, uint64_t replica, ApplyObserver* observer)
      : shard_(shard), replica_(replica), observer_(observer) {}

  void Update(std::span<SMEntry> entries);
  Result<std::string> Lookup(std::string_view query) const;
  std::string Serialize() const;
  Status Deserialize(std::string_view all);
  Status Recover(SnapshotReader* r);
  std::shared_ptr<void> Prepare() const;  // a copy of the state, for WritePrepared
  static Status WritePrepared(const std::shared_ptr<void>& prepared, SnapshotWriter* w);
  uint64_t last_index() const { return last_index_; }
  bool empty() const { return kv_.empty(); }

 private:
  const uint64_t shard_;
  const uint64_t replica_;
  ApplyObserver* const observer_;
  uint64_t last_index_ = 0;
  std::map<std::string, std::string> kv_;
};

// A lookup that answers how many keys the state machine holds ("0" for a
// witness, which must never receive data).
inline constexpr std::string_view kSizeQuery = "\x01size";

// In-memory kind.
class SimKv final : public StateMachine {
 public:
  SimKv(uint64_t shard, uint64_t replica, ApplyObserver* observer)
      : core_(shard, replica, observer) {}

  Status Update(std::span<SMEntry> entries) override;
  Result<std::string> Lookup(std::string_view query) override { return core_.Lookup(query); }
  Status SaveSnapshot(SnapshotWriter* w) override { return w->Write(core_.Serialize()); }
  Status RecoverFromSnapshot(SnapshotReader* r) override { return core_.Recover(r); }

 private:
  KvCore core_;
};

// Concurrent kind: a snapshot is a copy of the state taken by
// PrepareSnapshot and written later.
class SimConcurrentKv final : public ConcurrentStateMachine {
 public:
  SimConcurrentKv(uint64_t shard, uint64_t replica, ApplyObserver* observer)
      : core_(shard, replica, observer) {}

  Status Update(std::span<SMEntry> entries) override;
  Result<std::string> Lookup(std::string_view query) override { return core_.Lookup(query); }
  Result<std::shared_ptr<void>> PrepareSnapshot() override { return core_.Prepare(); }
  Status SaveSnapshot(std::shared_ptr<void> prepared, SnapshotWriter* w) override {
    return KvCore::WritePrepared(prepared, w);
  }
  Status RecoverFromSnapshot(SnapshotReader* r) override { return core_.Recover(r); }

 private:
  KvCore core_;
};

// What an on-disk state machine keeps on its disk: owned by the simulator,
// so that it outlives a crash of the NodeHost. Only what was committed
// (synced) survives a crash: `durable` is the serialized state at the last
// commit.
struct DiskKvStore {
  std::string durable;  // KvCore::Serialize() at the last commit; empty: nothing yet
  uint64_t commits = 0;
};

// On-disk kind: applies to its working state and commits it to its
// DiskKvStore now and then (when `commit_now` says so, at every Sync, and
// after a restore), as a state machine with its own write-ahead log would;
// Open reloads the last commit and returns its index, which may be ahead of
// the commit index the LogDB holds.
class SimDiskKv final : public OnDiskStateMachine {
 public:
  SimDiskKv(uint64_t shard, uint64_t replica, ApplyObserver* observer, DiskKvStore* store,
            std::function<bool()> commit_now)
      : core_(shard, replica, observer), store_(store), commit_now_(std::move(commit_now)) {}

  Result<uint64_t> Open() override;
  Status Sync() override;
  Status Update(std::span<SMEntry> entries) override;
  Result<std::string> Lookup(std::string_view query) override { return core_.Lookup(query); }
  Result<std::shared_ptr<void>> PrepareSnapshot() override { return core_.Prepare(); }
  Status SaveSnapshot(std::shared_ptr<void> prepared, SnapshotWriter* w) override {
    return KvCore::WritePrepared(prepared, w);
  }
  Status RecoverFromSnapshot(SnapshotReader* r) override;

 private:
  KvCore core_;
  DiskKvStore* const store_;
  std::function<bool()> commit_now_;
};

}  // namespace flotilla::sim
