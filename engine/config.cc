// Validation of NodeHostConfig and ShardConfig (include/flotilla/config.h):
// every rule is checked before anything starts, so that a bad value is an
// InvalidArgument naming its field, never an abort inside the core or a
// silently weaker setting.
#include <algorithm>
#include <charconv>
#include <string>

#include "flotilla/config.h"
#include "flotilla/node_host.h"

namespace flotilla {
namespace {

Status Invalid(std::string_view field, const std::string& rule) {
  return Status::InvalidArgument(std::string(field) + " " + rule);
}

// InvalidArgument unless lo <= v <= hi.
Status InRange(std::string_view field, uint64_t v, uint64_t lo, uint64_t hi) {
  if (v >= lo && v <= hi) return Status::Ok();
  return Invalid(field, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                            "], not " + std::to_string(v));
}

}  // namespace

Status ValidateHostPort(std::string_view field, std::string_view address, uint32_t min_port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Invalid(field, "must be host:port, not \"" + std::string(address) + "\"");
  }
  const std::string_view digits = address.substr(colon + 1);
  uint32_t port = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() ||
      port < min_port || port > 65535) {
    return Invalid(field, "needs a port of digits only in [" + std::to_string(min_port) +
                              ", 65535], not \"" + std::string(digits) + "\"");
  }
  return Status::Ok();
}

namespace {

// Printable ASCII without spaces: what gRPC metadata and one log line carry.
bool Printable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char ch) { return ch > ' ' && ch <= '~'; });
}

Status ValidatePeerAuth(const NodeHostConfig& c, bool tls) {
  // Names without TLS would be silently ignored: the operator meant a check.
  if (!c.tls_peer_names.empty() && !tls)
    return Invalid("NodeHostConfig.tls_peer_names", "needs TLS (the three TLS files)");
  FLOTILLA_RETURN_IF_ERROR(
      InRange("NodeHostConfig.tls_peer_names (count)", c.tls_peer_names.size(), 0, kMaxPeerNames));
  for (const std::string& n : c.tls_peer_names) {
    if (n.empty() || n.size() > kMaxPeerNameBytes || !Printable(n))
      return Invalid("NodeHostConfig.tls_peer_names", "holds a name that is not 1 to " +
                                                          std::to_string(kMaxPeerNameBytes) +
                                                          " printable ASCII bytes without spaces");
  }
  const std::string& s = c.deployment_secret;
  if (!s.empty() && (s.size() < kMinSecretBytes || s.size() > kMaxSecretBytes || !Printable(s))) {
    // The message never quotes the secret.
    return Invalid(
        "NodeHostConfig.deployment_secret",
        "must be " + std::to_string(kMinSecretBytes) + " to " + std::to_string(kMaxSecretBytes) +
            " printable ASCII bytes without spaces, not " + std::to_string(s.size()) + " bytes");
  }
  return Status::Ok();
}

// A zero would refuse every stream; an idle deadline above the total one
// would never apply.
Status ValidatePeerLimits(const NodeHostConfig& c) {
  const SnapshotStreamLimits& s = c.snapshot_streams;
  FLOTILLA_RETURN_IF_ERROR(
      InRange("NodeHostConfig.snapshot_streams.max_streams", s.max_streams, 1, kMaxStreamLimit));
  FLOTILLA_RETURN_IF_ERROR(InRange("NodeHostConfig.snapshot_streams.max_streams_per_peer",
                                   s.max_streams_per_peer, 1, s.max_streams));
  FLOTILLA_RETURN_IF_ERROR(InRange("NodeHostConfig.snapshot_streams.max_bytes_per_peer",
                                   s.max_bytes_per_peer, 1, UINT64_MAX));
  FLOTILLA_RETURN_IF_ERROR(InRange("NodeHostConfig.snapshot_streams.total_timeout_ms",
                                   s.total_timeout_ms, 1, kMaxStreamTimeoutMs));
  FLOTILLA_RETURN_IF_ERROR(InRange("NodeHostConfig.snapshot_streams.idle_timeout_ms",
                                   s.idle_timeout_ms, 1, s.total_timeout_ms));
  FLOTILLA_RETURN_IF_ERROR(InRange("NodeHostConfig.snapshot_streams.evict_idle_ms", s.evict_idle_ms,
                                   0, s.idle_timeout_ms));
  const BatchStreamLimits& b = c.batch_streams;
  // A correct peer holds two Batches streams: its control and data lanes.
  FLOTILLA_RETURN_IF_ERROR(
      InRange("NodeHostConfig.batch_streams.max_streams", b.max_streams, 2, kMaxStreamLimit));
  FLOTILLA_RETURN_IF_ERROR(InRange("NodeHostConfig.batch_streams.max_streams_per_peer",
                                   b.max_streams_per_peer, 2, b.max_streams));
  FLOTILLA_RETURN_IF_ERROR(InRange("NodeHostConfig.batch_streams.max_inflight_bytes",
                                   b.max_inflight_bytes, 1, UINT64_MAX));
  return InRange("NodeHostConfig.batch_streams.max_inflight_bytes_per_peer",
                 b.max_inflight_bytes_per_peer, 1, b.max_inflight_bytes);
}

}  // namespace

Status Validate(const NodeHostConfig& c) {
  if (c.data_dir.empty()) return Invalid("NodeHostConfig.data_dir", "is required");
  if (c.raft_address.empty()) return Invalid("NodeHostConfig.raft_address", "is required");
  FLOTILLA_RETURN_IF_ERROR(InRange("NodeHostConfig.rtt_ms", c.rtt_ms, 1, kMaxRttMs));
  FLOTILLA_RETURN_IF_ERROR(InRange("NodeHostConfig.step_workers", c.step_workers, 0, kMaxWorkers));
  FLOTILLA_RETURN_IF_ERROR(
      InRange("NodeHostConfig.apply_workers", c.apply_workers, 0, kMaxWorkers));
  FLOTILLA_RETURN_IF_ERROR(InRange("NodeHostConfig.max_proposal_queue_length",
                                   c.max_proposal_queue_length, 1, kMaxQueueLength));
  FLOTILLA_RETURN_IF_ERROR(InRange("NodeHostConfig.max_inbound_queue_length",
                                   c.max_inbound_queue_length, 1, kMaxQueueLength));
  FLOTILLA_RETURN_IF_ERROR(InRange("NodeHostConfig.max_proposal_queue_bytes",
                                   c.max_proposal_queue_bytes, 1, UINT64_MAX));
  // A proposal larger than the queue's byte bound could never be queued.
  FLOTILLA_RETURN_IF_ERROR(
      InRange("NodeHostConfig.max_entry_bytes", c.max_entry_bytes, 1,
              std::min<uint64_t>(c.max_proposal_queue_bytes, kMaxEntryBytesLimit)));
  FLOTILLA_RETURN_IF_ERROR(InRange("NodeHostConfig.max_concurrent_campaigns",
                                   c.max_concurrent_campaigns, 1, UINT32_MAX));
  const int tls_files = !c.tls_ca_file.empty() + !c.tls_cert_file.empty() + !c.tls_key_file.empty();
  if (tls_files != 0 && tls_files != 3) {
    // Two of three would silently mean plaintext.
    return Invalid(
        "NodeHostConfig.tls_ca_file, tls_cert_file, tls_key_file",
        "must be all set (mutual TLS) or all empty, not " + std::to_string(tls_files) + " of 3");
  }
  FLOTILLA_RETURN_IF_ERROR(ValidatePeerLimits(c));
  return ValidatePeerAuth(c, tls_files == 3);
}

Status Validate(const ShardConfig& c) {
  if (c.shard_id == 0) return Invalid("ShardConfig.shard_id", "must be > 0");
  if (c.replica_id == 0) return Invalid("ShardConfig.replica_id", "must be > 0");
  FLOTILLA_RETURN_IF_ERROR(
      InRange("ShardConfig.heartbeat_rtt", c.heartbeat_rtt, 1, kMaxElectionRtt - 1));
  if (c.election_rtt <= c.heartbeat_rtt) {
    return Invalid("ShardConfig.election_rtt", "(" + std::to_string(c.election_rtt) +
                                                   ") must exceed heartbeat_rtt (" +
                                                   std::to_string(c.heartbeat_rtt) + ")");
  }
  FLOTILLA_RETURN_IF_ERROR(InRange("ShardConfig.election_rtt", c.election_rtt, 2, kMaxElectionRtt));
  // The core counts idle ticks up to their product in 32 bits.
  FLOTILLA_RETURN_IF_ERROR(InRange("ShardConfig.quiesce_after_election_timeouts",
                                   c.quiesce_after_election_timeouts, 0,
                                   UINT32_MAX / c.election_rtt));
  // The core stops the process on a lease without check_quorum.
  if (c.lease_read && !c.check_quorum)
    return Invalid("ShardConfig.lease_read", "requires check_quorum");
  FLOTILLA_RETURN_IF_ERROR(
      InRange("ShardConfig.max_inflight_msgs", c.max_inflight_msgs, 1, UINT32_MAX));
  FLOTILLA_RETURN_IF_ERROR(
      InRange("ShardConfig.max_msg_bytes", c.max_msg_bytes, 1, kMaxEntryBytesLimit));
  return Status::Ok();
}

bool IsLoopbackAddress(std::string_view address) {
  const size_t colon = address.rfind(':');
  std::string_view host = colon == std::string_view::npos ? address : address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "localhost" || host == "::1") return true;
  // 127.a.b.c: four dotted decimal parts, the first 127.
  if (host.substr(0, 4) != "127.") return false;
  int dots = 0;
  for (char ch : host) {
    if (ch == '.') {
      ++dots;
    } else if (ch < '0' || ch > '9') {
      return false;
    }
  }
  return dots == 3;
}

Status NodeHostConfig::Validate() const { return flotilla::Validate(*this); }

Status ShardConfig::Validate() const { return flotilla::Validate(*this); }

std::string_view ReplicaRoleName(ReplicaRole role) {
  switch (role) {
    case ReplicaRole::kFollower:
      return "follower";
    case ReplicaRole::kCandidate:
      return "candidate";
    case ReplicaRole::kPreCandidate:
      return "pre-candidate";
    case ReplicaRole::kLeader:
      return "leader";
    case ReplicaRole::kNonVoting:
      return "non-voting";
    case ReplicaRole::kWitness:
      return "witness";
  }
  return "unknown";
}

}  // namespace flotilla
