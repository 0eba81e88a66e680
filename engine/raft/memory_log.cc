#include <cstdlib>

#include "engine/raft/log_reader.h"

namespace flotilla::raft {

Index MemoryLog::FirstIndex() const { return offset_ + 1; }

Index MemoryLog::LastIndex() const { return offset_ + entries_.size(); }

LogStatus MemoryLog::TermAt(Index index, Term* term) const {
  if (index == offset_) {
    *term = offset_term_;
    return LogStatus::kOk;
  }
  if (index < offset_) return LogStatus::kCompacted;
  if (index > LastIndex()) return LogStatus::kUnavailable;
  *term = entries_[index - offset_ - 1].term;
  return LogStatus::kOk;
}

LogStatus MemoryLog::Entries(Index lo, Index hi, uint64_t max_bytes,
                             std::vector<Entry>* out) const {
  if (lo <= offset_) return LogStatus::kCompacted;
  if (hi > LastIndex() + 1) return LogStatus::kUnavailable;
  uint64_t bytes = 0;
  for (Index i = lo; i < hi; ++i) {
    const Entry& e = entries_[i - offset_ - 1];
    bytes += e.SizeBytes();
    if (i > lo && bytes > max_bytes) break;
    out->push_back(e);
  }
  return LogStatus::kOk;
}

void MemoryLog::Append(const std::vector<Entry>& entries) {
  if (entries.empty()) return;
  const Index first = entries.front().index;
  if (first <= offset_) std::abort();         // below the snapshot: a driver bug
  if (first > LastIndex() + 1) std::abort();  // a gap: a driver bug
  entries_.resize(first - offset_ - 1);
  entries_.insert(entries_.end(), entries.begin(), entries.end());
}

void MemoryLog::ApplySnapshot(const SnapshotMeta& meta) {
  snapshot_ = meta;
  offset_ = meta.index;
  offset_term_ = meta.term;
  entries_.clear();
}

void MemoryLog::SetSnapshot(const SnapshotMeta& meta) {
  if (meta.index > LastIndex() || meta.index < snapshot_.index) std::abort();
  snapshot_ = meta;
}

void MemoryLog::Compact(Index index) {
  if (index <= offset_) return;
  if (index > LastIndex()) std::abort();
  offset_term_ = entries_[index - offset_ - 1].term;
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(index - offset_));
  offset_ = index;
}

void MemoryLog::TruncateAfter(Index index) {
  if (index < offset_) std::abort();
  if (index >= LastIndex()) return;
  entries_.resize(index - offset_);
}

}  // namespace flotilla::raft
