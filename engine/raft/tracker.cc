#include "engine/raft/tracker.h"

#include <algorithm>

#include "engine/raft/conf_change.h"

namespace flotilla::raft {

void ProgressTracker::SetMembership(const Membership& m, Index next_index) {
  membership_ = m;
  std::map<ReplicaId, Progress> next;
  auto keep = [&](ReplicaId id) {
    auto it = progress_.find(id);
    if (it != progress_.end()) {
      next.emplace(id, std::move(it->second));
    } else {
      Progress p(max_inflight_msgs_, max_inflight_bytes_);
      p.next = next_index;
      // A new replica counts as active so that check-quorum does not fail
      // before it had a chance to answer.
      p.recent_active = true;
      next.emplace(id, std::move(p));
    }
    next.at(id).is_witness = Contains(m.witnesses, id);
  };
  for (ReplicaId id : m.voters) keep(id);
  for (ReplicaId id : m.voters_outgoing) keep(id);
  for (ReplicaId id : m.non_voting) keep(id);
  for (ReplicaId id : m.non_voting_next) keep(id);
  progress_ = std::move(next);
}

bool ProgressTracker::IsVoter(ReplicaId id) const {
  return Contains(membership_.voters, id) || Contains(membership_.voters_outgoing, id);
}

bool ProgressTracker::IsNonVoting(ReplicaId id) const {
  return !IsVoter(id) &&
         (Contains(membership_.non_voting, id) || Contains(membership_.non_voting_next, id));
}

bool ProgressTracker::IsWitness(ReplicaId id) const { return Contains(membership_.witnesses, id); }

Progress* ProgressTracker::Get(ReplicaId id) {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

template <typename F>
Index ProgressTracker::QuorumValue(F value_of) {
  scratch_.clear();
  for (ReplicaId id : membership_.voters) scratch_.push_back(value_of(progress_.at(id)));
  const Index incoming = MajorityIndex(&scratch_);
  scratch_.clear();
  for (ReplicaId id : membership_.voters_outgoing) scratch_.push_back(value_of(progress_.at(id)));
  const Index outgoing = MajorityIndex(&scratch_);
  return std::min(incoming, outgoing);
}

Index ProgressTracker::Committed() {
  const Index c = QuorumValue([](const Progress& p) { return p.match; });
  return c == kNoLimitIndex ? 0 : c;
}

uint64_t ProgressTracker::ConfirmedReadRound() {
  const Index r = QuorumValue([](const Progress& p) { return p.read_round_acked; });
  return r == kNoLimitIndex ? 0 : r;
}

bool ProgressTracker::QuorumActive() {
  return QuorumValue([](const Progress& p) { return p.recent_active ? 1 : 0; }) == 1;
}

void ProgressTracker::RecordVote(ReplicaId id, bool granted) { votes_.emplace(id, granted); }

VoteResult ProgressTracker::TallyVotes() const {
  auto tally = [&](const std::vector<ReplicaId>& voters) {
    size_t granted = 0;
    size_t rejected = 0;
    for (ReplicaId id : voters) {
      auto it = votes_.find(id);
      if (it == votes_.end()) continue;
      (it->second ? granted : rejected)++;
    }
    return MajorityVote(voters.size(), granted, rejected);
  };
  return JointVote(tally(membership_.voters), tally(membership_.voters_outgoing));
}

}  // namespace flotilla::raft
