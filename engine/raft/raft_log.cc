#include "engine/raft/raft_log.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace flotilla::raft {
namespace {

[[noreturn]] void Fatal(const char* what, Index a, Index b) {
  std::fprintf(stderr, "raft log invariant broken: %s (%llu, %llu)\n", what,
               static_cast<unsigned long long>(a), static_cast<unsigned long long>(b));
  std::abort();
}

}  // namespace

RaftLog::RaftLog(LogReader* reader) : reader_(reader), unstable_offset_(reader->LastIndex() + 1) {
  const Index first = reader->FirstIndex();
  committed_ = first - 1;
  applied_ = first - 1;
}

Index RaftLog::FirstIndex() const {
  if (unstable_snapshot_) return unstable_snapshot_->index + 1;
  return reader_->FirstIndex();
}

Index RaftLog::LastIndex() const { return unstable_offset_ + unstable_.size() - 1; }

Term RaftLog::LastTerm() const {
  Term t = 0;
  if (TermAt(LastIndex(), &t) != LogStatus::kOk)
    Fatal("no term for the last index", LastIndex(), 0);
  return t;
}

LogStatus RaftLog::TermAt(Index index, Term* term) const {
  if (index > LastIndex()) return LogStatus::kUnavailable;
  if (index >= unstable_offset_) {
    *term = unstable_[index - unstable_offset_].term;
    return LogStatus::kOk;
  }
  if (unstable_snapshot_) {
    if (index == unstable_snapshot_->index) {
      *term = unstable_snapshot_->term;
      return LogStatus::kOk;
    }
    return LogStatus::kCompacted;
  }
  return reader_->TermAt(index, term);
}

bool RaftLog::MatchTerm(Index index, Term term) const {
  Term t = 0;
  return TermAt(index, &t) == LogStatus::kOk && t == term;
}

bool RaftLog::IsUpToDate(Index last_index, Term last_term) const {
  const Term my_term = LastTerm();
  return last_term > my_term || (last_term == my_term && last_index >= LastIndex());
}

std::pair<Index, Term> RaftLog::FindConflictByTerm(Index index, Term term) const {
  index = std::min(index, LastIndex());
  while (true) {
    Term t = 0;
    if (TermAt(index, &t) != LogStatus::kOk) return {index, 0};  // compacted: stop here
    if (t <= term || index == 0) return {index, t};
    --index;
  }
}

std::optional<Index> RaftLog::MaybeAppend(Index prev_index, Term prev_term,
                                          std::vector<Entry>* entries) {
  if (!MatchTerm(prev_index, prev_term)) return std::nullopt;
  const Index last_new = prev_index + entries->size();
  // Skip the entries already present; the first one that differs (or is
  // missing) and everything after it replaces our suffix.
  size_t from = 0;
  for (; from < entries->size(); ++from) {
    const Entry& e = (*entries)[from];
    if (!MatchTerm(e.index, e.term)) break;
  }
  if (from < entries->size()) {
    const Index conflict = (*entries)[from].index;
    if (conflict <= committed_) Fatal("overwriting a committed entry", conflict, committed_);
    TruncateAndAppend(entries, from);
  }
  return last_new;
}

void RaftLog::Append(std::vector<Entry>* entries) {
  if (entries->empty()) return;
  if (entries->front().index != LastIndex() + 1)
    Fatal("leader append gap", entries->front().index, LastIndex());
  TruncateAndAppend(entries, 0);
}

void RaftLog::TruncateAndAppend(std::vector<Entry>* entries, size_t from) {
  const Index first = (*entries)[from].index;
  if (first < unstable_offset_) {
    // Replacing persisted entries: the new suffix starts at `first` and the
    // driver's store replaces everything from there on when it saves it.
    unstable_.clear();
    unstable_offset_ = first;
  } else {
    unstable_.resize(first - unstable_offset_);
  }
  for (size_t i = from; i < entries->size(); ++i) unstable_.push_back(std::move((*entries)[i]));
}

LogStatus RaftLog::Entries(Index lo, Index hi, uint64_t max_bytes, std::vector<Entry>* out) const {
  if (lo < FirstIndex()) return LogStatus::kCompacted;
  if (hi > LastIndex() + 1) return LogStatus::kUnavailable;
  if (lo >= hi) return LogStatus::kOk;
  uint64_t bytes = 0;
  const size_t start_size = out->size();
  if (lo < unstable_offset_) {
    const Index stop = std::min(hi, unstable_offset_);
    const LogStatus s = reader_->Entries(lo, stop, max_bytes, out);
    if (s != LogStatus::kOk) return s;
    for (size_t i = start_size; i < out->size(); ++i) bytes += (*out)[i].SizeBytes();
    if (out->size() - start_size < stop - lo) return LogStatus::kOk;  // budget reached
    lo = stop;
  }
  for (Index i = lo; i < hi; ++i) {
    const Entry& e = unstable_[i - unstable_offset_];
    bytes += e.SizeBytes();
    if (out->size() > start_size && bytes > max_bytes) break;
    out->push_back(e);
  }
  return LogStatus::kOk;
}

void RaftLog::CommitTo(Index index) {
  if (index <= committed_) return;
  if (index > LastIndex()) Fatal("commit beyond the last index", index, LastIndex());
  committed_ = index;
}

bool RaftLog::MaybeCommit(Index index, Term term) {
  if (index <= committed_ || !MatchTerm(index, term)) return false;
  CommitTo(index);
  return true;
}

void RaftLog::Restore(const SnapshotMeta& meta) {
  unstable_snapshot_ = meta;
  unstable_.clear();
  unstable_offset_ = meta.index + 1;
  committed_ = meta.index;
  applied_ = meta.index;
}

void RaftLog::TakeUnstable(std::vector<Entry>* out) {
  unstable_offset_ += unstable_.size();
  for (Entry& e : unstable_) out->push_back(std::move(e));
  unstable_.clear();
}

std::optional<SnapshotMeta> RaftLog::TakeSnapshot() {
  std::optional<SnapshotMeta> s = std::move(unstable_snapshot_);
  unstable_snapshot_.reset();
  return s;
}

LogStatus RaftLog::TakeCommitted(uint64_t max_bytes, std::vector<Entry>* out) {
  if (!HasCommittedToApply()) return LogStatus::kOk;
  const size_t before = out->size();
  const LogStatus s = Entries(applied_ + 1, committed_ + 1, max_bytes, out);
  if (s != LogStatus::kOk) return s;
  applied_ += out->size() - before;
  return LogStatus::kOk;
}

}  // namespace flotilla::raft
