#include "engine/raft/peer.h"

#include <cstdio>
#include <cstdlib>

namespace flotilla::raft {

Peer::Peer(const Config& config, LogReader* reader, const HardState& hs, const Membership& initial,
           const std::map<ReplicaId, std::string>& contexts)
    : raft_(config, reader, hs, initial, contexts), prev_hs_(hs), prev_ss_(raft_.soft_state()) {}

bool Peer::HasUpdate() const {
  const Raft& r = raft_;
  if (r.HasPendingOutputs()) return true;
  if (r.log().HasUnstable() || r.log().HasUnstableSnapshot() || r.log().HasCommittedToApply()) {
    return true;
  }
  return r.hard_state() != prev_hs_ || r.soft_state() != prev_ss_;
}

void Peer::GetUpdate(Update* u) {
  if (outstanding_) {
    std::fprintf(stderr, "raft: GetUpdate before Advance of the previous update\n");
    std::abort();
  }
  u->Clear();
  raft_.Flush();
  u->shard_id = raft_.shard_id();
  u->replica_id = raft_.id();
  // Committed entries first: they may still be among the unstable ones that
  // are moved out below.
  RaftLog& log = raft_.log();
  raft_.TakeCommitted(raft_.config().max_apply_bytes_per_update, &u->committed_entries);
  u->last_committed_out = log.applied();
  u->snapshot = log.TakeSnapshot();
  log.TakeUnstable(&u->entries_to_save);
  const HardState hs = raft_.hard_state();
  if (hs != prev_hs_) {
    u->hard_state = hs;
    prev_hs_ = hs;
  }
  const SoftState ss = raft_.soft_state();
  if (ss != prev_ss_) {
    u->soft_state = ss;
    prev_ss_ = ss;
  }
  u->messages.swap(raft_.msgs());
  u->messages_after_persist.swap(raft_.msgs_after_persist());
  u->ready_reads.swap(raft_.read_states());
  u->dropped_reads.swap(raft_.dropped_reads());
  u->dropped_keys.swap(raft_.dropped_keys());
  outstanding_ = true;
}

void Peer::Advance(const Update& u) {
  (void)u;
  outstanding_ = false;
  raft_.OnPersisted();
  raft_.ApplyPendingConfChanges();
}

}  // namespace flotilla::raft
