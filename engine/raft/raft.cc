#include "engine/raft/raft.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace flotilla::raft {
namespace {

// Marks a vote request sent on a leader's TimeoutNow: voters answer it even
// within their leader lease, since the leader itself asked for the election.
constexpr uint64_t kTransferCampaign = 1;

// How long a leader keeps telling a replica it removed that it was removed,
// unless the replica answers first. One that does not answer in this time
// is most likely down (removing a dead replica is the common case), and a
// replica that restarts is not quiesced: it campaigns or probes, and is
// told then. The leader does not quiesce while a notice is outstanding.
constexpr uint32_t kRemovalNoticeElectionTimeouts = 10;

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

[[noreturn]] void Fatal(const char* what, uint64_t a, uint64_t b) {
  std::fprintf(stderr, "raft invariant broken: %s (%llu, %llu)\n", what,
               static_cast<unsigned long long>(a), static_cast<unsigned long long>(b));
  std::abort();
}

// Messages a leader (or a forwarding follower) sends promise nothing about
// its own durable state, so they may leave before the Update is persisted.
// Every answer (votes, acks, rejections) waits for the persist.
bool MaySendBeforePersist(MessageType t) {
  switch (t) {
    case MessageType::kReplicate:
    case MessageType::kHeartbeat:
    case MessageType::kInstallSnapshot:
    case MessageType::kTimeoutNow:
    case MessageType::kReadIndexResp:
    case MessageType::kQuiesce:
    case MessageType::kPropose:
    case MessageType::kReadIndex:
    case MessageType::kLeaderTransfer:
      return true;
    default:
      return false;
  }
}

// A forwarded proposal that the leader refuses is dropped: the follower's
// driver times the request out.
void Ignore(ProposeResult) {}

}  // namespace

std::string_view ProposeResultName(ProposeResult r) {
  switch (r) {
    case ProposeResult::kOk:
      return "ok";
    case ProposeResult::kNotLeader:
      return "not-leader";
    case ProposeResult::kTransferring:
      return "transferring";
    case ProposeResult::kUncommittedFull:
      return "uncommitted-full";
    case ProposeResult::kUnappliedFull:
      return "unapplied-full";
    case ProposeResult::kConfChangePending:
      return "conf-change-pending";
    case ProposeResult::kInvalid:
      return "invalid";
    case ProposeResult::kRemoved:
      return "removed";
  }
  return "unknown";
}

Raft::Raft(const Config& config, LogReader* reader, const HardState& hs, const Membership& initial,
           const std::map<ReplicaId, std::string>& contexts)
    : cfg_(config),
      log_(reader),
      tracker_(config.max_inflight_msgs, config.max_inflight_bytes),
      rng_state_(config.seed * 0x2545f4914f6cdd1dULL + config.replica_id) {
  if (cfg_.replica_id == kNoReplica) Fatal("replica id 0 is reserved", 0, 0);
  if (cfg_.election_ticks <= cfg_.heartbeat_ticks) {
    Fatal("election_ticks must exceed heartbeat_ticks", cfg_.election_ticks, cfg_.heartbeat_ticks);
  }
  if (cfg_.lease_read && !cfg_.check_quorum) Fatal("lease_read requires check_quorum", 0, 0);
  const SnapshotMeta snap = reader->Snapshot();
  term_ = hs.term;
  vote_ = hs.vote;
  repair_until_ = cfg_.repair_until;
  repair_term_ = cfg_.repair_term;
  hard_state_lost_ = cfg_.hard_state_lost && repair_until_ != 0;
  if (hs.commit > log_.LastIndex())
    Fatal("hard state commit beyond the log", hs.commit, log_.LastIndex());
  log_.CommitTo(hs.commit);
  Membership m = snap.membership;
  if (reader->LastIndex() == 0 && snap.IsEmpty() && !initial.voters.empty()) {
    // Bootstrap: the initial members become conf-change entries 1..n of term
    // 1, identical on every initial replica, so that a replica joining later
    // can learn the membership by replaying the log from the start.
    std::vector<Entry> boot;
    auto add = [&](ConfChangeType type, ReplicaId id) {
      Entry e;
      e.term = 1;
      e.index = boot.size() + 1;
      e.type = EntryType::kConfChange;
      auto ctx = contexts.find(id);
      e.cmd = EncodeConfChange(
          ConfChange{ConfTransition::kAuto,
                     {{type, id, ctx == contexts.end() ? std::string() : ctx->second}}});
      boot.push_back(std::move(e));
    };
    for (ReplicaId id : initial.voters) {
      add(Contains(initial.witnesses, id) ? ConfChangeType::kAddWitness : ConfChangeType::kAddVoter,
          id);
    }
    for (ReplicaId id : initial.non_voting) add(ConfChangeType::kAddNonVoting, id);
    for (const Entry& e : boot) {
      ConfChange cc;
      if (!DecodeConfChange(e.cmd, &cc)) Fatal("bootstrap encoding", e.index, 0);
      ChangeResult r = ApplyConfChange(m, cc);
      if (!r.ok) Fatal("bootstrap membership", e.index, 0);
      m = std::move(r.membership);
    }
    const Index n = boot.size();
    log_.Append(&boot);
    log_.CommitTo(n);
    term_ = std::max<Term>(term_, 1);
    conf_applied_index_ = n;
  } else {
    // Restart: replay the committed membership changes after the snapshot.
    std::vector<Entry> ents;
    if (log_.Entries(snap.index + 1, log_.committed() + 1, UINT64_MAX, &ents) != LogStatus::kOk) {
      corrupted_ = true;
    }
    for (const Entry& e : ents) {
      ConfChange cc;
      if (e.type != EntryType::kConfChange || !DecodeConfChange(e.cmd, &cc)) continue;
      ChangeResult r = ApplyConfChange(m, cc);
      if (r.ok) m = std::move(r.membership);
    }
    conf_applied_index_ = log_.committed();
  }
  if (hard_state_lost_ && m.voters.empty()) LearnVotersOfLog(m);
  tracker_.SetMembership(m, log_.LastIndex() + 1);
  log_.SetApplied(std::max({snap.index, std::min(cfg_.applied, log_.committed()), log_.applied()}));
  BecomeFollower(term_, kNoReplica);
}

Role Raft::role() const {
  switch (state_) {
    case State::kLeader:
      return Role::kLeader;
    case State::kCandidate:
      return Role::kCandidate;
    case State::kPreCandidate:
      return Role::kPreCandidate;
    case State::kFollower:
      break;
  }
  if (tracker_.IsWitness(id())) return Role::kWitness;
  if (tracker_.IsNonVoting(id())) return Role::kNonVoting;
  return Role::kFollower;
}

bool Raft::Promotable() const {
  return !corrupted_ && !told_removed_ && !repairing() && tracker_.IsVoter(id()) &&
         !tracker_.IsWitness(id());
}

// ---------------------------------------------------------------------------
// Role transitions.

void Raft::Reset(Term term) {
  if (term_ != term) {
    term_ = term;
    vote_ = kNoReplica;
  }
  if (state_ == State::kLeader) DropPendingReads();
  leader_ = kNoReplica;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
  AbortLeaderTransfer();
  transfer_campaign_ = false;
  tracker_.ResetVotes();
  const Index last = log_.LastIndex();
  for (auto& [rid, pr] : tracker_.progress()) {
    const bool witness = pr.is_witness;
    pr = Progress(cfg_.max_inflight_msgs, cfg_.max_inflight_bytes);
    pr.is_witness = witness;
    pr.next = last + 1;
    if (rid == id()) pr.match = log_.PersistedLast();
  }
  pending_conf_index_ = 0;
  removal_notices_.clear();
  uncommitted_bytes_ = 0;
  unapplied_.clear();
  unapplied_total_ = 0;
  applied_total_ = 0;
}

void Raft::BecomeFollower(Term term, ReplicaId leader) {
  Reset(term);
  state_ = State::kFollower;
  leader_ = leader;
  if (leader != kNoReplica) wants_campaign_ = false;
}

void Raft::BecomePreCandidate() {
  if (state_ == State::kLeader) Fatal("leader cannot become pre-candidate", term_, 0);
  // A pre-vote changes neither term nor vote: it only asks whether an
  // election could be won, so a partitioned replica does not inflate terms.
  tracker_.ResetVotes();
  state_ = State::kPreCandidate;
  leader_ = kNoReplica;
  tracker_.RecordVote(id(), true);
}

void Raft::BecomeCandidate() {
  if (state_ == State::kLeader) Fatal("leader cannot become candidate", term_, 0);
  Reset(term_ + 1);
  vote_ = id();
  state_ = State::kCandidate;
  tracker_.RecordVote(id(), true);
}

void Raft::BecomeLeader() {
  if (state_ == State::kFollower) Fatal("follower cannot become leader", term_, 0);
  Reset(term_);
  state_ = State::kLeader;
  leader_ = id();
  wants_campaign_ = false;
  if (Progress* self = tracker_.Get(id())) {
    self->BecomeReplicate();
    self->recent_active = true;
  }
  // Conf changes in the uncommitted tail are unknown to the tracker; refuse
  // new ones until everything up to here is applied.
  pending_conf_index_ = log_.LastIndex();
  // An empty entry of the new term lets the leader commit (and learn the
  // commit index of) everything before it (Raft §5.4.2, §8).
  std::vector<Entry> noop(1);
  noop[0].type = EntryType::kMetadata;
  if (!AppendEntries(&noop)) Fatal("leader could not append its no-op", term_, 0);
}

void Raft::ResetRandomizedElectionTimeout() {
  randomized_election_timeout_ =
      cfg_.election_ticks + static_cast<uint32_t>(SplitMix64(&rng_state_) % cfg_.election_ticks);
}

// ---------------------------------------------------------------------------
// Ticks.

void Raft::Tick() {
  if (corrupted_ || quiesced_) return;
  TickQuiesce();
  if (quiesced_) return;
  if (state_ == State::kLeader) {
    TickHeartbeat();
  } else {
    TickElection();
  }
}

void Raft::TickElection() {
  ++election_elapsed_;
  if (!Promotable()) {
    TickRemovalProbe();
    TickTermProbe();
    TickRepairProbe();
    return;
  }
  if (election_elapsed_ < randomized_election_timeout_) return;
  election_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
  if (cfg_.gated_campaigns) {
    wants_campaign_ = true;
    return;
  }
  StartElection(cfg_.pre_vote, false);
}

void Raft::TickHeartbeat() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= cfg_.election_ticks) {
    election_elapsed_ = 0;
    if (cfg_.check_quorum) {
      if (Progress* self = tracker_.Get(id())) self->recent_active = true;
      if (!tracker_.QuorumActive()) {
        BecomeFollower(term_, kNoReplica);
        return;
      }
    }
    // A transfer that did not finish within an election timeout is abandoned
    // (a leader outside the configuration then tries a voter it heard from
    // in the window that ends here, so before the window is reset).
    AbortLeaderTransfer();
    if (!tracker_.IsVoter(id())) HandOverLeadership();
    TickRemovalNotices();
    if (cfg_.check_quorum) {
      for (auto& [rid, pr] : tracker_.progress()) pr.recent_active = rid == id();
    }
  }
  if (heartbeat_elapsed_ >= cfg_.heartbeat_ticks) {
    heartbeat_elapsed_ = 0;
    uint64_t round = reads_.last_round();
    if (reads_.HasWaiting()) {
      round = reads_.StartRound();
      if (Progress* self = tracker_.Get(id())) self->read_round_acked = round;
    }
    BroadcastHeartbeat(round);
    SendRemovalNotices();
  }
}

void Raft::TickQuiesce() {
  if (cfg_.quiesce_after_election_timeouts == 0) return;
  ++idle_ticks_;
  if (state_ != State::kLeader) return;
  if (idle_ticks_ < cfg_.election_ticks * cfg_.quiesce_after_election_timeouts) return;
  // A leader transferring its leadership, or that must (it is no longer a
  // voter), has work left: quiesced, it would never abandon a transfer
  // whose TimeoutNow was lost and try again, and would refuse proposals for
  // ever. (Woken, it quiesced again one tick before the transfer's timeout.)
  if (lead_transferee_ != kNoReplica || !tracker_.IsVoter(id())) return;
  // Nor one still telling a replica it removed so (SendRemovalNotices): a
  // removed follower that it quiesced before the removal reached it is
  // woken by nothing else.
  if (!removal_notices_.empty()) return;
  // Only an idle shard whose members all hold the whole log quiesces, so no
  // one is left behind while nobody ticks.
  const Index last = log_.LastIndex();
  if (log_.committed() != last || reads_.size() > 0) return;
  for (const auto& [rid, pr] : tracker_.progress()) {
    if (pr.match != last) return;
  }
  for (const auto& [rid, pr] : tracker_.progress()) {
    if (rid == id()) continue;
    Message m;
    m.type = MessageType::kQuiesce;
    m.to = rid;
    Send(std::move(m));
  }
  EnterQuiesce();
}

void Raft::EnterQuiesce() { quiesced_ = true; }

void Raft::Wake() {
  quiesced_ = false;
  idle_ticks_ = 0;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  // Waking starts a fresh check-quorum window. It holds no acknowledgement
  // yet: the followers' acks from before the quiescence say nothing about
  // whether they follow this leader now, so the lease (LeaseHeld) is not
  // held until a quorum answers again, and a leader that hears from no
  // quorum within this window steps down.
  if (state_ == State::kLeader) {
    for (auto& [rid, pr] : tracker_.progress()) pr.recent_active = rid == id();
  }
}

// ---------------------------------------------------------------------------
// Elections.

void Raft::Campaign() {
  wants_campaign_ = false;
  if (state_ == State::kLeader) return;
  StartElection(cfg_.pre_vote, false);
}

bool Raft::HasUnappliedConfChange() const {
  // Changes at or below conf_applied_index_ are in the tracker already (for
  // example replayed on restart) even when the state machine has yet to
  // apply them.
  const Index from = std::max(log_.applied(), conf_applied_index_);
  if (log_.committed() <= from) return false;
  std::vector<Entry> ents;
  if (log_.Entries(from + 1, log_.committed() + 1, UINT64_MAX, &ents) != LogStatus::kOk) {
    return true;
  }
  return std::any_of(ents.begin(), ents.end(),
                     [](const Entry& e) { return e.type == EntryType::kConfChange; });
}

void Raft::StartElection(bool pre_vote, bool transfer) {
  if (!Promotable() || state_ == State::kLeader) return;
  // A replica that has yet to apply a committed membership change may not
  // know the voters it needs.
  if (HasUnappliedConfChange()) return;
  if (quiesced_) Wake();
  Term vote_term = 0;
  if (pre_vote) {
    BecomePreCandidate();
    vote_term = term_ + 1;
  } else {
    BecomeCandidate();
    vote_term = term_;
  }
  transfer_campaign_ = transfer;
  if (tracker_.TallyVotes() == VoteResult::kWon) {
    if (pre_vote) {
      StartElection(false, transfer);
    } else {
      BecomeLeader();
    }
    return;
  }
  const MessageType type = pre_vote ? MessageType::kRequestPreVote : MessageType::kRequestVote;
  auto ask = [&](ReplicaId to) {
    if (to == id()) return;
    Message m;
    m.type = type;
    m.to = to;
    m.term = vote_term;
    m.log_index = log_.LastIndex();
    m.log_term = log_.LastTerm();
    m.ctx = transfer ? kTransferCampaign : 0;
    Send(std::move(m));
  };
  const Membership& mem = tracker_.membership();
  for (ReplicaId to : mem.voters) ask(to);
  for (ReplicaId to : mem.voters_outgoing) {
    if (!Contains(mem.voters, to)) ask(to);
  }
}

bool Raft::InLease() const {
  return cfg_.check_quorum && leader_ != kNoReplica && election_elapsed_ < cfg_.election_ticks;
}

void Raft::HandleVoteRequest(const Message& m) {
  const bool pre = m.type == MessageType::kRequestPreVote;
  // A repairing replica may have acknowledged entries it no longer holds:
  // its vote could elect a leader without them.
  const bool can_vote =
      !repairing() && (vote_ == m.from || (vote_ == kNoReplica && leader_ == kNoReplica) ||
                       (pre && m.term > term_));
  Message resp;
  resp.type = pre ? MessageType::kRequestPreVoteResp : MessageType::kRequestVoteResp;
  resp.to = m.from;
  if (can_vote && log_.IsUpToDate(m.log_index, m.log_term)) {
    // A granted pre-vote carries the term it was asked for, so the
    // pre-candidate does not mistake it for a newer term.
    resp.term = m.term;
    if (!pre) {
      election_elapsed_ = 0;
      vote_ = m.from;
    }
    AttachCommit(&resp);
  } else {
    resp.term = term_;
    resp.reject = true;
    AttachCommit(&resp);
  }
  Send(std::move(resp));
}

// A vote response, granted or not, carries what we know is committed (index
// and its term). A candidate whose log holds that entry with that term holds
// the same prefix (log matching), so it may learn the commit index from us.
// This matters after a membership change: a new voter that did not yet learn
// that the change committed is still bound to the old configuration, whose
// other voters (now non-voting, or removed and gone) may refuse it forever;
// and a voter that grants it its vote may be the only one left to tell it.
void Raft::AttachCommit(Message* resp) const {
  Term t = 0;
  if (log_.TermAt(log_.committed(), &t) != LogStatus::kOk) return;
  resp->commit = log_.committed();
  resp->hint_term = t;
}

void Raft::LearnCommit(const Message& m) {
  if (m.commit > log_.committed() && log_.MatchTerm(m.commit, m.hint_term)) {
    log_.CommitTo(m.commit);
  }
}

void Raft::HandleVoteResponse(const Message& m) {
  LearnCommit(m);
  tracker_.RecordVote(m.from, !m.reject);
  ActOnVotes();
}

void Raft::ActOnVotes() {
  switch (tracker_.TallyVotes()) {
    case VoteResult::kWon:
      if (state_ == State::kPreCandidate) {
        StartElection(false, transfer_campaign_);
      } else {
        BecomeLeader();
      }
      break;
    case VoteResult::kLost:
      BecomeFollower(term_, kNoReplica);
      break;
    case VoteResult::kPending:
      break;
  }
}

// A removed replica that did not learn that its removal committed (the
// leader stopped tracking it at once, and the last commit index it sent may
// have been lost) times out and campaigns, for ever: its pre-votes are
// dropped by voters within their lease and refused by the others. The
// members that applied the removal tell it instead. Removal is final (a
// removed id is never added again), so the answer stays true.
bool Raft::RemovedFromShard(ReplicaId id) const {
  return Contains(tracker_.membership().removed, id) && !tracker_.IsMember(id);
}

void Raft::TellRemoved(const Message& vote_request) {
  Message resp;
  resp.type = vote_request.type == MessageType::kRequestPreVote ? MessageType::kRequestPreVoteResp
                                                                : MessageType::kRequestVoteResp;
  resp.to = vote_request.from;
  resp.reject = true;
  resp.ctx = kRemovedNotice;
  Send(std::move(resp));
}

// Trusted from a member of this replica's configuration: that member
// applied a committed change removing us. A replica that knows no member
// (started to join, and removed before it heard of any) would trust no one;
// it trusts a peer of its shard in a term not below its own, as it takes a
// leader's appends from anyone.
void Raft::HandleRemovedNotice(const Message& m) {
  if (m.from == id() || state_ == State::kLeader) return;
  const bool knows_members = !tracker_.membership().voters.empty();
  if (knows_members ? !tracker_.IsMember(m.from) : m.term < term_) return;
  // A leader's notice names the removal's entry: a replica that holds it
  // learns that it committed, applies it, and then stays until the new
  // configuration knows, like one that learned the commit from the log.
  LearnCommit(m);
  told_removed_ = true;
  wants_campaign_ = false;
  if (!Contains(told_by_, m.from)) told_by_.push_back(m.from);
  if (state_ != State::kFollower) BecomeFollower(term_, kNoReplica);
  // Awake, it probes the new configuration (TickRemovalProbe) if it must,
  // and its driver sees it on every tick.
  if (quiesced_) Wake();
  // A notice the leader sent unasked is answered, which ends its notices.
  // Notices that answer our own requests are not: the answer would be
  // answered again, for ever.
  if (m.log_index != 0) {
    Message probe = RemovalProbe();
    probe.to = m.from;
    Send(std::move(probe));
  }
}

// The leader tells each replica that a change it applied removed (it no
// longer tracks them, so they may never learn the commit from it), at once
// and at every heartbeat until they answer. The notices matter most to
// replicas that nothing else would reach: one quiesced before the removal
// reached it (never ticked, so it never campaigns or probes), and one
// started to join and removed before it heard from anyone (it knows no
// member to ask).
void Raft::StartRemovalNotices(const std::vector<ReplicaId>& leaving, Index index, Term term) {
  bool started = false;
  for (ReplicaId rid : leaving) {
    if (tracker_.IsMember(rid)) continue;
    removal_notices_.push_back(RemovalNotice{rid, index, term, kRemovalNoticeElectionTimeouts});
    started = true;
  }
  if (!started) return;
  if (quiesced_) Wake();
  SendRemovalNotices();
}

void Raft::SendRemovalNotices() {
  for (const RemovalNotice& n : removal_notices_) {
    Message m;
    m.type = MessageType::kRequestPreVoteResp;
    m.to = n.to;
    m.reject = true;
    m.ctx = kRemovedNotice;
    m.log_index = n.index;
    m.commit = n.index;
    m.hint_term = n.term;
    Send(std::move(m));
  }
}

// Called once per election timeout.
void Raft::TickRemovalNotices() {
  for (RemovalNotice& n : removal_notices_) --n.election_timeouts_left;
  std::erase_if(removal_notices_,
                [](const RemovalNotice& n) { return n.election_timeouts_left == 0; });
}

// A replica that applied its own removal knows that the removal committed,
// and may be the last live replica that does: the leader that committed it
// may have lost its commit messages and failed, or be this replica, cut off
// or restarted before it told anyone. Voters unaware of the commit still
// count the old configuration, which may have lost its majority for good,
// while the new one has a live majority that does not know it may elect.
// So until a majority of the new configuration has told it that they
// applied the removal, it asks them once per election timeout with its
// commit index, from which they learn the commit (LearnCommit), and the
// driver keeps it running; it also answers their vote requests with its
// vote and commit index. Voters that applied the removal answer with
// kRemovedNotice (Step), before the lease and without waking.
//
// A witness or non-voting replica never campaigns, so unlike a voter it
// never asks anything by itself: removed before it applied its removal
// (the leader stops sending to a replica it removed), it would wait for a
// leader for ever. So one that has heard no leader for two election
// timeouts probes the voters too; those that applied its removal answer
// kRemovedNotice, the others only learn its commit.
void Raft::TickRemovalProbe() {
  if (RemovedFromShard(id())) {
    if (removal_settled()) return;
  } else if (told_removed_ || election_elapsed_ < 2 * cfg_.election_ticks) {
    return;
  }
  if (++probe_elapsed_ < cfg_.election_ticks) return;
  probe_elapsed_ = 0;
  const Message m = RemovalProbe();
  const Membership& mem = tracker_.membership();
  for (const std::vector<ReplicaId>* half : {&mem.voters, &mem.voters_outgoing}) {
    for (ReplicaId to : *half) {
      if (to == id() || (half == &mem.voters_outgoing && Contains(mem.voters, to))) continue;
      Message probe = m;
      probe.to = to;
      Send(std::move(probe));
    }
  }
}

Message Raft::RemovalProbe() const {
  Message m;
  m.type = MessageType::kRequestPreVote;
  m.term = term_ + 1;
  m.log_index = log_.LastIndex();
  m.log_term = log_.LastTerm();
  m.ctx = kRemovalProbe;
  AttachCommit(&m);
  return m;
}

bool Raft::removal_settled() const {
  const Membership& mem = tracker_.membership();
  const auto told = [&](const std::vector<ReplicaId>& voters) {
    size_t n = 0;
    for (ReplicaId v : voters) n += Contains(told_by_, v) ? 1 : 0;
    return MajorityVote(voters.size(), n, 0);
  };
  return JointVote(told(mem.voters), told(mem.voters_outgoing)) == VoteResult::kWon;
}

// ---------------------------------------------------------------------------
// Step.

bool Raft::StepByTerm(Message& m) {
  const bool vote_request =
      m.type == MessageType::kRequestVote || m.type == MessageType::kRequestPreVote;
  if (m.term > term_) {
    if (vote_request && m.ctx != kTransferCampaign && InLease()) {
      // We heard from a leader recently: a disruptive candidate (for example
      // one that was partitioned) must not depose it.
      return false;
    }
    if (m.type == MessageType::kRequestPreVote) return true;
    if (m.type == MessageType::kRequestPreVoteResp && !m.reject) return true;
    const bool from_leader = m.type == MessageType::kReplicate ||
                             m.type == MessageType::kHeartbeat ||
                             m.type == MessageType::kInstallSnapshot;
    BecomeFollower(m.term, from_leader ? m.from : kNoReplica);
    return true;
  }
  if (m.term < term_) {
    if ((cfg_.check_quorum || cfg_.pre_vote) &&
        (m.type == MessageType::kHeartbeat || m.type == MessageType::kReplicate)) {
      // A stale leader learns our term from this answer and steps down.
      Message resp;
      resp.type = MessageType::kReplicateResp;
      resp.to = m.from;
      Send(std::move(resp));
    } else if (m.type == MessageType::kRequestPreVote) {
      Message resp;
      resp.type = MessageType::kRequestPreVoteResp;
      resp.to = m.from;
      resp.reject = true;
      AttachCommit(&resp);
      Send(std::move(resp));
    }
    return false;
  }
  return true;
}

void Raft::Step(Message m) {
  if (corrupted_) return;
  const bool vote_request =
      m.type == MessageType::kRequestVote || m.type == MessageType::kRequestPreVote;
  // Before the terms and the lease, and without waking a quiesced shard: a
  // removed replica is answered whatever it asks with, and never disrupts.
  if (vote_request && RemovedFromShard(m.from)) {
    // It is alive and hears us: it needs no more notices.
    std::erase_if(removal_notices_, [&](const RemovalNotice& n) { return n.to == m.from; });
    TellRemoved(m);
    return;
  }
  // A removed replica's probe (TickRemovalProbe) from a member whose
  // removal this replica has not applied yet: it only teaches the commit.
  if (m.type == MessageType::kRequestPreVote && m.ctx == kRemovalProbe) {
    if (state_ != State::kLeader) LearnCommit(m);
    return;
  }
  // A term probe of a replica that lost its hard state, a repairing
  // replica's repair probe, and their answers (repair.cc): before the lease
  // and without waking.
  const bool pre_vote =
      m.type == MessageType::kRequestPreVote || m.type == MessageType::kRequestPreVoteResp;
  if (pre_vote && (m.ctx == kTermProbe || m.ctx == kRepairProbe)) {
    if (m.type == MessageType::kRequestPreVote) {
      AnswerProbe(m);
    } else {
      m.ctx == kTermProbe ? HandleTermProbeAnswer(m) : HandleRepairProbeAnswer(m);
    }
    return;
  }
  const bool vote_response =
      m.type == MessageType::kRequestVoteResp || m.type == MessageType::kRequestPreVoteResp;
  if (vote_response && m.reject && m.ctx == kRemovedNotice) {
    HandleRemovedNotice(m);
    return;
  }
  if (m.type == MessageType::kQuiesce) {
    // A removed replica stays awake: it asks the new configuration until
    // they know of its removal (TickRemovalProbe), or its driver stops it,
    // and nothing would wake it (the leader no longer tracks it). A late
    // Quiesce, sent before the leader applied the removal, reached one
    // after it applied it (flotilla_sim seed 7921).
    if (m.term == term_ && m.from == leader_ && state_ == State::kFollower && !told_removed_ &&
        !RemovedFromShard(id())) {
      EnterQuiesce();
    }
    return;
  }
  // A heartbeat response of the current term brings no work: it answers a
  // heartbeat sent before the leader quiesced, and waking on it would undo
  // every quiescence whose last heartbeat was still in flight.
  const bool idle_ack = m.type == MessageType::kHeartbeatResp && m.term == term_;
  if (quiesced_ && !idle_ack) Wake();
  if (m.type != MessageType::kHeartbeat && m.type != MessageType::kHeartbeatResp) idle_ticks_ = 0;
  if (!StepByTerm(m)) return;
  if (m.type == MessageType::kRequestVote || m.type == MessageType::kRequestPreVote) {
    HandleVoteRequest(m);
    return;
  }
  switch (state_) {
    case State::kLeader:
      StepLeader(m);
      break;
    case State::kCandidate:
    case State::kPreCandidate:
      StepCandidate(m);
      break;
    case State::kFollower:
      StepFollower(m);
      break;
  }
}

void Raft::StepLeader(Message& m) {
  switch (m.type) {
    case MessageType::kPropose: {
      // Forwarded by a follower; the follower's driver times the request out
      // if it is dropped here.
      bool conf = false;
      for (const Entry& e : m.entries) conf |= e.type == EntryType::kConfChange;
      if (conf) {
        ConfChange cc;
        if (m.entries.size() == 1 && DecodeConfChange(m.entries[0].cmd, &cc)) {
          Ignore(ProposeConfChange(cc, m.entries[0].key));
        }
      } else {
        Ignore(Propose(&m.entries));
      }
      break;
    }
    case MessageType::kReadIndex:
      HandleReadIndex(m.ctx, m.from);
      break;
    case MessageType::kReplicateResp:
      HandleAppendResponse(m);
      break;
    case MessageType::kHeartbeatResp:
      HandleHeartbeatResponse(m);
      break;
    case MessageType::kLeaderTransfer:
      HandleTransferLeader(m.hint);
      break;
    default:
      break;
  }
}

void Raft::StepCandidate(Message& m) {
  switch (m.type) {
    case MessageType::kReplicate:
      BecomeFollower(m.term, m.from);
      HandleAppend(m);
      break;
    case MessageType::kHeartbeat:
      BecomeFollower(m.term, m.from);
      HandleHeartbeat(m);
      break;
    case MessageType::kInstallSnapshot:
      BecomeFollower(m.term, m.from);
      HandleSnapshot(m);
      break;
    case MessageType::kRequestPreVoteResp:
      if (state_ == State::kPreCandidate) HandleVoteResponse(m);
      break;
    case MessageType::kRequestVoteResp:
      if (state_ == State::kCandidate) HandleVoteResponse(m);
      break;
    default:
      break;
  }
}

void Raft::StepFollower(Message& m) {
  switch (m.type) {
    case MessageType::kReplicate:
      election_elapsed_ = 0;
      leader_ = m.from;
      wants_campaign_ = false;
      HandleAppend(m);
      break;
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      leader_ = m.from;
      wants_campaign_ = false;
      HandleHeartbeat(m);
      break;
    case MessageType::kInstallSnapshot:
      election_elapsed_ = 0;
      leader_ = m.from;
      wants_campaign_ = false;
      HandleSnapshot(m);
      break;
    case MessageType::kTimeoutNow:
      // The leader asked us to take over: campaign at once, without pre-vote.
      StartElection(false, true);
      break;
    case MessageType::kReadIndexResp:
      read_states_.push_back(ReadState{m.ctx, m.log_index});
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------------------
// Proposals.

ProposeResult Raft::Propose(std::vector<Entry>* entries) {
  if (corrupted_) return ProposeResult::kRemoved;
  if (quiesced_) Wake();
  idle_ticks_ = 0;
  for (const Entry& e : *entries) {
    if (e.type == EntryType::kConfChange) return ProposeResult::kInvalid;
  }
  if (state_ != State::kLeader) {
    if (state_ != State::kFollower || leader_ == kNoReplica) return ProposeResult::kNotLeader;
    Message m;
    m.type = MessageType::kPropose;
    m.to = leader_;
    m.entries = std::move(*entries);
    Send(std::move(m));
    return ProposeResult::kOk;
  }
  if (!tracker_.IsMember(id())) return ProposeResult::kRemoved;
  if (lead_transferee_ != kNoReplica) return ProposeResult::kTransferring;
  uint64_t bytes = 0;
  for (const Entry& e : *entries) bytes += e.cmd.size();
  if (cfg_.max_uncommitted_bytes != 0 && uncommitted_bytes_ > 0 &&
      uncommitted_bytes_ + bytes > cfg_.max_uncommitted_bytes) {
    return ProposeResult::kUncommittedFull;
  }
  if (cfg_.max_unapplied_bytes != 0 && unapplied_total_ > applied_total_ &&
      unapplied_total_ - applied_total_ + bytes > cfg_.max_unapplied_bytes) {
    return ProposeResult::kUnappliedFull;
  }
  if (!AppendEntries(entries)) return ProposeResult::kUncommittedFull;
  return ProposeResult::kOk;
}

ProposeResult Raft::ProposeConfChange(const ConfChange& cc, uint64_t key) {
  if (corrupted_) return ProposeResult::kRemoved;
  if (quiesced_) Wake();
  idle_ticks_ = 0;
  Entry e;
  e.type = EntryType::kConfChange;
  e.key = key;
  e.cmd = EncodeConfChange(cc);
  if (state_ != State::kLeader) {
    if (state_ != State::kFollower || leader_ == kNoReplica) return ProposeResult::kNotLeader;
    Message m;
    m.type = MessageType::kPropose;
    m.to = leader_;
    m.entries.push_back(std::move(e));
    Send(std::move(m));
    return ProposeResult::kOk;
  }
  if (!tracker_.IsMember(id())) return ProposeResult::kRemoved;
  if (lead_transferee_ != kNoReplica) return ProposeResult::kTransferring;
  if (pending_conf_index_ > log_.applied()) return ProposeResult::kConfChangePending;
  if (!ApplyConfChange(tracker_.membership(), cc).ok) return ProposeResult::kInvalid;
  std::vector<Entry> ents;
  ents.push_back(std::move(e));
  if (!AppendEntries(&ents)) return ProposeResult::kUncommittedFull;
  pending_conf_index_ = log_.LastIndex();
  return ProposeResult::kOk;
}

bool Raft::AppendEntries(std::vector<Entry>* entries) {
  if (entries->empty()) return true;
  Index index = log_.LastIndex();
  uint64_t bytes = 0;
  for (Entry& e : *entries) {
    e.term = term_;
    e.index = ++index;
    bytes += e.cmd.size();
  }
  log_.Append(entries);
  uncommitted_bytes_ += bytes;
  unapplied_total_ += bytes;
  unapplied_.emplace_back(index, unapplied_total_);
  BroadcastAppend();
  return true;
}

void Raft::ReportApplied(Index index) {
  while (!unapplied_.empty() && unapplied_.front().first <= index) {
    applied_total_ = unapplied_.front().second;
    unapplied_.pop_front();
  }
}

// ---------------------------------------------------------------------------
// Replication.

void Raft::StripForWitness(std::vector<Entry>* entries) const {
  // A witness keeps the log's shape (index, term, membership) so it can vote
  // and count towards commitment, but never the state-machine data.
  for (Entry& e : *entries) {
    if (e.type == EntryType::kConfChange) continue;
    e.type = EntryType::kMetadata;
    e.cmd.clear();
    e.key = e.client_id = e.series_id = e.responded_to = 0;
  }
}

bool Raft::SendAppend(ReplicaId to, bool send_if_empty) {
  Progress* pr = tracker_.Get(to);
  if (pr == nullptr || to == id() || pr->IsPaused()) return false;
  const Index prev_index = pr->next - 1;
  Term prev_term = 0;
  LogStatus st = log_.TermAt(prev_index, &prev_term);
  scratch_entries_.clear();
  const Index last = log_.LastIndex();
  if (st == LogStatus::kOk && pr->next <= last) {
    st = log_.Entries(pr->next, last + 1, cfg_.max_msg_bytes, &scratch_entries_);
  }
  if (st == LogStatus::kCompacted) {
    SendSnapshot(to, pr);
    return false;
  }
  if (st == LogStatus::kCorruption) {
    corrupted_ = true;
    return false;
  }
  if (st != LogStatus::kOk) Fatal("leader log read", prev_index, last);
  if (scratch_entries_.empty() && !send_if_empty) return false;
  Message m;
  m.type = MessageType::kReplicate;
  m.to = to;
  m.log_index = prev_index;
  m.log_term = prev_term;
  m.commit = log_.committed();
  m.entries = std::move(scratch_entries_);
  scratch_entries_ = {};
  if (pr->is_witness) StripForWitness(&m.entries);
  const Index sent_last = prev_index + m.entries.size();
  pr->commit_sent = std::max(pr->commit_sent, std::min(m.commit, sent_last));
  pr->sent_last = std::max(pr->sent_last, sent_last);
  if (pr->state == ProgressState::kReplicate && !m.entries.empty()) {
    pr->OptimisticUpdate(sent_last);
    pr->inflights.Add(sent_last, m.SizeBytes());
  } else if (pr->state == ProgressState::kProbe) {
    pr->probe_sent = true;
  }
  Send(std::move(m));
  return true;
}

void Raft::SendSnapshot(ReplicaId to, Progress* pr) {
  if (!pr->recent_active) return;  // it may be down; wait until it answers
  const SnapshotMeta snap = log_.reader()->Snapshot();
  if (snap.IsEmpty()) Fatal("log compacted without a snapshot", to, pr->next);
  pr->BecomeSnapshot(snap.index);
  // Installing (or already holding) the snapshot commits up to its index.
  pr->commit_sent = std::max(pr->commit_sent, snap.index);
  pr->sent_last = std::max(pr->sent_last, snap.index);
  Message m;
  m.type = MessageType::kInstallSnapshot;
  m.to = to;
  m.log_index = snap.index;
  m.log_term = snap.term;
  m.snapshot = snap;
  Send(std::move(m));
}

void Raft::BroadcastAppend() {
  const Index last = log_.LastIndex();
  for (auto& [rid, pr] : tracker_.progress()) {
    if (rid == id()) continue;
    // In replicate state the window is filled (pipelining); in probe state
    // one append goes and the next waits for its answer.
    bool sent = SendAppend(rid, true);
    while (sent && pr.state == ProgressState::kReplicate && pr.next <= last) {
      sent = SendAppend(rid, false);
    }
  }
}

void Raft::BroadcastHeartbeat(uint64_t round) {
  for (auto& [rid, pr] : tracker_.progress()) {
    if (rid == id()) continue;
    Message m;
    m.type = MessageType::kHeartbeat;
    m.to = rid;
    // Never more than the follower is known to hold: it may not have the
    // entries between its match and our commit index yet.
    m.commit = std::min(pr.match, log_.committed());
    m.ctx = round;
    pr.commit_sent = std::max(pr.commit_sent, m.commit);
    pr.heartbeat_sent = true;
    Send(std::move(m));
  }
}

void Raft::HandleAppend(Message& m) {
  Message resp;
  resp.type = MessageType::kReplicateResp;
  resp.to = m.from;
  if (m.log_index < log_.committed()) {
    resp.log_index = log_.committed();
    Send(std::move(resp));
    return;
  }
  const std::optional<Index> last_new = log_.MaybeAppend(m.log_index, m.log_term, &m.entries);
  if (last_new) {
    log_.CommitTo(std::min(m.commit, *last_new));
    resp.log_index = *last_new;
    MaybeEndRepair(*last_new);
  } else {
    // Fast backtracking: point the leader at the last index whose term is
    // not above the one it tried, skipping a whole divergent term at once.
    const auto [hint, hint_term] =
        log_.FindConflictByTerm(std::min(m.log_index, log_.LastIndex()), m.log_term);
    resp.reject = true;
    resp.log_index = m.log_index;
    resp.hint = hint;
    resp.hint_term = hint_term;
    if (repairing()) resp.ctx = kLostEntries;
  }
  Send(std::move(resp));
}

void Raft::HandleAppendResponse(const Message& m) {
  Progress* pr = tracker_.Get(m.from);
  if (pr == nullptr) return;
  pr->recent_active = true;
  if (m.reject && m.ctx == kLostEntries && pr->ForgetAbove(m.hint)) {
    SendAppend(m.from, true);
    return;
  }
  if (m.reject) {
    Index next_probe = m.hint;
    if (m.hint_term > 0) next_probe = log_.FindConflictByTerm(m.hint, m.hint_term).first;
    if (pr->MaybeDecreaseTo(m.log_index, next_probe)) {
      if (pr->state == ProgressState::kReplicate) pr->BecomeProbe();
      SendAppend(m.from, true);
    }
    return;
  }
  if (!pr->MaybeUpdate(m.log_index)) return;
  switch (pr->state) {
    case ProgressState::kProbe:
      pr->BecomeReplicate();
      break;
    case ProgressState::kSnapshot:
      if (pr->match >= pr->pending_snapshot) {
        pr->BecomeProbe();
        pr->BecomeReplicate();
      }
      break;
    case ProgressState::kReplicate:
      pr->inflights.FreeUpTo(m.log_index);
      break;
  }
  MaybeCommit();
  if (state_ != State::kLeader) return;  // a membership change may have removed us
  const Index last = log_.LastIndex();
  bool sent = SendAppend(m.from, false);
  while (sent && pr->state == ProgressState::kReplicate && pr->next <= last) {
    sent = SendAppend(m.from, false);
  }
  if (m.from == lead_transferee_ && pr->match == last) {
    Message t;
    t.type = MessageType::kTimeoutNow;
    t.to = m.from;
    Send(std::move(t));
  }
}

void Raft::HandleHeartbeat(const Message& m) {
  log_.CommitTo(std::min(m.commit, log_.LastIndex()));
  Message resp;
  resp.type = MessageType::kHeartbeatResp;
  resp.to = m.from;
  resp.ctx = m.ctx;
  // Repairing: say where our log ends, so that the leader brings its match
  // down if we lost entries and sends an append, whose match may end the repair.
  if (repairing()) {
    resp.reject = true;
    resp.log_index = log_.LastIndex();
  }
  Send(std::move(resp));
}

void Raft::HandleHeartbeatResponse(const Message& m) {
  Progress* pr = tracker_.Get(m.from);
  if (pr == nullptr) return;
  pr->recent_active = true;
  pr->probe_sent = false;
  if (m.reject) pr->ForgetAbove(m.log_index);  // a repairing follower lost entries
  if (pr->state == ProgressState::kReplicate && pr->inflights.Full()) pr->inflights.FreeFirst();
  if (m.reject || pr->match < log_.LastIndex()) SendAppend(m.from, true);
  if (m.ctx > pr->read_round_acked) {
    pr->read_round_acked = m.ctx;
    ReleaseConfirmedReads();
  }
}

void Raft::HandleSnapshot(const Message& m) {
  const SnapshotMeta& snap = m.snapshot;
  Message resp;
  resp.type = MessageType::kReplicateResp;
  resp.to = m.from;
  if (snap.index <= log_.committed()) {
    resp.log_index = log_.committed();
  } else if (log_.MatchTerm(snap.index, snap.term)) {
    // We hold the snapshot's last entry already: only the commit index moves.
    log_.CommitTo(snap.index);
    resp.log_index = snap.index;
  } else {
    log_.Restore(snap);
    tracker_.SetMembership(snap.membership, snap.index + 1);
    conf_applied_index_ = snap.index;
    conf_to_apply_.clear();
    resp.log_index = snap.index;
  }
  if (!resp.reject) MaybeEndRepair(resp.log_index);
  Send(std::move(resp));
}

bool Raft::CommittedInCurrentTerm() const {
  Term t = 0;
  return log_.TermAt(log_.committed(), &t) == LogStatus::kOk && t == term_;
}

bool Raft::MaybeCommit() {
  // Only an entry of the current term is committed by counting replicas;
  // older entries are committed with it (Raft §5.4.2).
  if (!log_.MaybeCommit(tracker_.Committed(), term_)) return false;
  if (!reads_before_commit_.empty() || !remote_reads_before_commit_.empty()) {
    std::vector<uint64_t> local = std::move(reads_before_commit_);
    auto remote = std::move(remote_reads_before_commit_);
    reads_before_commit_.clear();
    remote_reads_before_commit_.clear();
    for (uint64_t ctx : local) HandleReadIndex(ctx, id());
    for (const auto& [ctx, from] : remote) HandleReadIndex(ctx, from);
  }
  return true;
}

void Raft::OnPersisted() {
  if (state_ != State::kLeader) return;
  Progress* self = tracker_.Get(id());
  if (self == nullptr) return;
  // The leader's own copy counts towards the quorum only once it is durable.
  if (self->MaybeUpdate(log_.PersistedLast())) MaybeCommit();
}

void Raft::Flush() {
  FlushCommit();
  MaybeStartReadRound();
}

// Sends the commit index to followers that would otherwise learn it only at
// the next heartbeat. Called once per Update so that many acks in one pass
// cost one message per follower.
void Raft::FlushCommit() {
  if (state_ != State::kLeader) return;
  for (auto& [rid, pr] : tracker_.progress()) {
    if (rid == id()) continue;
    const Index can_commit = std::min(pr.match, log_.committed());
    if (pr.commit_sent >= can_commit) continue;
    Message m;
    m.type = MessageType::kHeartbeat;
    m.to = rid;
    m.commit = can_commit;
    pr.commit_sent = can_commit;
    pr.heartbeat_sent = true;
    Send(std::move(m));
  }
}

// ---------------------------------------------------------------------------
// Reads.

ProposeResult Raft::ReadIndex(uint64_t ctx) {
  if (corrupted_) return ProposeResult::kRemoved;
  if (quiesced_) Wake();
  idle_ticks_ = 0;
  if (tracker_.IsWitness(id())) return ProposeResult::kInvalid;
  if (state_ == State::kLeader) {
    HandleReadIndex(ctx, id());
    return ProposeResult::kOk;
  }
  if (state_ != State::kFollower || leader_ == kNoReplica) return ProposeResult::kNotLeader;
  Message m;
  m.type = MessageType::kReadIndex;
  m.to = leader_;
  m.ctx = ctx;
  Send(std::move(m));
  return ProposeResult::kOk;
}

void Raft::HandleReadIndex(uint64_t ctx, ReplicaId from) {
  if (!CommittedInCurrentTerm()) {
    // Until an entry of its term commits, a new leader does not know the
    // commit index of its predecessor.
    if (from == id()) {
      reads_before_commit_.push_back(ctx);
    } else {
      remote_reads_before_commit_.emplace_back(ctx, from);
    }
    return;
  }
  const bool single_voter = tracker_.membership().voters.size() == 1 &&
                            tracker_.membership().voters_outgoing.empty() && tracker_.IsVoter(id());
  if (single_voter || LeaseHeld()) {
    ServeRead(ctx, from, log_.committed());
    return;
  }
  reads_.Add(ctx, from, log_.committed());
}

bool Raft::LeaseHeld() {
  if (!cfg_.lease_read || !cfg_.check_quorum) return false;
  // Once TimeoutNow is out, the target may win without waiting for anyone's
  // lease to expire.
  if (lead_transferee_ != kNoReplica) return false;
  // Only acks received in the current check-quorum window prove that a
  // quorum still honours the lease: the check at the end of the window looks
  // at the previous window, so a leader cut off just after its last acks
  // stays leader for up to two election timeouts, while the others may elect
  // a new leader after one. Without fresh acks the read takes a heartbeat
  // round like any ReadIndex.
  return tracker_.QuorumActive();
}

void Raft::ServeRead(uint64_t ctx, ReplicaId from, Index index) {
  if (from == id()) {
    read_states_.push_back(ReadState{ctx, index});
    return;
  }
  Message m;
  m.type = MessageType::kReadIndexResp;
  m.to = from;
  m.ctx = ctx;
  m.log_index = index;
  Send(std::move(m));
}

void Raft::MaybeStartReadRound() {
  if (state_ != State::kLeader || !reads_.HasWaiting() || reads_.RoundInFlight()) return;
  const uint64_t round = reads_.StartRound();
  if (Progress* self = tracker_.Get(id())) self->read_round_acked = round;
  BroadcastHeartbeat(round);
}

void Raft::ReleaseConfirmedReads() {
  const uint64_t confirmed = tracker_.ConfirmedReadRound();
  if (confirmed == 0) return;
  read_scratch_.clear();
  reads_.Confirm(confirmed, &read_scratch_);
  for (const auto& r : read_scratch_) ServeRead(r.ctx, r.from, r.index);
}

void Raft::DropPendingReads() {
  read_scratch_.clear();
  reads_.Reset(&read_scratch_);
  for (const auto& r : read_scratch_) {
    if (r.from == id()) dropped_reads_.push_back(r.ctx);
  }
  for (uint64_t ctx : reads_before_commit_) dropped_reads_.push_back(ctx);
  reads_before_commit_.clear();
  remote_reads_before_commit_.clear();
}

// ---------------------------------------------------------------------------
// Leader transfer and membership.

void Raft::TransferLeader(ReplicaId target) {
  if (quiesced_) Wake();
  if (state_ == State::kLeader) {
    HandleTransferLeader(target);
  } else if (state_ == State::kFollower && leader_ != kNoReplica) {
    Message m;
    m.type = MessageType::kLeaderTransfer;
    m.to = leader_;
    m.hint = target;
    Send(std::move(m));
  }
}

void Raft::HandleTransferLeader(ReplicaId target) {
  if (target == id() || target == lead_transferee_) return;
  if (!tracker_.IsVoter(target) || tracker_.IsWitness(target)) return;
  lead_transferee_ = target;
  // The transfer must finish within an election timeout or it is abandoned.
  election_elapsed_ = 0;
  Progress* pr = tracker_.Get(target);
  if (pr->match == log_.LastIndex()) {
    Message m;
    m.type = MessageType::kTimeoutNow;
    m.to = target;
    Send(std::move(m));
  } else {
    SendAppend(target, true);
  }
}

bool Raft::HasPendingOutputs() const {
  if (!msgs_.empty() || !msgs_after_persist_.empty() || !read_states_.empty() ||
      !dropped_reads_.empty() || !dropped_keys_.empty()) {
    return true;
  }
  if (state_ != State::kLeader) return false;
  // Work that Flush does when the driver collects the next Update counts
  // too; without an Update it would wait for the next heartbeat tick. Reads
  // waiting for a round:
  if (reads_.HasWaiting() && !reads_.RoundInFlight()) return true;
  // A follower that holds entries it does not yet know are committed (its
  // ack arrived after the commit index moved, with nothing else to send):
  for (const auto& [rid, pr] : tracker_.progress()) {
    if (rid != id() && pr.commit_sent < std::min(pr.match, log_.committed())) return true;
  }
  return false;
}

void Raft::TakeCommitted(uint64_t max_bytes, std::vector<Entry>* out) {
  if (log_.TakeCommitted(max_bytes, out) != LogStatus::kOk) {
    // A committed entry failed its checksum: stop rather than apply garbage.
    corrupted_ = true;
    return;
  }
  for (const Entry& e : *out) OnApplyHandedOut(e);
}

void Raft::OnApplyHandedOut(const Entry& e) {
  if (state_ == State::kLeader)
    uncommitted_bytes_ -= std::min<uint64_t>(uncommitted_bytes_, e.cmd.size());
  if (e.type != EntryType::kConfChange || e.index <= conf_applied_index_) return;
  conf_applied_index_ = e.index;
  ConfChange cc;
  if (DecodeConfChange(e.cmd, &cc)) {
    conf_to_apply_.push_back(PendingConfChange{e.index, e.term, std::move(cc)});
  }
}

void Raft::ApplyPendingConfChanges() {
  std::vector<PendingConfChange> changes = std::move(conf_to_apply_);
  conf_to_apply_.clear();
  for (const PendingConfChange& c : changes) ApplyMembershipChange(c);
  MaybeAutoLeaveJoint();
}

void Raft::ApplyMembershipChange(const PendingConfChange& change) {
  // A committed change that the rules refuse is refused identically on every
  // replica, so it is a no-op everywhere.
  ChangeResult r = raft::ApplyConfChange(tracker_.membership(), change.cc);
  if (!r.ok) return;
  std::vector<ReplicaId> leaving;  // members now, removed by this change
  for (ReplicaId rid : r.membership.removed) {
    if (rid != id() && tracker_.IsMember(rid)) leaving.push_back(rid);
  }
  tracker_.SetMembership(r.membership, log_.LastIndex() + 1);
  // Removed, it must be ticked to ask the new configuration whether they
  // know (TickRemovalProbe); a Quiesce may have reached it just before.
  if (quiesced_ && !tracker_.IsMember(id())) Wake();
  if (state_ == State::kPreCandidate || state_ == State::kCandidate) {
    // The votes already in count in the new configuration: a candidate
    // that learned from a granted vote that a change committed (the vote
    // carries the commit index) wins with them now, instead of at its next
    // election timeout. One that is no longer a voter stops campaigning.
    if (!tracker_.IsVoter(id()) || tracker_.IsWitness(id())) {
      BecomeFollower(term_, kNoReplica);
    } else {
      ActOnVotes();
    }
    return;
  }
  if (state_ != State::kLeader) return;
  StartRemovalNotices(leaving, change.index, change.term);
  if (lead_transferee_ != kNoReplica && !tracker_.IsVoter(lead_transferee_)) AbortLeaderTransfer();
  MaybeCommit();
  BroadcastAppend();
  // Removed or demoted: hand leadership to a voter of the new configuration
  // rather than stepping down at once. Stepping down could leave the new
  // voters unaware that the change committed, still bound to the old
  // configuration and unable to win its votes: no one could lead.
  if (!tracker_.IsVoter(id())) HandOverLeadership();
}

// The most caught-up voter among those heard from in the current
// check-quorum window, or of all voters when none was. The most caught-up
// voter alone may be one that is down for good (its match stays where it
// was): each retry would go to it again, and the removed leader would keep
// leading a shard that takes no proposals, for ever.
void Raft::HandOverLeadership() {
  if (lead_transferee_ != kNoReplica) return;
  ReplicaId best = kNoReplica;
  Index best_match = 0;
  bool best_active = false;
  for (const auto& [rid, pr] : tracker_.progress()) {
    if (rid == id() || !tracker_.IsVoter(rid) || pr.is_witness) continue;
    const bool better = pr.recent_active != best_active ? pr.recent_active : pr.match > best_match;
    if (best == kNoReplica || better) {
      best = rid;
      best_match = pr.match;
      best_active = pr.recent_active;
    }
  }
  if (best != kNoReplica) HandleTransferLeader(best);
}

void Raft::MaybeAutoLeaveJoint() {
  const Membership& m = tracker_.membership();
  if (state_ != State::kLeader || !m.IsJoint() || !m.auto_leave) return;
  if (pending_conf_index_ > log_.applied()) return;
  std::vector<Entry> ents(1);
  ents[0].type = EntryType::kConfChange;
  ents[0].cmd = EncodeConfChange(ConfChange{});
  AppendEntries(&ents);
  pending_conf_index_ = log_.LastIndex();
}

void Raft::ReportUnreachable(ReplicaId rid) {
  if (state_ != State::kLeader) return;
  Progress* pr = tracker_.Get(rid);
  // Appends in flight were probably lost; probe until it answers again.
  if (pr != nullptr && pr->state == ProgressState::kReplicate) pr->BecomeProbe();
}

void Raft::ReportSnapshotStatus(ReplicaId rid, bool failed) {
  if (state_ != State::kLeader) return;
  Progress* pr = tracker_.Get(rid);
  if (pr == nullptr || pr->state != ProgressState::kSnapshot) return;
  if (failed) pr->pending_snapshot = 0;
  pr->BecomeProbe();
  // Wait for the follower's answer (or a heartbeat response) before probing.
  pr->probe_sent = true;
}

void Raft::Send(Message m) {
  m.shard_id = cfg_.shard_id;
  m.from = id();
  if (m.term == 0) m.term = term_;
  if (MaySendBeforePersist(m.type)) {
    msgs_.push_back(std::move(m));
  } else {
    msgs_after_persist_.push_back(std::move(m));
  }
}

}  // namespace flotilla::raft
