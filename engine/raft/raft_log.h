// RaftLog: the core's log, combining the persisted log (read through a
// LogReader) with entries and a snapshot not yet handed out for persistence.
//
// Contract with the driver: TakeUnstable/TakeSnapshot move what must be
// persisted into the Update; the driver persists it and makes it readable
// through the LogReader before calling Advance, and calls nothing on the core
// in between. Hence "persisted" below means "handed out for persistence".
//
// Not thread-safe; owned by the core.
#pragma once

#include <optional>
#include <utility>
#include <vector>

#include "engine/raft/log_reader.h"
#include "engine/raft/types.h"

namespace flotilla::raft {

class RaftLog {
 public:
  explicit RaftLog(LogReader* reader);

  Index FirstIndex() const;
  Index LastIndex() const;
  Term LastTerm() const;
  // Term of `index`; kCompacted below the first index (except the snapshot
  // index itself), kUnavailable above the last.
  LogStatus TermAt(Index index, Term* term) const;
  // True when entry `index` exists with `term` (index 0 term 0 always does).
  bool MatchTerm(Index index, Term term) const;
  // True when a log ending at (last_index, last_term) is at least as
  // up-to-date as this one (Raft §5.4.1).
  bool IsUpToDate(Index last_index, Term last_term) const;
  // The largest index <= `index` whose term is <= `term`, and its term; used
  // to skip a whole term of entries on a rejected append.
  std::pair<Index, Term> FindConflictByTerm(Index index, Term term) const;

  // Follower: appends `entries` after (prev_index, prev_term). Returns the
  // index of the last new entry, or nullopt when prev does not match. Aborts
  // when an entry at or below the commit index would be overwritten.
  std::optional<Index> MaybeAppend(Index prev_index, Term prev_term, std::vector<Entry>* entries);
  // Leader: appends entries whose term and index are already set.
  void Append(std::vector<Entry>* entries);
  LogStatus Entries(Index lo, Index hi, uint64_t max_bytes, std::vector<Entry>* out) const;

  Index committed() const { return committed_; }
  Index applied() const { return applied_; }
  // REQUIRES: index <= LastIndex(); never moves backwards.
  void CommitTo(Index index);
  // Advances the commit index to `index` if entry `index` is of `term`.
  bool MaybeCommit(Index index, Term term);

  // Replaces the whole log by a snapshot received from the leader.
  void Restore(const SnapshotMeta& meta);

  bool HasUnstable() const { return !unstable_.empty(); }
  bool HasUnstableSnapshot() const { return unstable_snapshot_.has_value(); }
  void TakeUnstable(std::vector<Entry>* out);
  std::optional<SnapshotMeta> TakeSnapshot();
  // The last index handed out for persistence.
  Index PersistedLast() const { return unstable_offset_ - 1; }
  const std::vector<Entry>& unstable() const { return unstable_; }

  bool HasCommittedToApply() const { return applied_ < committed_ && !unstable_snapshot_; }
  // Copies committed entries after applied() up to `max_bytes` (at least one)
  // into `out` and advances applied(). Returns kCorruption on a bad read.
  LogStatus TakeCommitted(uint64_t max_bytes, std::vector<Entry>* out);
  // Sets the applied index on start (e.g. an on-disk state machine's).
  void SetApplied(Index index) { applied_ = index; }

  LogReader* reader() const { return reader_; }

 private:
  void TruncateAndAppend(std::vector<Entry>* entries, size_t from);

  LogReader* reader_;
  std::optional<SnapshotMeta> unstable_snapshot_;
  std::vector<Entry> unstable_;
  Index unstable_offset_;  // index of unstable_[0]
  Index committed_ = 0;
  Index applied_ = 0;
};

}  // namespace flotilla::raft
