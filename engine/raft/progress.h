// The leader's view of one follower: how far its log matches, what to send
// next, and the window of appends in flight. See docs/raft-core.md,
// "Follower progress".
//
// Not thread-safe; owned by the core.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "engine/raft/types.h"

namespace flotilla::raft {

enum class ProgressState : uint8_t {
  kProbe,      // unknown match: one append at a time until one is accepted
  kReplicate,  // known match: appends are pipelined up to the in-flight limits
  kSnapshot,   // a snapshot is being sent; appends wait for its outcome
};
std::string_view ProgressStateName(ProgressState s);

// A bounded window of appends in flight, by count and by bytes. Each element
// is the last index of one append message and its size.
class Inflights {
 public:
  Inflights(size_t max_count, uint64_t max_bytes);

  // REQUIRES: !Full()
  void Add(Index last_index, uint64_t bytes);
  // Frees every append whose last index is <= `index`.
  void FreeUpTo(Index index);
  void FreeFirst();
  bool Full() const;
  size_t Count() const { return count_; }
  uint64_t Bytes() const { return bytes_; }
  void Reset();

 private:
  struct Slot {
    Index last_index = 0;
    uint64_t bytes = 0;
  };
  std::vector<Slot> ring_;  // fixed capacity: max_count
  size_t start_ = 0;
  size_t count_ = 0;
  uint64_t bytes_ = 0;
  uint64_t max_bytes_;  // 0: no byte limit
};

struct Progress {
  Progress(size_t max_inflight_msgs, uint64_t max_inflight_bytes)
      : inflights(max_inflight_msgs, max_inflight_bytes) {}

  Index match = 0;
  Index next = 1;
  ProgressState state = ProgressState::kProbe;
  // In probe state: an append was sent and the next waits for a reply or a
  // heartbeat response.
  bool probe_sent = false;
  Index pending_snapshot = 0;
  // Heard from within the current election timeout (check-quorum).
  bool recent_active = false;
  bool is_witness = false;
  // Highest read-index round this follower confirmed.
  uint64_t read_round_acked = 0;
  // The commit index this follower can derive from what it was last sent.
  Index commit_sent = 0;
  // Leader: the highest index sent to this replica in this leadership (an
  // append's last entry, an empty append's index, a snapshot's index) and
  // whether a heartbeat went to it. A correct answer acknowledges no more,
  // and answers a heartbeat only once one was sent (engine/inbound_check.h).
  Index sent_last = 0;
  bool heartbeat_sent = false;
  Inflights inflights;

  void BecomeProbe();
  void BecomeReplicate();
  void BecomeSnapshot(Index snapshot_index);
  // An append up to `n` was accepted. Returns false when it was stale.
  bool MaybeUpdate(Index n);
  // Appends up to `last` were sent in replicate state.
  void OptimisticUpdate(Index last) { next = last + 1; }
  // An append at `rejected` was refused; `match_hint` is the leader's guess of
  // the last matching index. Returns false when the rejection was stale.
  bool MaybeDecreaseTo(Index rejected, Index match_hint);
  // The follower lost entries above `last` that it had acknowledged (it is
  // repairing): match comes down to `last` so that they are sent again.
  // Returns false when match is at or below `last` already.
  bool ForgetAbove(Index last);
  // No more appends should be sent now.
  bool IsPaused() const;
};

}  // namespace flotilla::raft
