// Quorum arithmetic for majority and joint configurations. Pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "engine/raft/types.h"

namespace flotilla::raft {

enum class VoteResult : uint8_t { kPending, kLost, kWon };

inline constexpr Index kNoLimitIndex = std::numeric_limits<Index>::max();

// The largest index that a majority of `acked` (one value per voter) has
// reached. Sorts `acked` in place. An empty set answers kNoLimitIndex, so that
// the joint rule (the minimum of both halves) ignores an empty half.
Index MajorityIndex(std::vector<Index>* acked);

// The outcome of an election in one majority configuration of `voters`
// members with `granted` and `rejected` answers so far.
VoteResult MajorityVote(size_t voters, size_t granted, size_t rejected);

// Joint rule: won only when both halves won, lost when either lost.
VoteResult JointVote(VoteResult incoming, VoteResult outgoing);

}  // namespace flotilla::raft
