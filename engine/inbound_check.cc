#include "engine/inbound_check.h"

#include <algorithm>

namespace flotilla::engine {

using raft::MessageType;

std::string_view RejectionName(Rejection r) {
  switch (r) {
    case Rejection::kNone:
      return "none";
    case Rejection::kLocalType:
      return "local_type";
    case Rejection::kSnapshotInBatch:
      return "snapshot_in_batch";
    case Rejection::kBadAddress:
      return "bad_address";
    case Rejection::kRemovedSender:
      return "removed_sender";
    case Rejection::kNonMember:
      return "non_member";
    case Rejection::kNotFromLeader:
      return "not_from_leader";
    case Rejection::kTermTooFar:
      return "term_too_far";
    case Rejection::kEntryIndex:
      return "entry_index";
    case Rejection::kEntryTerm:
      return "entry_term";
    case Rejection::kEntryTooLarge:
      return "entry_too_large";
    case Rejection::kEntryType:
      return "entry_type";
    case Rejection::kIndexBeyondLog:
      return "index_beyond_log";
    case Rejection::kCommitBeyondLog:
      return "commit_beyond_log";
    case Rejection::kBadSnapshot:
      return "bad_snapshot";
    case Rejection::kStorageLow:
      return "storage_low";
    case Rejection::kNoRequest:
      return "no_request";
    case Rejection::kCount:
      break;
  }
  return "unknown";
}

namespace {

bool IsWireType(MessageType t) {
  if (t == MessageType::kPropose || t == MessageType::kReadIndex) return true;
  return t >= MessageType::kReplicate && t < MessageType::kCount;
}

// Messages that only a leader sends. A replica may hear them from a sender
// it does not know as a member yet: a follower that lags behind the change
// that added its new leader must still be caught up by it.
bool IsLeaderMessage(MessageType t) {
  return t == MessageType::kReplicate || t == MessageType::kHeartbeat ||
         t == MessageType::kInstallSnapshot || t == MessageType::kTimeoutNow ||
         t == MessageType::kQuiesce;
}

// Entries of an append (numbered right after `m.log_index`, terms from
// `m.log_term` up to `m.term`) or of a forwarded proposal.
Rejection CheckEntries(const raft::Message& m, const InboundLimits& limits) {
  if (m.entries.size() > kMaxEntriesPerMessage) return Rejection::kEntryTooLarge;
  const bool append = m.type == MessageType::kReplicate;
  raft::Term prev_term = m.log_term;
  for (size_t i = 0; i < m.entries.size(); ++i) {
    const raft::Entry& e = m.entries[i];
    if (e.cmd.size() > limits.max_entry_bytes) return Rejection::kEntryTooLarge;
    if (!append) {
      // A forwarded proposal: commands and membership changes, not yet in
      // any log (no index, no term).
      if (e.type != raft::EntryType::kNormal && e.type != raft::EntryType::kConfChange) {
        return Rejection::kEntryType;
      }
      continue;
    }
    if (e.index != m.log_index + 1 + i) return Rejection::kEntryIndex;
    if (e.term < prev_term || e.term > m.term) return Rejection::kEntryTerm;
    prev_term = e.term;
  }
  return Rejection::kNone;
}

// A leader's message from a sender this replica does not count among its
// members: believable only while this replica follows no live leader, and
// in a term no leader of which it knows (a later one, or its own term when
// it knows no leader in it).
bool MayBeANewLeader(const raft::Raft& raft, const raft::Message& m) {
  if (raft.HeardFromLeaderRecently()) return false;
  return m.term > raft.term() || (m.term == raft.term() && raft.leader() == raft::kNoReplica);
}

bool IsVoteRequest(MessageType t) {
  return t == MessageType::kRequestVote || t == MessageType::kRequestPreVote;
}

// Who may send what. There is one leader per term: in the term of the
// leader this replica follows, no one else sends a leader's message. A
// sender that is not a member (and not that leader) is believed only for a
// leader's message at a term no leader of which it knows, or a vote request,
// and only when this replica has not heard from its leader for an election
// timeout: it may lag
// behind the change that added that sender, whose appends must catch it up
// and whose election may need its vote (as in etcd's raft, votes do not
// depend on the voter's view of the membership). A joining replica, which
// knows no members yet, hears everyone.
Rejection CheckSender(const raft::Raft& raft, const raft::Message& m) {
  const bool leader_message = IsLeaderMessage(m.type);
  if (leader_message && m.term == raft.term() && raft.leader() != raft::kNoReplica &&
      m.from != raft.leader()) {
    return Rejection::kNotFromLeader;
  }
  if (raft.tracker().IsMember(m.from) || m.from == raft.leader() ||
      raft.membership().voters.empty()) {
    return Rejection::kNone;
  }
  // A vote request is answered whatever its term once no leader is heard:
  // a refusal carries this replica's term, which a candidate behind it needs
  // to campaign again in a term that can win.
  if ((leader_message && MayBeANewLeader(raft, m)) ||
      (IsVoteRequest(m.type) && !raft.HeardFromLeaderRecently())) {
    return Rejection::kNone;
  }
  return Rejection::kNonMember;
}

Rejection CheckSnapshot(const raft::Message& m) {
  const raft::SnapshotMeta& s = m.snapshot;
  if (s.index == 0 || s.index >= kMaxTerm || s.term == 0 || s.term > m.term) {
    return Rejection::kBadSnapshot;
  }
  if (s.membership.voters.empty()) return Rejection::kBadSnapshot;
  return Rejection::kNone;
}

// Index fields measured against this replica's log.
Rejection CheckIndexes(const raft::Raft& raft, const raft::Message& m) {
  const raft::Index last = raft.log().LastIndex();
  switch (m.type) {
    case MessageType::kReplicate:
      // An index that would overflow with its entries is no index at all.
      if (m.log_index >= kMaxTerm || m.log_term > m.term) return Rejection::kEntryIndex;
      return Rejection::kNone;
    case MessageType::kHeartbeat:
      // A leader sends min(its commit, our match): never beyond our log,
      // unless we lost entries we had acknowledged (we are repairing): then
      // its match is beyond our log until our answer brings it down, and
      // the core takes the commit only up to its log.
      return m.commit > last && !raft.repairing() ? Rejection::kCommitBeyondLog : Rejection::kNone;
    case MessageType::kReplicateResp:
      // We never sent beyond our own last index, and a rejection's hint is
      // at most the index it rejects.
      if (m.log_index > last) return Rejection::kIndexBeyondLog;
      if (m.reject && m.hint > m.log_index) return Rejection::kIndexBeyondLog;
      return Rejection::kNone;
    case MessageType::kRequestVote:
    case MessageType::kRequestPreVote:
      return m.log_term > m.term ? Rejection::kEntryTerm : Rejection::kNone;
    default:
      return Rejection::kNone;
  }
}

// An answer of a later term to a replica that sent nothing in it: a
// follower that hears its leader (or a leader) would step down to that term
// and forget its leader, bypassing the lease that guards it against vote
// requests. One that follows no live leader (it just campaigned or stepped
// down) may well receive a late answer of a later term, and learns the term
// from it, as it would from a vote request.
bool DisruptsALeader(const raft::Raft& raft, const raft::Message& m) {
  return m.term > raft.term() && (raft.is_leader() || raft.HeardFromLeaderRecently());
}

// An acknowledgement of an index the leader never sent that peer. A follower
// answers an append below its commit index with that index, which it may
// have learned from other replicas (a vote answer carries it): plausible
// when the leader knows it committed, or for an entry of an earlier term,
// which an earlier leader may have committed. Such an entry never counts
// towards committing one of this term (Raft 5.4.2), so only entries of this
// term above the commit index must have been sent.
bool AcknowledgesUnsentEntries(const raft::Raft& raft, const raft::Progress& pr,
                               const raft::Message& m) {
  if (m.log_index <= pr.sent_last) return false;
  // A rejection names the index of the append it refuses.
  if (m.reject) return true;
  if (m.log_index <= raft.log().committed()) return false;
  raft::Term t = 0;
  return raft.log().TermAt(m.log_index, &t) != raft::LogStatus::kOk || t >= raft.term();
}

// An answer to a leader's append or heartbeat. A leader sends each member an
// append at once (its no-op), and heartbeats at every heartbeat interval.
Rejection CheckLeaderAnswer(const raft::Raft& raft, const raft::Message& m) {
  if (m.term < raft.term()) return Rejection::kNone;  // late: the core ignores it
  if (!raft.is_leader()) {
    // Ignored by the core, unless of a later term.
    return DisruptsALeader(raft, m) ? Rejection::kNoRequest : Rejection::kNone;
  }
  const auto& progress = raft.tracker().progress();
  const auto it = progress.find(m.from);
  if (it == progress.end()) return Rejection::kNoRequest;
  const raft::Progress& pr = it->second;
  if (m.type == MessageType::kReplicateResp) {
    // Entries counted as held where they were never sent would be
    // committed without a quorum.
    return AcknowledgesUnsentEntries(raft, pr, m) ? Rejection::kNoRequest : Rejection::kNone;
  }
  // A heartbeat answer confirms the read round it carries: a round not
  // started yet would confirm later reads without a quorum.
  if (!pr.heartbeat_sent || m.ctx > raft.read_round()) return Rejection::kNoRequest;
  return Rejection::kNone;
}

// An answer to a (pre-)vote request. Removal notices, which a leader also
// sends unasked, and term-probe answers, which the core takes only while it
// probes and only from voters, have rules of their own in the core.
Rejection CheckVoteAnswer(const raft::Raft& raft, const raft::Message& m) {
  const bool pre = m.type == MessageType::kRequestPreVoteResp;
  if ((m.reject && m.ctx == raft::kRemovedNotice) || (pre && m.ctx == raft::kTermProbe)) {
    return Rejection::kNone;
  }
  const raft::Term term = raft.term();
  if (m.term < term) return Rejection::kNone;  // late: the core ignores it
  // A vote is answered in the candidate's term (a voter in a later one does
  // not answer), a granted pre-vote in the term asked for: ours plus one.
  if (!pre && m.term > term) return Rejection::kNoRequest;
  if (pre && !m.reject && m.term > term + 1) return Rejection::kNoRequest;
  const bool campaigning =
      raft.role() == (pre ? raft::Role::kPreCandidate : raft::Role::kCandidate);
  if (!campaigning) {
    // Ignored by the core, except a refusal of a later term.
    return pre && m.reject && DisruptsALeader(raft, m) ? Rejection::kNoRequest : Rejection::kNone;
  }
  // A campaign asks the voters of its membership, and no one else.
  return raft.tracker().IsVoter(m.from) ? Rejection::kNone : Rejection::kNoRequest;
}

// A follower forwards reads to the leader it follows, which answers in its
// term; the core takes an answer of its term or a later one as a read. A
// follower that has since lost track of its leader (it stepped down to
// campaign, and lost) still waits for the answer of the one leader of its
// term.
Rejection CheckReadAnswer(const raft::Raft& raft, const raft::Message& m) {
  if (m.term < raft.term()) return Rejection::kNone;  // late: the core ignores it
  if (m.term > raft.term()) return Rejection::kNoRequest;
  if (raft.role() == raft::Role::kLeader || raft.role() == raft::Role::kCandidate ||
      raft.role() == raft::Role::kPreCandidate) {
    return Rejection::kNone;  // ignored by the core
  }
  return m.from == raft.leader() || raft.leader() == raft::kNoReplica ? Rejection::kNone
                                                                      : Rejection::kNoRequest;
}

// Responses matched with the requests in flight (inbound_check.h).
Rejection CheckResponse(const raft::Raft& raft, const raft::Message& m) {
  switch (m.type) {
    case MessageType::kReplicateResp:
    case MessageType::kHeartbeatResp:
      return CheckLeaderAnswer(raft, m);
    case MessageType::kRequestVoteResp:
    case MessageType::kRequestPreVoteResp:
      return CheckVoteAnswer(raft, m);
    case MessageType::kReadIndexResp:
      return CheckReadAnswer(raft, m);
    default:
      return Rejection::kNone;
  }
}

}  // namespace

Rejection CheckSnapshotStreamStart(const PublishedState& s, const raft::Message& m) {
  if (m.type != MessageType::kInstallSnapshot) return Rejection::kLocalType;
  if (m.from == raft::kNoReplica || m.from == s.id || m.to != s.id) return Rejection::kBadAddress;
  if (m.term > kMaxTerm || (m.term > s.term && m.term - s.term > kMaxTermAdvance)) {
    return Rejection::kTermTooFar;
  }
  if (m.term < s.term || (m.term == s.term && s.leader != raft::kNoReplica && m.from != s.leader)) {
    return Rejection::kNotFromLeader;
  }
  // The leader the replica follows may be one it does not count among its
  // members yet (it lags behind the change that added it); a replica that
  // knows no members yet (a joiner) hears whoever leads.
  const raft::Membership& ms = *s.membership;
  auto has = [&](const std::vector<raft::ReplicaId>& ids) {
    return std::find(ids.begin(), ids.end(), m.from) != ids.end();
  };
  if (m.from != s.leader) {
    if (has(ms.removed)) return Rejection::kRemovedSender;
    if (!ms.voters.empty() && !has(ms.voters) && !has(ms.voters_outgoing)) {
      return Rejection::kNonMember;
    }
  }
  return CheckSnapshot(m);
}

Rejection CheckBatchMessage(const raft::Message& m) {
  if (!IsWireType(m.type)) return Rejection::kLocalType;
  if (m.type == MessageType::kInstallSnapshot) return Rejection::kSnapshotInBatch;
  return Rejection::kNone;
}

Rejection CheckInbound(const raft::Raft& raft, const raft::Message& m,
                       const InboundLimits& limits) {
  if (!IsWireType(m.type)) return Rejection::kLocalType;
  if (m.from == raft::kNoReplica || m.from == raft.id() || m.to != raft.id()) {
    return Rejection::kBadAddress;
  }
  // A removed replica sends nothing, except as a leader (a removed leader
  // leads on until it has handed its leadership over, which takes its
  // appends and its kTimeoutNow; one in an older term must hear the newer
  // term in this replica's answer to step down), and its vote
  // requests: the core answers those, whatever their term, with a notice
  // that it was removed (a removed replica that missed the commit learns it
  // that way) and changes nothing else.
  const raft::Membership& ms = raft.membership();
  const bool removed = std::find(ms.removed.begin(), ms.removed.end(), m.from) != ms.removed.end();
  if (removed && !IsVoteRequest(m.type) &&
      !(IsLeaderMessage(m.type) &&
        (m.from == raft.leader() || m.term < raft.term() || MayBeANewLeader(raft, m)))) {
    return Rejection::kRemovedSender;
  }
  if (m.term > kMaxTerm || (m.term > raft.term() && m.term - raft.term() > kMaxTermAdvance)) {
    return Rejection::kTermTooFar;
  }
  if (removed && IsVoteRequest(m.type)) return Rejection::kNone;
  if (!removed) {
    if (Rejection r = CheckSender(raft, m); r != Rejection::kNone) return r;
  }
  // Leadership moves and snapshots only from the leader this replica follows
  // in this term: a snapshot replaces its data, a kTimeoutNow starts an
  // election that ignores the leader's lease, a kQuiesce stops its ticks.
  if ((m.type == MessageType::kInstallSnapshot || m.type == MessageType::kTimeoutNow ||
       m.type == MessageType::kQuiesce) &&
      (m.from != raft.leader() || m.term != raft.term())) {
    return Rejection::kNotFromLeader;
  }
  if (m.type == MessageType::kInstallSnapshot) {
    if (Rejection r = CheckSnapshot(m); r != Rejection::kNone) return r;
  }
  if (m.type == MessageType::kReplicate || m.type == MessageType::kPropose) {
    if (m.type == MessageType::kReplicate) {
      if (Rejection r = CheckIndexes(raft, m); r != Rejection::kNone) return r;
    }
    return CheckEntries(m, limits);
  }
  if (!m.entries.empty()) return Rejection::kEntryType;
  if (Rejection r = CheckIndexes(raft, m); r != Rejection::kNone) return r;
  return CheckResponse(raft, m);
}

}  // namespace flotilla::engine
