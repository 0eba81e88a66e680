// Session: a client's exactly-once channel to one shard.
//
// A proposal made through a session carries (client_id, series_id). If it is
// retried — after a timeout, say — with the same series id, the shard applies
// it at most once and answers the retry with the first result. After a
// proposal completes, call ProposalCompleted() before the next one.
//
// Not thread-safe: one session is used by one client at a time.
#pragma once

#include <cstdint>

namespace flotilla {

class Session {
 public:
  Session() = default;
  Session(uint64_t shard_id, uint64_t client_id)
      : shard_id_(shard_id), client_id_(client_id), series_id_(kFirstSeries) {}

  // A session whose state a client kept elsewhere (the nodehost client sends
  // it with each write): the same identity and counters as the original.
  Session(uint64_t shard_id, uint64_t client_id, uint64_t series_id, uint64_t responded_to)
      : shard_id_(shard_id),
        client_id_(client_id),
        series_id_(series_id),
        responded_to_(responded_to) {}

  uint64_t shard_id() const { return shard_id_; }
  uint64_t client_id() const { return client_id_; }
  uint64_t series_id() const { return series_id_; }
  uint64_t responded_to() const { return responded_to_; }
  bool valid() const { return client_id_ != 0; }

  // The current proposal completed: the next one gets a new series id, and
  // the shard may forget results up to this one.
  void ProposalCompleted() {
    responded_to_ = series_id_;
    ++series_id_;
  }

  // Series ids reserved for registering and closing a session.
  static constexpr uint64_t kRegisterSeries = UINT64_MAX - 1;
  static constexpr uint64_t kUnregisterSeries = UINT64_MAX;
  static constexpr uint64_t kFirstSeries = 1;

 private:
  uint64_t shard_id_ = 0;
  uint64_t client_id_ = 0;
  uint64_t series_id_ = 0;
  uint64_t responded_to_ = 0;
};

}  // namespace flotilla
