// The value types of the Raft protocol core: entries, hard state, membership,
// snapshot metadata, messages and the Update handed to the driver.
//
// These types are shared with the layers below the driver (logdb/, transport/),
// which convert them to and from their storage and wire schemas at the edges.
// Standard library only.
//
// Thread-safety: plain values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/raft/payload.h"

namespace flotilla::raft {

using ShardId = uint64_t;
using ReplicaId = uint64_t;
using Term = uint64_t;
using Index = uint64_t;

inline constexpr ReplicaId kNoReplica = 0;

enum class EntryType : uint8_t {
  kNormal = 0,      // an application command
  kConfChange = 1,  // an encoded ConfChange (see conf_change.h)
  kMetadata = 2,    // a no-op, or an entry stripped of its payload for a witness
};

// One log entry. `key`, `client_id`, `series_id` and `responded_to` belong to
// the driver (request matching and exactly-once sessions); the core carries
// them unchanged.
struct Entry {
  Term term = 0;
  Index index = 0;
  EntryType type = EntryType::kNormal;
  uint64_t key = 0;
  uint64_t client_id = 0;
  uint64_t series_id = 0;
  uint64_t responded_to = 0;
  Payload cmd;  // shared, never copied byte by byte (payload.h)

  // Bytes this entry is accounted for in message and memory limits.
  size_t SizeBytes() const { return kOverheadBytes + cmd.size(); }
  static constexpr size_t kOverheadBytes = 64;

  friend bool operator==(const Entry&, const Entry&) = default;
};

// The state that must be durable before certain messages are sent.
struct HardState {
  Term term = 0;
  ReplicaId vote = kNoReplica;
  Index commit = 0;

  bool IsEmpty() const { return term == 0 && vote == kNoReplica && commit == 0; }
  friend bool operator==(const HardState&, const HardState&) = default;
};

// The membership of a shard. In a joint configuration `voters_outgoing` is
// non-empty and decisions need a majority of both `voters` and
// `voters_outgoing`. Witnesses are voters (they appear in `voters` or
// `voters_outgoing`) that keep log metadata only and never lead.
struct Membership {
  std::vector<ReplicaId> voters;
  std::vector<ReplicaId> voters_outgoing;
  std::vector<ReplicaId> non_voting;
  // Non-voting replicas that become voters when the joint configuration is
  // left (a voter being demoted while it is still an outgoing voter).
  std::vector<ReplicaId> non_voting_next;
  std::vector<ReplicaId> witnesses;
  // Replicas removed from the shard. A removed replica id is never added
  // again: its old log (a witness's stripped one, say) must not rejoin.
  std::vector<ReplicaId> removed;
  // In a joint configuration: leave it automatically once it is committed.
  bool auto_leave = false;
  // Each member's conf-change context (opaque to the core; the driver keeps
  // the member's address there), from the change that added it. Carried
  // with the membership into snapshots, so a replica restored from one
  // knows how to reach members added before it.
  std::map<ReplicaId, std::string> contexts;

  bool IsJoint() const { return !voters_outgoing.empty(); }
  friend bool operator==(const Membership&, const Membership&) = default;
};

// Metadata of a snapshot; the data itself lives outside the core.
struct SnapshotMeta {
  Index index = 0;
  Term term = 0;
  Membership membership;

  bool IsEmpty() const { return index == 0; }
  friend bool operator==(const SnapshotMeta&, const SnapshotMeta&) = default;
};

enum class MessageType : uint8_t {
  kNone = 0,
  // Local inputs (never on the wire).
  kElection,         // start an election (pre-vote first when enabled)
  kLeaderHeartbeat,  // leader: send heartbeats
  kCheckQuorum,      // leader: verify a quorum is active
  kPropose,          // entries to append
  kReadIndex,        // a read request; forwarded to the leader by followers
  kUnreachable,      // the transport could not reach `from`
  kSnapshotStatus,   // the transport finished sending a snapshot to `from`
  // Wire messages.
  kReplicate,  // append entries
  kReplicateResp,
  kRequestVote,
  kRequestVoteResp,
  kRequestPreVote,
  kRequestPreVoteResp,
  kInstallSnapshot,
  kHeartbeat,
  kHeartbeatResp,
  kReadIndexResp,
  kLeaderTransfer,  // ask the leader to transfer leadership to `hint`
  kTimeoutNow,      // leader transfer: campaign at once
  kQuiesce,         // leader: the shard is idle; stop ticking until woken
  kCount,
};

std::string_view MessageTypeName(MessageType t);

// The `ctx` of a refused vote response that tells the requester it was
// removed from the shard: the responder applied the removal, and the
// requester is no longer a member (see docs/raft-core.md, Membership).
// A leader that applied the removal also sends it unasked, with the
// removal's entry in `log_index` (not 0) and in `commit`/`hint_term` (index
// and term, from which the removed replica learns that it committed); the
// removed replica answers such a notice with a kRemovalProbe.
inline constexpr uint64_t kRemovedNotice = 1;

// The `ctx` of a pre-vote request that is no campaign: a replica that
// applied its own removal asks the new configuration's voters, once per
// election timeout, until a majority has answered with kRemovedNotice. The
// request carries its commit index (`commit`, with its term in
// `hint_term`), from which a voter that has not learned that the removal
// committed learns it. (Vote requests' ctx: 0, or 1 for a transfer.)
inline constexpr uint64_t kRemovalProbe = 2;

// The `ctx` of a refused append answer from a replica that lost stored
// entries it may have acknowledged (it is repairing, docs/raft-core.md,
// Repair): its log ends at `hint`, so the leader's match for it, which only
// ever grows, must come down to that index, or the leader would never send
// the lost entries again. A repairing replica's heartbeat answer says the
// same with `reject` set and its last index in `log_index`.
inline constexpr uint64_t kLostEntries = 3;

// The `ctx` of a pre-vote request that asks only for the receiver's term,
// and of its answer (a refused pre-vote response carrying that term): a
// replica whose hard state was lost cannot know in which terms it voted,
// and may vote again only in terms above every voter's term (each term it
// voted in is at most the term of the candidate it voted for).
inline constexpr uint64_t kTermProbe = 4;

// The `ctx` of a pre-vote request that asks only whether the receiver is
// repairing, and of its answer (a refused pre-vote response whose
// `log_index` is the receiver's repair_until, 0 when it is not repairing):
// a repairing replica that hears no leader learns so whether any voter is
// left that could lead and repair it.
inline constexpr uint64_t kRepairProbe = 5;

// True for message types that carry no entries and must never wait behind
// appends or snapshot chunks in the transport.
inline bool IsControlMessage(MessageType t) {
  return t != MessageType::kReplicate && t != MessageType::kInstallSnapshot;
}

struct Message {
  MessageType type = MessageType::kNone;
  ShardId shard_id = 0;
  ReplicaId from = kNoReplica;
  ReplicaId to = kNoReplica;
  Term term = 0;
  Term log_term = 0;  // term of the entry at log_index
  Index log_index = 0;
  Index commit = 0;
  bool reject = false;
  Index hint = 0;      // reject: conflict index; transfer: target; read: index
  Term hint_term = 0;  // reject: term at `hint` in the follower's log
  uint64_t ctx = 0;    // read-index round or request context
  std::vector<Entry> entries;
  SnapshotMeta snapshot;  // kInstallSnapshot only

  // Bytes this message is accounted for in transport limits.
  size_t SizeBytes() const;
  friend bool operator==(const Message&, const Message&) = default;
};

// A read that became ready: the state machine may serve the read with `ctx`
// once it has applied up to `index`.
struct ReadState {
  uint64_t ctx = 0;
  Index index = 0;
  friend bool operator==(const ReadState&, const ReadState&) = default;
};

enum class Role : uint8_t { kFollower, kCandidate, kPreCandidate, kLeader, kNonVoting, kWitness };
std::string_view RoleName(Role r);

// Volatile state the driver may report (leader changes, roles).
struct SoftState {
  ReplicaId leader = kNoReplica;
  Role role = Role::kFollower;
  friend bool operator==(const SoftState&, const SoftState&) = default;
};

// What the core hands its driver. See docs/raft-core.md for the contract:
//  1. send `messages` at once (they promise nothing about local durability);
//  2. persist `snapshot` (if any), then `entries_to_save` and `hard_state`
//     atomically and durably;
//  3. only then send `messages_after_persist`, apply `committed_entries`
//     (after restoring `snapshot` into the state machine), serve
//     `ready_reads` once applied up to their index;
//  4. call Peer::Advance(update).
struct Update {
  ShardId shard_id = 0;
  ReplicaId replica_id = 0;
  std::vector<Entry> entries_to_save;
  std::optional<HardState> hard_state;   // set when it changed
  std::optional<SnapshotMeta> snapshot;  // to install before applying
  std::vector<Message> messages;
  std::vector<Message> messages_after_persist;
  std::vector<Entry> committed_entries;
  std::vector<ReadState> ready_reads;
  std::vector<uint64_t> dropped_reads;  // read contexts that will never be served
  std::vector<uint64_t> dropped_keys;   // proposal keys the core dropped after accepting
  std::optional<SoftState> soft_state;  // set when it changed
  // Index of the last entry handed out in committed_entries (for Advance).
  Index last_committed_out = 0;

  bool IsEmpty() const {
    return entries_to_save.empty() && !hard_state && !snapshot && messages.empty() &&
           messages_after_persist.empty() && committed_entries.empty() && ready_reads.empty() &&
           dropped_reads.empty() && dropped_keys.empty() && !soft_state;
  }
  // Clears every field, keeping vector capacity for reuse.
  void Clear();
};

}  // namespace flotilla::raft
