// ReadIndexQueue: ReadIndex requests on the leader, batched into rounds.
//
// A round is one heartbeat broadcast carrying the round number; once a quorum
// answers a round, leadership was confirmed after every request of that round
// (and of all earlier rounds) arrived, so they may be served at the commit
// index recorded when each arrived. Requests that arrive while a round is in
// flight wait and go together in the next one: one heartbeat round serves any
// number of reads.
//
// Not thread-safe; owned by the core.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "engine/raft/types.h"

namespace flotilla::raft {

class ReadIndexQueue {
 public:
  struct Request {
    uint64_t ctx = 0;
    ReplicaId from = kNoReplica;  // the replica that asked (self for local reads)
    Index index = 0;
    uint64_t round = 0;  // 0 while waiting for a round
  };

  void Add(uint64_t ctx, ReplicaId from, Index index);
  bool HasWaiting() const { return waiting_ > 0; }
  bool RoundInFlight() const { return confirmed_round_ < last_round_; }
  size_t size() const { return requests_.size(); }
  uint64_t last_round() const { return last_round_; }

  // Puts every waiting request into a new round and returns its number.
  uint64_t StartRound();
  // Moves the requests of rounds <= `round` to `ready`.
  void Confirm(uint64_t round, std::vector<Request>* ready);
  // Moves every request to `dropped` (leadership lost).
  void Reset(std::vector<Request>* dropped);

 private:
  std::deque<Request> requests_;  // in round order; waiting ones at the back
  size_t waiting_ = 0;
  uint64_t last_round_ = 0;  // monotonic for the lifetime of the replica
  uint64_t confirmed_round_ = 0;
};

}  // namespace flotilla::raft
