#include "engine/log_cache.h"

#include <cstdlib>

namespace flotilla::engine {

LogCache::LogCache(logdb::LogDB* db, raft::ShardId shard, raft::ReplicaId replica,
                   const logdb::ReplicaState& state, uint64_t max_cache_bytes)
    : db_(db),
      shard_(shard),
      replica_(replica),
      max_cache_bytes_(max_cache_bytes),
      first_index_(state.first_index),
      last_index_(state.last_index),
      prev_term_(state.prev_term),
      snapshot_(state.snapshot),
      cache_first_(state.last_index + 1) {}

raft::LogStatus LogCache::TermAt(raft::Index index, raft::Term* term) const {
  if (index == first_index_ - 1) {
    *term = prev_term_;
    return raft::LogStatus::kOk;
  }
  if (index < first_index_) return raft::LogStatus::kCompacted;
  if (index > last_index_) return raft::LogStatus::kUnavailable;
  if (index >= cache_first_) {
    *term = cache_[index - cache_first_].term;
    return raft::LogStatus::kOk;
  }
  Result<raft::Term> t = db_->Term(shard_, replica_, index);
  if (!t.ok()) {
    if (t.status().code() == StatusCode::kNotFound) return raft::LogStatus::kCompacted;
    last_error_ = t.status();
    return raft::LogStatus::kCorruption;
  }
  *term = *t;
  return raft::LogStatus::kOk;
}

raft::LogStatus LogCache::Entries(raft::Index lo, raft::Index hi, uint64_t max_bytes,
                                  std::vector<raft::Entry>* out) const {
  if (lo < first_index_) return raft::LogStatus::kCompacted;
  if (hi > last_index_ + 1) return raft::LogStatus::kUnavailable;
  const size_t before = out->size();
  uint64_t bytes = 0;
  if (lo < cache_first_) {
    const raft::Index stop = std::min(hi, cache_first_);
    Status s = db_->Entries(shard_, replica_, lo, stop, max_bytes, out);
    if (!s.ok()) {
      if (s.code() == StatusCode::kNotFound) return raft::LogStatus::kCompacted;
      last_error_ = s;
      return raft::LogStatus::kCorruption;
    }
    for (size_t i = before; i < out->size(); ++i) bytes += (*out)[i].SizeBytes();
    if (out->size() - before < stop - lo) return raft::LogStatus::kOk;
    lo = stop;
  }
  for (raft::Index i = lo; i < hi; ++i) {
    const raft::Entry& e = cache_[i - cache_first_];
    bytes += e.SizeBytes();
    if (out->size() > before && bytes > max_bytes) break;
    out->push_back(e);
  }
  return raft::LogStatus::kOk;
}

void LogCache::Append(std::vector<raft::Entry>&& entries) {
  if (entries.empty()) return;
  const raft::Index first = entries.front().index;
  if (first < first_index_ || first > last_index_ + 1) std::abort();  // a driver bug
  // Drop the replaced suffix from the cache (and everything, when the new
  // entries start below the cached range).
  if (first < cache_first_) {
    cache_.clear();
    cache_bytes_ = 0;
    cache_first_ = first;
  } else {
    while (last_index_ >= first && !cache_.empty()) {
      cache_bytes_ -= cache_.back().SizeBytes();
      cache_.pop_back();
      --last_index_;
    }
  }
  for (raft::Entry& e : entries) {
    cache_bytes_ += e.SizeBytes();
    cache_.push_back(std::move(e));
  }
  last_index_ = cache_first_ + cache_.size() - 1;
  Trim();
}

void LogCache::ApplySnapshot(const raft::SnapshotMeta& meta) {
  snapshot_ = meta;
  first_index_ = meta.index + 1;
  last_index_ = meta.index;
  prev_term_ = meta.term;
  cache_.clear();
  cache_bytes_ = 0;
  cache_first_ = meta.index + 1;
}

void LogCache::SetSnapshot(const raft::SnapshotMeta& meta, raft::Index compact_to) {
  snapshot_ = meta;
  if (compact_to < first_index_ || compact_to > last_index_) return;
  raft::Term t = 0;
  if (TermAt(compact_to, &t) != raft::LogStatus::kOk) return;
  prev_term_ = t;
  first_index_ = compact_to + 1;
  while (!cache_.empty() && cache_first_ < first_index_) {
    cache_bytes_ -= cache_.front().SizeBytes();
    cache_.pop_front();
    ++cache_first_;
  }
  if (cache_first_ < first_index_) cache_first_ = first_index_;
}

void LogCache::Release(raft::Index keep_from) {
  while (cache_first_ < keep_from && cache_.size() > 1) {
    cache_bytes_ -= cache_.front().SizeBytes();
    cache_.pop_front();
    ++cache_first_;
  }
}

void LogCache::Trim() {
  // Keep at least one entry cached so the last term is always at hand.
  while (cache_bytes_ > max_cache_bytes_ && cache_.size() > 1) {
    cache_bytes_ -= cache_.front().SizeBytes();
    cache_.pop_front();
    ++cache_first_;
  }
}

}  // namespace flotilla::engine
