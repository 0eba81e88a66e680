// Raft: the protocol state machine of one replica. Pure and deterministic:
// the same inputs (ticks, messages, proposals, and the seed) always give the
// same outputs. No I/O, no clock, no threads.
//
// Most users drive it through Peer (peer.h), which collects its outputs into
// Updates. See docs/raft-core.md.
//
// Not thread-safe: every call for one replica must come from one thread.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/raft/conf_change.h"
#include "engine/raft/log_reader.h"
#include "engine/raft/raft_log.h"
#include "engine/raft/read_only.h"
#include "engine/raft/tracker.h"
#include "engine/raft/types.h"

namespace flotilla::raft {

struct Config {
  ShardId shard_id = 0;
  ReplicaId replica_id = 0;
  // An election starts after a random number of ticks in
  // [election_ticks, 2 * election_ticks) without hearing from a leader.
  uint32_t election_ticks = 10;
  uint32_t heartbeat_ticks = 1;
  bool pre_vote = true;
  // A leader that hears from no quorum for election_ticks steps down, and a
  // replica that heard from a leader within election_ticks ignores votes.
  bool check_quorum = true;
  // Serve ReadIndex from the leader lease without a heartbeat round.
  // REQUIRES: check_quorum.
  bool lease_read = false;
  uint64_t max_msg_bytes = 1 << 20;           // per append message
  uint32_t max_inflight_msgs = 256;           // appends in flight per follower
  uint64_t max_inflight_bytes = 0;            // 0: no byte limit
  uint64_t max_uncommitted_bytes = 64 << 20;  // 0: no limit
  // Bytes of entries proposed through this leader and not yet applied.
  uint64_t max_unapplied_bytes = 256 << 20;  // 0: no limit
  uint64_t max_apply_bytes_per_update = 64 << 20;
  // Quiesce after this many election timeouts without proposals or reads
  // (0: never).
  uint32_t quiesce_after_election_timeouts = 0;
  // Seed of the generator that randomises election timeouts.
  uint64_t seed = 1;
  // The state machine's applied index on start (on-disk state machines).
  Index applied = 0;
  // When set, an election timeout does not campaign at once: it raises
  // WantsCampaign() and the driver calls Campaign() when its cap allows.
  bool gated_campaigns = false;
  // Repair (docs/raft-core.md, Repair): the replica lost stored entries or
  // its hard state. `repair_until` is the last index it held before (it may
  // have acknowledged entries up to there; 0: not repairing) and
  // `repair_term` its term when the loss was found. Until repaired it does
  // not vote or campaign.
  Index repair_until = 0;
  Term repair_term = 0;
  // The hard state was lost: its term (recovered from the log) may be below
  // a term it voted in, so it first asks every voter for its term.
  bool hard_state_lost = false;
};

enum class [[nodiscard]] ProposeResult : uint8_t{
    kOk = 0,
    kNotLeader,          // no leader known to forward to
    kTransferring,       // a leadership transfer is in progress
    kUncommittedFull,    // max_uncommitted_bytes reached
    kUnappliedFull,      // max_unapplied_bytes reached
    kConfChangePending,  // a membership change is not yet applied
    kInvalid,            // malformed conf change, or refused by the membership rules
    kRemoved,            // this replica is no longer a member
};
std::string_view ProposeResultName(ProposeResult r);

class Raft {
 public:
  // `initial` is the shard's membership at bootstrap; it is used only when
  // the log holds nothing yet (a new replica of a new shard). A replica that
  // joins a running shard passes an empty membership and learns it from the
  // leader. `hs` is the persisted hard state.
  // `contexts` (optional) gives each initial member's conf-change context
  // (the driver stores its address there) for the bootstrap entries.
  Raft(const Config& config, LogReader* reader, const HardState& hs, const Membership& initial,
       const std::map<ReplicaId, std::string>& contexts = {});

  // --- Inputs.
  void Tick();
  void Step(Message m);
  ProposeResult Propose(std::vector<Entry>* entries);
  ProposeResult ProposeConfChange(const ConfChange& cc, uint64_t key);
  // `ctx` identifies the read for the driver; it comes back in a ReadState.
  ProposeResult ReadIndex(uint64_t ctx);
  void TransferLeader(ReplicaId target);
  void Campaign();
  void ReportUnreachable(ReplicaId id);
  void ReportSnapshotStatus(ReplicaId id, bool failed);
  // The driver applied entries up to `index` (used for the unapplied bound).
  void ReportApplied(Index index);

  // --- State.
  const Config& config() const { return cfg_; }
  ShardId shard_id() const { return cfg_.shard_id; }
  ReplicaId id() const { return cfg_.replica_id; }
  Term term() const { return term_; }
  ReplicaId vote() const { return vote_; }
  ReplicaId leader() const { return leader_; }
  // A leader is known and was heard from within the election timeout.
  bool HeardFromLeaderRecently() const {
    return leader_ != kNoReplica && election_elapsed_ < cfg_.election_ticks;
  }
  Role role() const;
  bool is_leader() const { return state_ == State::kLeader; }
  HardState hard_state() const { return {term_, vote_, log_.committed()}; }
  SoftState soft_state() const { return {leader_, role()}; }
  const Membership& membership() const { return tracker_.membership(); }
  const ProgressTracker& tracker() const { return tracker_; }
  RaftLog& log() { return log_; }
  const RaftLog& log() const { return log_; }
  bool quiesced() const { return quiesced_; }
  uint32_t election_elapsed() const { return election_elapsed_; }
  uint32_t randomized_election_timeout() const { return randomized_election_timeout_; }
  bool wants_campaign() const { return wants_campaign_; }
  ReplicaId lead_transferee() const { return lead_transferee_; }
  uint64_t uncommitted_bytes() const { return uncommitted_bytes_; }
  // Bytes proposed through this leader and not yet reported applied.
  uint64_t unapplied_bytes() const {
    return unapplied_total_ > applied_total_ ? unapplied_total_ - applied_total_ : 0;
  }
  // True when this replica may become leader.
  bool Promotable() const;
  // Set when a stored entry failed its checksum: the replica must stop.
  bool corrupted() const { return corrupted_; }
  // True while the replica repairs lost entries or a lost hard state: it
  // does not vote, campaign or lead until its log matches a leader's far
  // enough (docs/raft-core.md, Repair). The driver persists the end.
  bool repairing() const { return repair_until_ != 0; }
  Index repair_until() const { return repair_until_; }
  Term repair_term() const { return repair_term_; }
  bool hard_state_lost() const { return hard_state_lost_; }
  // True while every other voter answered this repairing replica's repair
  // probe saying that it repairs too: no voter can be elected, so none can
  // be repaired (no undamaged copy is left among the voters). The driver
  // reports it; it clears once a leader is heard from again.
  bool unrepairable() const { return unrepairable_; }
  // The voters that said they repair (with unrepairable(): every voter but
  // this replica).
  const std::vector<ReplicaId>& repairing_voters() const { return repairing_voters_; }
  // The last read round this leader started (heartbeats carry it; 0: none).
  uint64_t read_round() const { return reads_.last_round(); }
  // Set when a member answered this replica's vote request with
  // kRemovedNotice: its removal committed (it may not have learned so from
  // the log). It never campaigns again; the driver stops it.
  bool told_removed() const { return told_removed_; }
  // For a replica that applied its own removal: true once a majority of
  // the new configuration (each half of a joint one) has told it that they
  // applied the removal too. Until then it may be the only live replica
  // that knows the removal committed, so the driver must not stop it.
  bool removal_settled() const;

  // --- Outputs, drained by Peer.
  std::vector<Message>& msgs() { return msgs_; }
  std::vector<Message>& msgs_after_persist() { return msgs_after_persist_; }
  std::vector<ReadState>& read_states() { return read_states_; }
  std::vector<uint64_t>& dropped_reads() { return dropped_reads_; }
  std::vector<uint64_t>& dropped_keys() { return dropped_keys_; }

  // Called by Peer before collecting an Update: starts a read round for the
  // reads that arrived since the last one and sends the commit index to
  // followers that lag behind it.
  void Flush();
  // Called by Peer after the Update holding entries up to PersistedLast() was
  // persisted: the leader counts its own copy towards the quorum.
  void OnPersisted();
  bool HasPendingOutputs() const;
  // Hands out committed entries for applying (up to `max_bytes`).
  void TakeCommitted(uint64_t max_bytes, std::vector<Entry>* out);
  // Called once handed-out conf changes may take effect (after persist).
  void ApplyPendingConfChanges();

 private:
  enum class State : uint8_t { kFollower, kPreCandidate, kCandidate, kLeader };

  // Role transitions.
  void BecomeFollower(Term term, ReplicaId leader);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  void Reset(Term term);
  void ResetRandomizedElectionTimeout();

  // Ticks.
  void TickElection();
  void TickHeartbeat();
  void TickQuiesce();
  void EnterQuiesce();
  void Wake();

  // Elections.
  void StartElection(bool pre_vote, bool transfer);
  void HandleVoteRequest(const Message& m);
  void HandleVoteResponse(const Message& m);
  // True when `id` was removed from the shard and is no longer a member.
  bool RemovedFromShard(ReplicaId id) const;
  void TellRemoved(const Message& vote_request);
  void HandleRemovedNotice(const Message& m);
  void TickRemovalProbe();
  // A kRemovalProbe pre-vote request, without its addressee.
  Message RemovalProbe() const;
  // Leader: tells the replicas that the membership changes just applied
  // removed (members before them, members of neither half now).
  void StartRemovalNotices(const std::vector<ReplicaId>& leaving, Index index, Term term);
  void SendRemovalNotices();
  void TickRemovalNotices();
  // Repair (raft.cc): the term probe of a replica that lost its hard state,
  // and the end of repair once a leader's log matches far enough.
  void TickTermProbe();
  void LearnVotersOfLog(Membership m);
  std::vector<ReplicaId> TermProbeVoters() const;
  void AnswerProbe(const Message& m);
  void HandleTermProbeAnswer(const Message& m);
  void TickRepairProbe();
  void ProbeVoters(uint64_t ctx, const std::vector<ReplicaId>& skip);
  void HandleRepairProbeAnswer(const Message& m);
  void MaybeEndRepair(Index matched);
  // Advances the commit index to `m.commit` when this log holds that entry
  // with the term `m.hint_term` (the same prefix, by log matching).
  void LearnCommit(const Message& m);
  // Wins, loses or waits on the votes recorded so far, in the current configuration.
  void ActOnVotes();
  void AttachCommit(Message* resp) const;
  bool InLease() const;

  // Per-role steps.
  void StepLeader(Message& m);
  void StepCandidate(Message& m);
  void StepFollower(Message& m);
  bool StepByTerm(Message& m);

  // Replication.
  bool SendAppend(ReplicaId to, bool send_if_empty);
  void SendSnapshot(ReplicaId to, Progress* pr);
  void BroadcastAppend();
  void BroadcastHeartbeat(uint64_t round);
  void HandleAppend(Message& m);
  void HandleAppendResponse(const Message& m);
  void HandleHeartbeat(const Message& m);
  void HandleHeartbeatResponse(const Message& m);
  void HandleSnapshot(const Message& m);
  bool MaybeCommit();
  void FlushCommit();
  bool AppendEntries(std::vector<Entry>* entries);
  bool CommittedInCurrentTerm() const;
  void StripForWitness(std::vector<Entry>* entries) const;

  // Reads.
  void HandleReadIndex(uint64_t ctx, ReplicaId from);
  // True when a lease read may be served without a heartbeat round.
  bool LeaseHeld();
  void ServeRead(uint64_t ctx, ReplicaId from, Index index);
  void MaybeStartReadRound();
  void ReleaseConfirmedReads();
  void DropPendingReads();

  // Leader transfer and membership.
  void HandleTransferLeader(ReplicaId target);
  void AbortLeaderTransfer() { lead_transferee_ = kNoReplica; }
  void HandOverLeadership();
  // A handed-out membership change, with its entry's index and term.
  struct PendingConfChange {
    Index index = 0;
    Term term = 0;
    ConfChange cc;
  };
  void ApplyMembershipChange(const PendingConfChange& change);
  bool HasUnappliedConfChange() const;
  void MaybeAutoLeaveJoint();
  void OnApplyHandedOut(const Entry& e);

  void Send(Message m);
  void Abandon(const std::vector<Entry>& entries);

  Config cfg_;
  RaftLog log_;
  ProgressTracker tracker_;
  State state_ = State::kFollower;
  Term term_ = 0;
  ReplicaId vote_ = kNoReplica;
  ReplicaId leader_ = kNoReplica;
  ReplicaId lead_transferee_ = kNoReplica;
  bool transfer_campaign_ = false;  // the current election was asked for by a leader
  Index pending_conf_index_ = 0;    // leader: index of the last conf change proposed
  Index conf_applied_index_ = 0;    // conf changes at or below are in tracker_
  std::vector<PendingConfChange> conf_to_apply_;
  uint64_t uncommitted_bytes_ = 0;
  // Leader: (last index, cumulative bytes) of local proposal batches not yet
  // applied; bounds max_unapplied_bytes.
  std::deque<std::pair<Index, uint64_t>> unapplied_;
  uint64_t unapplied_total_ = 0;
  uint64_t applied_total_ = 0;

  uint32_t election_elapsed_ = 0;
  uint32_t heartbeat_elapsed_ = 0;
  uint32_t randomized_election_timeout_ = 0;
  uint64_t rng_state_;
  bool wants_campaign_ = false;

  bool quiesced_ = false;
  uint32_t idle_ticks_ = 0;

  ReadIndexQueue reads_;
  std::vector<ReadIndexQueue::Request> read_scratch_;
  std::vector<uint64_t> reads_before_commit_;  // local reads waiting for a commit in term
  std::vector<std::pair<uint64_t, ReplicaId>> remote_reads_before_commit_;

  bool corrupted_ = false;
  Index repair_until_ = 0;
  Term repair_term_ = 0;
  bool hard_state_lost_ = false;
  std::vector<ReplicaId> term_heard_from_;  // voters that answered the term probe
  // The voters of the newest configuration in the log, committed or not:
  // asked by the term probe while the committed membership is unknown.
  std::vector<ReplicaId> log_voters_;
  std::vector<ReplicaId> repairing_voters_;  // answered the repair probe as repairing
  uint32_t repair_probe_elapsed_ = 0;
  bool unrepairable_ = false;
  uint32_t term_probe_elapsed_ = 0;
  bool told_removed_ = false;
  std::vector<ReplicaId> told_by_;  // members that sent kRemovedNotice
  uint32_t probe_elapsed_ = 0;      // ticks since the last removal probe
  // Leader: replicas removed by a change it applied that have not answered
  // its removal notice yet (at most kRemovalNoticeElectionTimeouts each).
  struct RemovalNotice {
    ReplicaId to = kNoReplica;
    Index index = 0;  // the removal's entry
    Term term = 0;
    uint32_t election_timeouts_left = 0;
  };
  std::vector<RemovalNotice> removal_notices_;
  std::vector<Message> msgs_;
  std::vector<Message> msgs_after_persist_;
  std::vector<ReadState> read_states_;
  std::vector<uint64_t> dropped_reads_;
  std::vector<uint64_t> dropped_keys_;
  std::vector<Entry> scratch_entries_;
};

}  // namespace flotilla::raft
