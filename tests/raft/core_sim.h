// A randomized simulation of the protocol core alone: several replicas of one
// shard driven through the Harness by a seeded generator, with message loss,
// duplication and reordering, partitions, crashes that lose what was not
// persisted, snapshots, membership changes and leader transfers. The safety
// rules of Raft are checked after every step; at the end the faults heal and
// the shard must make progress again.
#pragma once

#include <cstdint>
#include <string>

namespace flotilla::raft::testing {

struct CoreSimOptions {
  uint64_t steps = 2500;
  bool verbose = false;  // print every step (for replaying a failing seed)
};

struct CoreSimResult {
  bool ok = true;
  std::string failure;  // the violated rule and its details
  uint64_t steps = 0;
  uint64_t committed = 0;  // entries committed by the end (a sanity figure)
};

CoreSimResult RunCoreSim(uint64_t seed, const CoreSimOptions& options);

}  // namespace flotilla::raft::testing
