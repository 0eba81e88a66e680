// Conversion between the core's value types and the wire schema
// (proto/raft.proto), with validation of everything that comes off the wire.
// Incoming data is untrusted: anything out of range is rejected with an
// InvalidArgument/Corruption status, never an assertion.
//
// Internal to transport/: exposes protobuf types.
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/raft/types.h"
#include "flotilla/status.h"
#include "proto/raft.pb.h"
#include "transport/config.h"
#include "transport/snapshot_receiver.h"

namespace flotilla::transport {

// Changes when the meaning of an existing wire field changes; peers with
// another version refuse each other.
// 2: coalesced heartbeats (MessageBatch.heartbeats).
inline constexpr uint32_t kProtocolVersion = 2;

struct WireLimits {
  size_t max_entries_per_message = 1u << 16;
  size_t max_members_per_list = 1024;
  // Messages (coalesced heartbeats included) decoded from one batch. A
  // heartbeat costs about 10 bytes on the wire and a few hundred decoded:
  // without a count bound, one 28 MB batch of 4 million heartbeats cost
  // 1.2 GiB. Senders account at least 96 bytes per message against
  // max_batch_bytes, so a correct one stays far below this.
  size_t max_messages_per_batch = 1u << 16;
};
WireLimits LimitsFrom(const TransportConfig& config);

void MakeHeader(uint64_t deployment_id, const std::string& source_address, wire::Header* out);
// OK when `h` may talk to a NodeHost of `deployment_id`; Rejected otherwise,
// with a message that names both sides' values.
Status CheckHeader(const wire::Header& h, uint64_t deployment_id);

// True for the message types that may travel between NodeHosts.
bool IsWireMessageType(raft::MessageType t);

// Fills *out from m, moving the entries' payloads out of m.
void ToWire(raft::Message&& m, wire::Message* out);
// Fills *out from *in after validating every field, moving payloads out of
// *in. On error *out is unspecified.
Status FromWire(wire::Message* in, const WireLimits& limits, raft::Message* out);
// True when `m` can travel as a coalesced heartbeat (a heartbeat or its
// response carrying only shard, from, to, term, commit, ctx and reject).
bool CanCoalesce(const raft::Message& m);
// Appends `m` (CanCoalesce(m) must hold) to the columns of *out.
void AppendHeartbeat(const raft::Message& m, wire::Heartbeats* out);
// True when `m` must not join a batch whose coalesced heartbeats `h` hold
// one for the same shard and replica: the receiver decodes a batch's
// messages before its heartbeat columns, and a kQuiesce delivered before an
// earlier heartbeat is undone by it (the heartbeat wakes the follower). Other
// messages may be reordered with heartbeats (Raft tolerates it).
bool MustFollowHeartbeats(const raft::Message& m, const wire::Heartbeats& h);

// Appends the messages of *in (and its coalesced heartbeats) to *out; on
// error appends nothing.
Status BatchFromWire(wire::MessageBatch* in, const WireLimits& limits,
                     std::vector<raft::Message>* out);

// A view of a wire chunk (valid while `c` lives and is unchanged), and back.
// The receiver validates the view; nothing here can fail.
ChunkData ChunkFromWire(const wire::SnapshotChunk& c);
void ChunkToWire(const ChunkData& v, wire::SnapshotChunk* c);

}  // namespace flotilla::transport
