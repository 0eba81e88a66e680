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
// Not thread-safe: the engine serialises every call (in-memory kind).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
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

class SimKv final : public StateMachine {
 public:
  SimKv(uint64_t shard, uint64_t replica, ApplyObserver* observer)
      : shard_(shard), replica_(replica), observer_(observer) {}

  Status Update(std::span<SMEntry> entries) override;
  Result<std::string> Lookup(std::string_view query) override;
  Status SaveSnapshot(SnapshotWriter* w) override;
  Status RecoverFromSnapshot(SnapshotReader* r) override;

 private:
  const uint64_t shard_;
  const uint64_t replica_;
  ApplyObserver* const observer_;
  uint64_t last_index_ = 0;  // the last entry applied (or restored)
  std::map<std::string, std::string> kv_;
};

}  // namespace flotilla::sim
