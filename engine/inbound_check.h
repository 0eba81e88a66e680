// Inbound checks: every message a remote peer sends is checked against the
// receiving replica's own state before the core sees it, so that the core
// only ever steps messages a correct peer could have sent. The core treats
// its inputs as invariants (a commit index beyond its log, an append that
// rewrites a committed entry, a response for an index it never sent are
// `Fatal` there); here they are a rejection that is counted, logged at a
// bounded rate, and dropped. See docs/security.md for the trust model.
//
// Thread-safety: the functions are pure; CheckInbound reads the core, so it
// runs on the replica's step worker.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

#include "engine/raft/raft.h"

namespace flotilla::engine {

// Why an inbound message was dropped. Each has a counter (a metric by
// reason) and a bounded log line.
enum class Rejection : uint8_t {
  kNone = 0,
  kLocalType,        // a type that never travels on the wire
  kSnapshotInBatch,  // kInstallSnapshot outside the snapshot stream
  kBadAddress,       // from replica 0, from itself, or to another replica
  kRemovedSender,    // from a replica removed from the shard
  kNonMember,        // a message only members may send, from a non-member
  kNotFromLeader,    // a leader's message from a replica that is not our leader
  kTermTooFar,       // a term beyond the bound of one message's advance
  kEntryIndex,       // entries not numbered right after the message's index
  kEntryTerm,        // entry terms out of order, or above the message's term
  kEntryTooLarge,    // an entry above max_entry_bytes, or too many entries
  kEntryType,        // an entry type not allowed in this message
  kIndexBeyondLog,   // an acknowledged or hinted index beyond our log
  kCommitBeyondLog,  // a heartbeat's commit index beyond our log
  kBadSnapshot,      // a snapshot whose metadata cannot be right
  kStorageLow,       // entries to store while free space is below the reserve
  kNoRequest,        // a response to nothing this replica sent and waits for
  kCount,
};

std::string_view RejectionName(Rejection r);

// A term may advance by at most this much in one message: enough for any
// run of elections a correct replica could have lived through (with
// pre-vote, terms barely move while partitioned), and far from the end of
// the term space, which no message may bring within reach.
inline constexpr raft::Term kMaxTermAdvance = raft::Term{1} << 32;
inline constexpr raft::Term kMaxTerm = raft::Term{1} << 62;
// Entries in one append or forwarded proposal.
inline constexpr size_t kMaxEntriesPerMessage = 1 << 16;

struct InboundLimits {
  uint64_t max_entry_bytes = 0;
};

// Checks a message received in a batch (not through a snapshot stream).
// Only the message's own fields: no replica state needed.
Rejection CheckBatchMessage(const raft::Message& m);

// Checks `m` against the state of `raft`, the replica it is addressed to.
// kInstallSnapshot reaches this only from the snapshot stream. A response the
// core would act on (step down to its term, record an acknowledgement, a
// vote or a read) must answer a request this replica sent and still waits
// for: an acknowledgement of this term's entries at most the last index sent
// to that peer in this leadership; a heartbeat answer only from a peer a
// heartbeat went to, for a read round that was started; votes only while
// campaigning, from voters, in the term asked; read answers only from the
// leader followed in this term; an answer of a later term not to a replica
// that leads or hears its leader. A late answer the core ignores (an older
// term, a role the replica has left) is left to it: a correct peer's answers
// arrive late all the time.
Rejection CheckInbound(const raft::Raft& raft, const raft::Message& m, const InboundLimits& limits);

// What a replica has published for other threads (its atomics and the
// membership it applied) when a snapshot stream to it begins.
struct PublishedState {
  raft::ReplicaId id = raft::kNoReplica;
  raft::Term term = 0;
  raft::ReplicaId leader = raft::kNoReplica;
  const raft::Membership* membership = nullptr;  // never null
};

// Checks a snapshot stream's install message at its first chunk, on the
// transport's thread, before anything is written to disk: the sender must
// be a member of the shard (a voter: only a voter leads), or the leader the
// replica follows, and plausibly its leader: in a term no older than the
// replica's, and in the replica's term the leader it follows, if it knows
// one. Looser than CheckInbound, which runs on the whole message once the
// stream has ended (the published state may lag the core's by one pass),
// but an outsider, a removed replica, a follower or a leader of an older
// term is refused at once.
Rejection CheckSnapshotStreamStart(const PublishedState& s, const raft::Message& install);

// Counters of rejected inbound messages, one per reason.
struct RejectionCounters {
  std::array<std::atomic<uint64_t>, static_cast<size_t>(Rejection::kCount)> by_reason{};
  void Add(Rejection r) {
    by_reason[static_cast<size_t>(r)].fetch_add(1, std::memory_order_relaxed);
  }
};

}  // namespace flotilla::engine
