#include "transport/convert.h"

#include <algorithm>
#include <string_view>

namespace flotilla::transport {
namespace {

using google::protobuf::RepeatedField;

// A member's context is its NodeHost's address: anything longer is not one.
constexpr size_t kMaxContextBytes = 4096;

void MembersToWire(const std::vector<raft::ReplicaId>& in, RepeatedField<uint64_t>* out) {
  out->Reserve(static_cast<int>(in.size()));
  for (raft::ReplicaId r : in) out->Add(r);
}

Status MembersFromWire(const RepeatedField<uint64_t>& in, const WireLimits& limits,
                       std::string_view what, std::vector<raft::ReplicaId>* out) {
  if (static_cast<size_t>(in.size()) > limits.max_members_per_list) {
    return Status::InvalidArgument("membership list " + std::string(what) + " has " +
                                   std::to_string(in.size()) + " members, limit " +
                                   std::to_string(limits.max_members_per_list));
  }
  out->assign(in.begin(), in.end());
  for (raft::ReplicaId r : *out) {
    if (r == raft::kNoReplica) {
      return Status::InvalidArgument("membership list " + std::string(what) + " holds replica 0");
    }
  }
  return Status::Ok();
}

void SnapshotToWire(const raft::SnapshotMeta& s, wire::SnapshotMeta* out) {
  out->set_index(s.index);
  out->set_term(s.term);
  wire::Membership* m = out->mutable_membership();
  MembersToWire(s.membership.voters, m->mutable_voters());
  MembersToWire(s.membership.voters_outgoing, m->mutable_voters_outgoing());
  MembersToWire(s.membership.non_voting, m->mutable_non_voting());
  MembersToWire(s.membership.non_voting_next, m->mutable_non_voting_next());
  MembersToWire(s.membership.witnesses, m->mutable_witnesses());
  MembersToWire(s.membership.removed, m->mutable_removed());
  m->set_auto_leave(s.membership.auto_leave);
  for (const auto& [id, context] : s.membership.contexts) (*m->mutable_contexts())[id] = context;
}

Status SnapshotFromWire(const wire::SnapshotMeta& in, const WireLimits& limits,
                        raft::SnapshotMeta* out) {
  out->index = in.index();
  out->term = in.term();
  const wire::Membership& m = in.membership();
  raft::Membership& r = out->membership;
  FLOTILLA_RETURN_IF_ERROR(MembersFromWire(m.voters(), limits, "voters", &r.voters));
  FLOTILLA_RETURN_IF_ERROR(
      MembersFromWire(m.voters_outgoing(), limits, "voters_outgoing", &r.voters_outgoing));
  FLOTILLA_RETURN_IF_ERROR(MembersFromWire(m.non_voting(), limits, "non_voting", &r.non_voting));
  FLOTILLA_RETURN_IF_ERROR(
      MembersFromWire(m.non_voting_next(), limits, "non_voting_next", &r.non_voting_next));
  FLOTILLA_RETURN_IF_ERROR(MembersFromWire(m.witnesses(), limits, "witnesses", &r.witnesses));
  FLOTILLA_RETURN_IF_ERROR(MembersFromWire(m.removed(), limits, "removed", &r.removed));
  if (static_cast<uint64_t>(m.contexts_size()) > limits.max_members_per_list) {
    return Status::InvalidArgument("membership has " + std::to_string(m.contexts_size()) +
                                   " contexts, more than the limit of " +
                                   std::to_string(limits.max_members_per_list));
  }
  for (const auto& [id, context] : m.contexts()) {
    if (context.size() > kMaxContextBytes) {
      return Status::InvalidArgument("member " + std::to_string(id) + " has a context of " +
                                     std::to_string(context.size()) + " bytes, more than " +
                                     std::to_string(kMaxContextBytes));
    }
    r.contexts.emplace(id, context);
  }
  r.auto_leave = m.auto_leave();
  return Status::Ok();
}

Status EntryFromWire(wire::Entry* in, raft::Entry* out) {
  if (in->type() > static_cast<uint32_t>(raft::EntryType::kMetadata)) {
    return Status::InvalidArgument("entry " + std::to_string(in->index()) + " has unknown type " +
                                   std::to_string(in->type()));
  }
  out->term = in->term();
  out->index = in->index();
  out->type = static_cast<raft::EntryType>(in->type());
  out->key = in->key();
  out->client_id = in->client_id();
  out->series_id = in->series_id();
  out->responded_to = in->responded_to();
  out->cmd = std::move(*in->mutable_cmd());
  return Status::Ok();
}

}  // namespace

WireLimits LimitsFrom(const TransportConfig& config) {
  return WireLimits{config.max_entries_per_message, config.max_members_per_list,
                    std::max(config.max_messages_per_batch, config.max_batch_bytes / 16)};
}

void MakeHeader(uint64_t deployment_id, const std::string& source_address, wire::Header* out) {
  out->set_deployment_id(deployment_id);
  out->set_protocol_version(kProtocolVersion);
  out->set_source_address(source_address);
}

Status CheckHeader(const wire::Header& h, uint64_t deployment_id) {
  if (h.deployment_id() != deployment_id) {
    return Status::Rejected("deployment id mismatch: peer " + h.source_address() + " has " +
                            std::to_string(h.deployment_id()) + ", this NodeHost has " +
                            std::to_string(deployment_id));
  }
  if (h.protocol_version() != kProtocolVersion) {
    return Status::Rejected("protocol version mismatch: peer " + h.source_address() + " speaks " +
                            std::to_string(h.protocol_version()) + ", this NodeHost speaks " +
                            std::to_string(kProtocolVersion));
  }
  return Status::Ok();
}

bool IsWireMessageType(raft::MessageType t) {
  // Followers forward proposals and ReadIndex requests to the leader.
  if (t == raft::MessageType::kPropose || t == raft::MessageType::kReadIndex) return true;
  return t >= raft::MessageType::kReplicate && t < raft::MessageType::kCount;
}

void ToWire(raft::Message&& m, wire::Message* out) {
  out->set_type(static_cast<uint32_t>(m.type));
  out->set_shard_id(m.shard_id);
  out->set_from(m.from);
  out->set_to(m.to);
  out->set_term(m.term);
  out->set_log_term(m.log_term);
  out->set_log_index(m.log_index);
  out->set_commit(m.commit);
  out->set_reject(m.reject);
  out->set_hint(m.hint);
  out->set_hint_term(m.hint_term);
  out->set_ctx(m.ctx);
  out->mutable_entries()->Reserve(static_cast<int>(m.entries.size()));
  for (raft::Entry& e : m.entries) {
    wire::Entry* w = out->add_entries();
    w->set_term(e.term);
    w->set_index(e.index);
    w->set_type(static_cast<uint32_t>(e.type));
    w->set_key(e.key);
    w->set_client_id(e.client_id);
    w->set_series_id(e.series_id);
    w->set_responded_to(e.responded_to);
    w->set_cmd(e.cmd.data(), e.cmd.size());
  }
  // Only snapshots carry metadata; leaving the field unset keeps other
  // messages small on the wire.
  if (!m.snapshot.IsEmpty() || m.type == raft::MessageType::kInstallSnapshot) {
    SnapshotToWire(m.snapshot, out->mutable_snapshot());
  }
}

Status FromWire(wire::Message* in, const WireLimits& limits, raft::Message* out) {
  if (in->type() >= static_cast<uint32_t>(raft::MessageType::kCount) ||
      !IsWireMessageType(static_cast<raft::MessageType>(in->type()))) {
    return Status::InvalidArgument("unknown message type " + std::to_string(in->type()));
  }
  if (in->from() == raft::kNoReplica || in->to() == raft::kNoReplica) {
    return Status::InvalidArgument("message of shard " + std::to_string(in->shard_id()) +
                                   " has no sender or no recipient");
  }
  if (static_cast<size_t>(in->entries_size()) > limits.max_entries_per_message) {
    return Status::InvalidArgument("message of shard " + std::to_string(in->shard_id()) + " has " +
                                   std::to_string(in->entries_size()) + " entries, limit " +
                                   std::to_string(limits.max_entries_per_message));
  }
  out->type = static_cast<raft::MessageType>(in->type());
  out->shard_id = in->shard_id();
  out->from = in->from();
  out->to = in->to();
  out->term = in->term();
  out->log_term = in->log_term();
  out->log_index = in->log_index();
  out->commit = in->commit();
  out->reject = in->reject();
  out->hint = in->hint();
  out->hint_term = in->hint_term();
  out->ctx = in->ctx();
  out->entries.resize(static_cast<size_t>(in->entries_size()));
  for (int i = 0; i < in->entries_size(); ++i) {
    FLOTILLA_RETURN_IF_ERROR(
        EntryFromWire(in->mutable_entries(i), &out->entries[static_cast<size_t>(i)]));
  }
  if (in->has_snapshot()) {
    FLOTILLA_RETURN_IF_ERROR(SnapshotFromWire(in->snapshot(), limits, &out->snapshot));
  } else {
    out->snapshot = raft::SnapshotMeta{};
  }
  return Status::Ok();
}

bool CanCoalesce(const raft::Message& m) {
  return (m.type == raft::MessageType::kHeartbeat || m.type == raft::MessageType::kHeartbeatResp) &&
         m.entries.empty() && m.snapshot.IsEmpty() && m.log_term == 0 && m.log_index == 0 &&
         m.hint == 0 && m.hint_term == 0;
}

void AppendHeartbeat(const raft::Message& m, wire::Heartbeats* out) {
  out->add_shard_id(m.shard_id);
  out->add_from(m.from);
  out->add_to(m.to);
  out->add_term(m.term);
  out->add_commit(m.commit);
  out->add_ctx(m.ctx);
  out->add_flags((m.type == raft::MessageType::kHeartbeatResp ? 1u : 0u) | (m.reject ? 2u : 0u));
}

bool MustFollowHeartbeats(const raft::Message& m, const wire::Heartbeats& h) {
  if (m.type != raft::MessageType::kQuiesce) return false;
  // Quiesce messages are rare (one per follower when a shard goes idle), so
  // a scan of the batch's columns costs nothing on the hot path.
  for (int i = 0; i < h.shard_id_size(); ++i) {
    if (h.shard_id(i) == m.shard_id && h.to(i) == m.to) return true;
  }
  return false;
}

namespace {

Status HeartbeatsFromWire(const wire::Heartbeats& h, std::vector<raft::Message>* out) {
  const int n = h.shard_id_size();
  if (h.from_size() != n || h.to_size() != n || h.term_size() != n || h.commit_size() != n ||
      h.ctx_size() != n || h.flags_size() != n) {
    return Status::InvalidArgument("coalesced heartbeats: columns of different lengths");
  }
  for (int i = 0; i < n; ++i) {
    if (h.shard_id(i) == 0 || h.from(i) == 0 || h.to(i) == 0) {
      return Status::InvalidArgument("coalesced heartbeat " + std::to_string(i) +
                                     ": zero shard or replica id");
    }
    if ((h.flags(i) & ~3u) != 0) {
      return Status::InvalidArgument("coalesced heartbeat " + std::to_string(i) +
                                     ": unknown flags " + std::to_string(h.flags(i)));
    }
    raft::Message& m = out->emplace_back();
    m.type =
        (h.flags(i) & 1u) != 0 ? raft::MessageType::kHeartbeatResp : raft::MessageType::kHeartbeat;
    m.shard_id = h.shard_id(i);
    m.from = h.from(i);
    m.to = h.to(i);
    m.term = h.term(i);
    m.commit = h.commit(i);
    m.ctx = h.ctx(i);
    m.reject = (h.flags(i) & 2u) != 0;
  }
  return Status::Ok();
}

}  // namespace

Status BatchFromWire(wire::MessageBatch* in, const WireLimits& limits,
                     std::vector<raft::Message>* out) {
  const size_t count =
      static_cast<size_t>(in->messages_size()) +
      (in->has_heartbeats() ? static_cast<size_t>(in->heartbeats().shard_id_size()) : 0);
  if (count > limits.max_messages_per_batch) {
    return Status::InvalidArgument("a batch of " + std::to_string(count) +
                                   " messages exceeds max_messages_per_batch " +
                                   std::to_string(limits.max_messages_per_batch));
  }
  const size_t first = out->size();
  out->resize(first + static_cast<size_t>(in->messages_size()));
  for (int i = 0; i < in->messages_size(); ++i) {
    Status s = FromWire(in->mutable_messages(i), limits, &(*out)[first + static_cast<size_t>(i)]);
    if (!s.ok()) {
      out->resize(first);
      return Status(s.code(), "message " + std::to_string(i) + " of batch: " + s.message());
    }
  }
  if (in->has_heartbeats()) {
    Status s = HeartbeatsFromWire(in->heartbeats(), out);
    if (!s.ok()) {
      out->resize(first);
      return s;
    }
  }
  return Status::Ok();
}

ChunkData ChunkFromWire(const wire::SnapshotChunk& c) {
  ChunkData v;
  v.file_name = c.file_name();
  v.file_offset = c.file_offset();
  v.data = c.data();
  v.data_crc32c = c.data_crc32c();
  v.file_end = c.file_end();
  v.file_crc32c = c.file_crc32c();
  v.last = c.last();
  v.total_bytes = c.total_bytes();
  v.file_count = c.file_count();
  return v;
}

void ChunkToWire(const ChunkData& v, wire::SnapshotChunk* c) {
  c->set_file_name(std::string(v.file_name));
  c->set_file_offset(v.file_offset);
  c->set_data(std::string(v.data));
  c->set_data_crc32c(v.data_crc32c);
  c->set_file_end(v.file_end);
  c->set_file_crc32c(v.file_crc32c);
  c->set_last(v.last);
  c->set_total_bytes(v.total_bytes);
  c->set_file_count(v.file_count);
}

}  // namespace flotilla::transport
