#include "engine/raft/progress.h"

#include <algorithm>
#include <cstdlib>

namespace flotilla::raft {

std::string_view ProgressStateName(ProgressState s) {
  switch (s) {
    case ProgressState::kProbe:
      return "probe";
    case ProgressState::kReplicate:
      return "replicate";
    case ProgressState::kSnapshot:
      return "snapshot";
  }
  return "unknown";
}

Inflights::Inflights(size_t max_count, uint64_t max_bytes)
    : ring_(std::max<size_t>(max_count, 1)), max_bytes_(max_bytes) {}

void Inflights::Add(Index last_index, uint64_t bytes) {
  if (Full()) std::abort();  // the caller must check IsPaused first
  ring_[(start_ + count_) % ring_.size()] = Slot{last_index, bytes};
  ++count_;
  bytes_ += bytes;
}

void Inflights::FreeUpTo(Index index) {
  while (count_ > 0 && ring_[start_].last_index <= index) FreeFirst();
}

void Inflights::FreeFirst() {
  if (count_ == 0) return;
  bytes_ -= ring_[start_].bytes;
  start_ = (start_ + 1) % ring_.size();
  --count_;
  if (count_ == 0) start_ = 0;
}

bool Inflights::Full() const {
  return count_ == ring_.size() || (max_bytes_ != 0 && bytes_ >= max_bytes_);
}

void Inflights::Reset() {
  start_ = 0;
  count_ = 0;
  bytes_ = 0;
}

void Progress::BecomeProbe() {
  if (state == ProgressState::kSnapshot) {
    // After a snapshot the follower holds at least the snapshot's entries.
    next = std::max(match + 1, pending_snapshot + 1);
    pending_snapshot = 0;
  } else {
    next = match + 1;
  }
  state = ProgressState::kProbe;
  probe_sent = false;
  inflights.Reset();
}

void Progress::BecomeReplicate() {
  state = ProgressState::kReplicate;
  next = match + 1;
  probe_sent = false;
  inflights.Reset();
}

void Progress::BecomeSnapshot(Index snapshot_index) {
  state = ProgressState::kSnapshot;
  pending_snapshot = snapshot_index;
  probe_sent = false;
  inflights.Reset();
}

bool Progress::MaybeUpdate(Index n) {
  bool updated = false;
  if (match < n) {
    match = n;
    updated = true;
    probe_sent = false;
  }
  next = std::max(next, n + 1);
  return updated;
}

bool Progress::MaybeDecreaseTo(Index rejected, Index match_hint) {
  if (state == ProgressState::kReplicate) {
    if (rejected <= match) return false;  // stale: that index was already accepted
    next = match + 1;
    return true;
  }
  if (next == 0 || next - 1 != rejected) return false;  // stale probe response
  next = std::max(std::min(rejected, match_hint + 1), match + 1);
  probe_sent = false;
  return true;
}

bool Progress::ForgetAbove(Index last) {
  if (match <= last) return false;
  match = last;
  if (state == ProgressState::kSnapshot) pending_snapshot = 0;
  state = ProgressState::kReplicate;  // so that BecomeProbe restarts at match + 1
  BecomeProbe();
  inflights.Reset();
  return true;
}

bool Progress::IsPaused() const {
  switch (state) {
    case ProgressState::kProbe:
      return probe_sent;
    case ProgressState::kReplicate:
      return inflights.Full();
    case ProgressState::kSnapshot:
      return true;
  }
  return true;
}

}  // namespace flotilla::raft
