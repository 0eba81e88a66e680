// ProgressTracker: the membership in force, the progress of every replica in
// it, and the votes of the current election. Answers quorum questions (commit
// index, election result, quorum activity, read-round confirmation) for
// majority and joint configurations alike.
//
// Not thread-safe; owned by the core.
#pragma once

#include <map>
#include <vector>

#include "engine/raft/progress.h"
#include "engine/raft/quorum.h"
#include "engine/raft/types.h"

namespace flotilla::raft {

class ProgressTracker {
 public:
  ProgressTracker(size_t max_inflight_msgs, uint64_t max_inflight_bytes)
      : max_inflight_msgs_(max_inflight_msgs), max_inflight_bytes_(max_inflight_bytes) {}

  const Membership& membership() const { return membership_; }
  // Installs `m`; replicas new to it start probing at `next_index`, replicas
  // no longer in it lose their progress.
  void SetMembership(const Membership& m, Index next_index);

  bool IsVoter(ReplicaId id) const;
  bool IsNonVoting(ReplicaId id) const;
  bool IsWitness(ReplicaId id) const;
  bool IsMember(ReplicaId id) const { return progress_.count(id) != 0; }

  Progress* Get(ReplicaId id);
  std::map<ReplicaId, Progress>& progress() { return progress_; }
  const std::map<ReplicaId, Progress>& progress() const { return progress_; }

  // The largest index acknowledged by a quorum of voters.
  Index Committed();
  // The largest read round confirmed by a quorum of voters.
  uint64_t ConfirmedReadRound();
  // True when a quorum of voters has been recently active (the caller counts
  // itself active by setting its own flag).
  bool QuorumActive();

  void ResetVotes() { votes_.clear(); }
  void RecordVote(ReplicaId id, bool granted);
  VoteResult TallyVotes() const;

 private:
  template <typename F>
  Index QuorumValue(F value_of);

  size_t max_inflight_msgs_;
  uint64_t max_inflight_bytes_;
  Membership membership_;
  std::map<ReplicaId, Progress> progress_;
  std::map<ReplicaId, bool> votes_;
  std::vector<Index> scratch_;  // reused: no allocation per quorum question
};

}  // namespace flotilla::raft
