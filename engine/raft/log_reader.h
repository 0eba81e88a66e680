// LogReader: the core's read-only view of the persisted log of one replica.
//
// The driver owns the implementation (an in-memory cache over the LogDB); the
// core only reads through it. After each Update is persisted the driver
// appends the saved entries, applies a saved snapshot, and compacts. The core
// calls these methods only from the thread that owns its replica.
//
// MemoryLog is the in-memory implementation used by tests and the simulator.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/raft/types.h"

namespace flotilla::raft {

enum class LogStatus : uint8_t {
  kOk = 0,
  kCompacted,    // the index is below the first available index
  kUnavailable,  // the index is above the last index
  kCorruption,   // the stored entry failed its checksum: the replica must stop
};

class LogReader {
 public:
  virtual ~LogReader() = default;

  // Index of the first entry held (snapshot index + 1 when compacted).
  virtual Index FirstIndex() const = 0;
  // Index of the last entry held, or the snapshot index when none is held.
  virtual Index LastIndex() const = 0;
  // The term of entry `index`; also answers for the snapshot index itself.
  virtual LogStatus TermAt(Index index, Term* term) const = 0;
  // Appends entries [lo, hi) to `out`, stopping once `max_bytes` is exceeded
  // (at least one entry is returned when lo < hi).
  virtual LogStatus Entries(Index lo, Index hi, uint64_t max_bytes,
                            std::vector<Entry>* out) const = 0;
  // Metadata of the latest snapshot (empty when none).
  virtual SnapshotMeta Snapshot() const = 0;
};

// A LogReader over entries held in memory. Not thread-safe.
class MemoryLog final : public LogReader {
 public:
  MemoryLog() = default;

  Index FirstIndex() const override;
  Index LastIndex() const override;
  LogStatus TermAt(Index index, Term* term) const override;
  LogStatus Entries(Index lo, Index hi, uint64_t max_bytes, std::vector<Entry>* out) const override;
  SnapshotMeta Snapshot() const override { return snapshot_; }

  // Appends persisted entries; entries at or above the first new index are
  // replaced. REQUIRES: entries are contiguous and not below FirstIndex().
  void Append(const std::vector<Entry>& entries);
  // Replaces the whole log with a snapshot.
  void ApplySnapshot(const SnapshotMeta& meta);
  // Records a snapshot taken locally at `meta.index` without dropping entries.
  void SetSnapshot(const SnapshotMeta& meta);
  // Drops entries at or below `index`. REQUIRES: index <= LastIndex().
  void Compact(Index index);
  // Drops everything above `index` (tests of lost unsynced writes).
  void TruncateAfter(Index index);

  const HardState& hard_state() const { return hard_state_; }
  void set_hard_state(const HardState& hs) { hard_state_ = hs; }

 private:
  // Entry at index `i` is entries_[i - offset_ - 1]; offset_ is the index of
  // the entry just before the first held (the snapshot index when compacted).
  Index offset_ = 0;
  Term offset_term_ = 0;
  std::vector<Entry> entries_;
  SnapshotMeta snapshot_;
  HardState hard_state_;
};

}  // namespace flotilla::raft
