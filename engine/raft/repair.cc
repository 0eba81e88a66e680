// Repair of a replica that lost stored entries or its hard state
// (docs/raft-core.md, Repair). The driver finds the damage, drops the
// damaged entries and everything after them from the replica's log view, and
// starts the core with Config::repair_until (the last index it held, which it
// may have acknowledged); the core then refuses every vote, never campaigns,
// and fetches the entries again through ordinary replication until the rule
// below says that its vote is safe again.
#include "engine/raft/raft.h"

namespace flotilla::raft {

// The log matches the current leader's up to `matched` (an append or a
// snapshot from it was accepted). Repair ends when either
//  - matched >= repair_until: every entry the replica may have acknowledged
//    is held again as the leader holds it; or
//  - the entry at `matched` is of the current term, above repair_term: the
//    replica holds the leader's whole log from before its term, which holds
//    every entry committed in earlier terms (the leader was elected without
//    a vote from any replica that had lost entries, since such replicas do
//    not vote), and an entry of an earlier term that is not there can never
//    commit; every acknowledgement of this replica was given in a term at
//    or below repair_term.
// A replica that lost its hard state first learns every voter's term.
void Raft::MaybeEndRepair(Index matched) {
  if (!repairing() || hard_state_lost_ || state_ != State::kFollower) return;
  Term t = 0;
  const bool later_term =
      term_ > repair_term_ && log_.TermAt(matched, &t) == LogStatus::kOk && t == term_;
  if (matched < repair_until_ && !later_term) return;
  repair_until_ = 0;
  repair_term_ = 0;
}

// A replica whose hard state was lost recovered its term from its log, but it
// may have voted in a later term (for a candidate whose election failed, or
// that leads elsewhere). Every term it voted in is at most the term of the
// candidate it voted for, a voter whose own term never decreases; so once per
// election timeout it asks every voter for its term until all have answered.
void Raft::TickTermProbe() {
  if (!hard_state_lost_) return;
  if (term_probe_elapsed_++ % cfg_.election_ticks != 0) return;
  const Membership& mem = tracker_.membership();
  for (const std::vector<ReplicaId>* half : {&mem.voters, &mem.voters_outgoing}) {
    for (ReplicaId to : *half) {
      if (to == id() || Contains(term_heard_from_, to)) continue;
      Message m;
      m.type = MessageType::kRequestPreVote;
      m.to = to;
      m.ctx = kTermProbe;
      m.log_index = log_.LastIndex();
      m.log_term = log_.LastTerm();
      Send(std::move(m));
    }
  }
}

void Raft::AnswerTermProbe(const Message& m) {
  Message resp;
  resp.type = MessageType::kRequestPreVoteResp;
  resp.to = m.from;
  resp.reject = true;
  resp.ctx = kTermProbe;
  Send(std::move(resp));
}

// Once every voter has answered, the replica's term is at least each of
// theirs, so at least every term it may have voted in; it takes no vote in
// its current term either (vote_ is set to itself), and from then on it
// repairs like a replica that lost entries found in that term.
void Raft::HandleTermProbeAnswer(const Message& m) {
  if (!hard_state_lost_ || !tracker_.IsVoter(m.from) || m.from == id()) return;
  if (m.term > term_) BecomeFollower(m.term, kNoReplica);
  if (!Contains(term_heard_from_, m.from)) term_heard_from_.push_back(m.from);
  const Membership& mem = tracker_.membership();
  for (const std::vector<ReplicaId>* half : {&mem.voters, &mem.voters_outgoing}) {
    for (ReplicaId v : *half) {
      if (v != id() && !Contains(term_heard_from_, v)) return;
    }
  }
  hard_state_lost_ = false;
  term_heard_from_.clear();
  repair_term_ = term_;
  if (vote_ == kNoReplica) vote_ = id();
}

}  // namespace flotilla::raft
