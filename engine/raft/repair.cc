// Repair of a replica that lost stored entries or its hard state
// (docs/raft-core.md, Repair). The driver finds the damage, drops the
// damaged entries and everything after them from the replica's log view, and
// starts the core with Config::repair_until (the last index it held, which it
// may have acknowledged); the core then refuses every vote, never campaigns,
// and fetches the entries again through ordinary replication until the rule
// below says that its vote is safe again.
#include "engine/raft/conf_change.h"
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
  // The repair probe runs only while repairing (TickRepairProbe): its
  // report ends here, or it would outlive the repair.
  unrepairable_ = false;
  repairing_voters_.clear();
}

// A replica whose hard state was lost recovered its term from its log, but it
// may have voted in a later term (for a candidate whose election failed, or
// that leads elsewhere). Every term it voted in is at most the term of the
// candidate it voted for, a voter whose own term never decreases; so once per
// election timeout it asks every voter for its term until all have answered.
void Raft::TickTermProbe() {
  if (!hard_state_lost_) return;
  if (term_probe_elapsed_++ % cfg_.election_ticks != 0) return;
  ProbeVoters(kTermProbe, term_heard_from_);
}

// A pre-vote request that is no campaign (`ctx` says what it asks) to every
// voter the term probe asks but this replica and those in `skip`.
void Raft::ProbeVoters(uint64_t ctx, const std::vector<ReplicaId>& skip) {
  for (ReplicaId to : TermProbeVoters()) {
    if (to == id() || Contains(skip, to)) continue;
    Message m;
    m.type = MessageType::kRequestPreVote;
    m.to = to;
    m.ctx = ctx;
    m.log_index = log_.LastIndex();
    m.log_term = log_.LastTerm();
    Send(std::move(m));
  }
}

// Without its hard state a replica knows no commit index, so, without a
// snapshot, no member either: its membership is what its committed log
// holds. It would ask no one, and if no one sends it anything (it was
// removed while it was down, after the leader's notices ran out) it would
// wait for ever. So until the committed membership is known it asks the
// voters of the newest configuration its log holds, committed or not;
// those that removed it answer so (flotilla_sim --areas all --seed 990).
void Raft::LearnVotersOfLog(Membership m) {
  std::vector<Entry> ents;
  if (log_.Entries(log_.committed() + 1, log_.LastIndex() + 1, UINT64_MAX, &ents) !=
      LogStatus::kOk) {
    return;
  }
  for (const Entry& e : ents) {
    ConfChange cc;
    if (e.type != EntryType::kConfChange || !DecodeConfChange(e.cmd, &cc)) continue;
    ChangeResult r = ApplyConfChange(m, cc);
    if (r.ok) m = std::move(r.membership);
  }
  log_voters_ = m.voters;
  for (ReplicaId v : m.voters_outgoing) {
    if (!Contains(log_voters_, v)) log_voters_.push_back(v);
  }
}

// The voters the term probe asks: those of the committed membership once it
// is known, else those of the log (LearnVotersOfLog).
std::vector<ReplicaId> Raft::TermProbeVoters() const {
  const Membership& mem = tracker_.membership();
  if (mem.voters.empty()) return log_voters_;
  std::vector<ReplicaId> voters = mem.voters;
  for (ReplicaId v : mem.voters_outgoing) {
    if (!Contains(voters, v)) voters.push_back(v);
  }
  return voters;
}

// The answer to a term or repair probe: a refused pre-vote response with the
// same ctx, carrying this replica's term and its repair_until (0 when it is
// not repairing).
void Raft::AnswerProbe(const Message& m) {
  Message resp;
  resp.type = MessageType::kRequestPreVoteResp;
  resp.to = m.from;
  resp.reject = true;
  resp.ctx = m.ctx;
  resp.log_index = repair_until_;
  Send(std::move(resp));
}

// Once every voter has answered, the replica's term is at least each of
// theirs, so at least every term it may have voted in; it takes no vote in
// its current term either (vote_ is set to itself), and from then on it
// repairs like a replica that lost entries found in that term.
void Raft::HandleTermProbeAnswer(const Message& m) {
  if (!hard_state_lost_ || m.from == id()) return;
  const std::vector<ReplicaId> voters = TermProbeVoters();
  if (!Contains(voters, m.from)) return;
  if (m.term > term_) BecomeFollower(m.term, kNoReplica);
  if (!Contains(term_heard_from_, m.from)) term_heard_from_.push_back(m.from);
  for (ReplicaId v : voters) {
    if (v != id() && !Contains(term_heard_from_, v)) return;
  }
  hard_state_lost_ = false;
  term_heard_from_.clear();
  repair_term_ = term_;
  if (vote_ == kNoReplica) vote_ = id();
}

// A repairing replica can only be repaired by a leader, and only voters
// that are not repairing can be elected. When every voter lost entries (no
// undamaged copy is left among them) the shard would stop without a word.
// So a repairing replica that has heard no leader for two election timeouts
// asks every voter, once per election timeout, whether it repairs too, and
// reports the shard as unrepairable when every other voter says so. It
// still takes no vote: it keeps what it may have acknowledged unavailable
// rather than lose it.
void Raft::TickRepairProbe() {
  if (!repairing() || election_elapsed_ < 2 * cfg_.election_ticks) {
    repairing_voters_.clear();
    unrepairable_ = false;
    repair_probe_elapsed_ = 0;
    return;
  }
  if (repair_probe_elapsed_++ % cfg_.election_ticks != 0) return;
  ProbeVoters(kRepairProbe, {});
}

void Raft::HandleRepairProbeAnswer(const Message& m) {
  if (!repairing() || m.from == id()) return;
  const std::vector<ReplicaId> voters = TermProbeVoters();
  if (!Contains(voters, m.from)) return;
  if (m.log_index == 0) {
    std::erase(repairing_voters_, m.from);
    unrepairable_ = false;
    return;
  }
  if (!Contains(repairing_voters_, m.from)) repairing_voters_.push_back(m.from);
  for (ReplicaId v : voters) {
    if (v != id() && !Contains(repairing_voters_, v)) return;
  }
  unrepairable_ = true;
}

}  // namespace flotilla::raft
