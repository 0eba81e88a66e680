#include "engine/raft/quorum.h"

#include <algorithm>

namespace flotilla::raft {

Index MajorityIndex(std::vector<Index>* acked) {
  if (acked->empty()) return kNoLimitIndex;
  std::sort(acked->begin(), acked->end());
  // With n voters sorted ascending, the entry at n - (n/2 + 1) is reached by
  // n/2 + 1 voters: itself and every voter above it.
  const size_t n = acked->size();
  return (*acked)[n - (n / 2 + 1)];
}

VoteResult MajorityVote(size_t voters, size_t granted, size_t rejected) {
  if (voters == 0) return VoteResult::kWon;  // an empty half agrees with anything
  const size_t quorum = voters / 2 + 1;
  if (granted >= quorum) return VoteResult::kWon;
  if (voters - rejected < quorum) return VoteResult::kLost;
  return VoteResult::kPending;
}

VoteResult JointVote(VoteResult incoming, VoteResult outgoing) {
  if (incoming == VoteResult::kLost || outgoing == VoteResult::kLost) return VoteResult::kLost;
  if (incoming == VoteResult::kWon && outgoing == VoteResult::kWon) return VoteResult::kWon;
  return VoteResult::kPending;
}

}  // namespace flotilla::raft
