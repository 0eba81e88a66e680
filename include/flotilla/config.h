// Configuration of a NodeHost and of each shard replica it runs. Every bound
// names its unit.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "flotilla/raft_port_limits.h"
#include "flotilla/status.h"

namespace flotilla {

class EventListener;

struct NodeHostConfig {
  // Where the LogDB and snapshots live. Required.
  std::string data_dir;
  // Optional separate directory for the LogDB's write-ahead log.
  std::string wal_dir;
  // host:port this NodeHost listens on for Raft traffic (port 0: any free
  // port; NodeHost::raft_address() tells which).
  std::string raft_address = "127.0.0.1:0";
  // The length of one logical tick in milliseconds.
  uint64_t rtt_ms = 10;
  // NodeHosts with different deployment ids refuse each other.
  uint64_t deployment_id = 1;
  // Step workers own disjoint shard sets (shard_id % step_workers); 0: cores.
  uint32_t step_workers = 0;
  // Apply workers run state machines (shard_id % apply_workers); 0: cores.
  uint32_t apply_workers = 0;
  // Bounded queues per replica: proposals and reads waiting for the step
  // worker, and inbound messages.
  uint32_t max_proposal_queue_length = 16384;
  uint32_t max_inbound_queue_length = 16384;
  // Payload bytes of proposals waiting in one replica's queue.
  uint64_t max_proposal_queue_bytes = 64 << 20;
  // Largest accepted proposal payload.
  uint64_t max_entry_bytes = 8 << 20;
  // Cap on replicas of this NodeHost campaigning at once after a restart.
  uint32_t max_concurrent_campaigns = 64;
  // Mutual TLS between NodeHosts (all three set: on).
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  // With TLS: the names (a DNS or IP subjectAltName, or the subject's CN) of
  // the peer NodeHosts' certificates. Only a certificate holding one of them
  // may open Raft and snapshot streams to this NodeHost, and it dials only
  // servers whose certificate holds one. Empty: any certificate tls_ca_file
  // signed, a client's included, which is safe only when that CA signs
  // NodeHosts and nothing else (docs/security.md).
  std::vector<std::string> tls_peer_names;
  // A secret shared by every NodeHost of the deployment (the deployment id is
  // public and never a credential): when set, every stream carries it and a
  // stream without it, or with another, is refused. The peers' only
  // authentication without TLS; with TLS, a second one. Never logged nor
  // reported. Empty: none.
  std::string deployment_secret;
  // Without TLS anyone who reaches the raft port can act as a member of every
  // shard (docs/security.md), so Create refuses plaintext on a raft address
  // that is not a loopback address (127.0.0.0/8, ::1, localhost) unless this
  // is set: for a network that is private by other means.
  bool insecure = false;
  // Free bytes the file systems of data_dir and wal_dir must keep, like
  // etcd's --quota-backend-bytes alarm but on free space: below it this
  // NodeHost refuses new proposals (NoSpace, with the figures), drops the
  // appends and forwarded proposals its peers send, and fails incoming
  // snapshot streams, before RocksDB cannot write at all; writes resume by
  // themselves once space is freed. Checked every storage_check_interval_ms
  // (docs/nodehost.md, "Storage"). 0: off. Not checked with an in-memory
  // LogDB.
  uint64_t min_free_bytes = uint64_t{256} << 20;
  uint64_t storage_check_interval_ms = 1000;
  // What one peer may hold open on the raft port: its snapshot streams and
  // Batches streams, and the bytes they carry (flotilla/raft_port_limits.h,
  // docs/security.md "Bounded cost"). A stream beyond a bound is refused and
  // counted (NodeHostMetrics::streams_refused, snapshot_receives_ended).
  SnapshotStreamLimits snapshot_streams;
  BatchStreamLimits batch_streams;
  // Use RocksDB with fsync (production) or the in-memory LogDB (tests).
  bool in_memory_logdb = false;
  // Optional: told about leader changes, replicas, snapshots, connections.
  std::shared_ptr<EventListener> listener;

  // The checks of flotilla::Validate(const NodeHostConfig&) below.
  [[nodiscard]] Status Validate() const;
};

struct ShardConfig {
  uint64_t shard_id = 0;
  uint64_t replica_id = 0;
  // Election and heartbeat timeouts in ticks (rtt_ms each).
  uint32_t election_rtt = 10;
  uint32_t heartbeat_rtt = 1;
  bool check_quorum = true;
  bool pre_vote = true;
  // Lease reads: NodeHost::Read on the leader is answered from the leader's
  // commit index without a heartbeat round while a quorum acknowledged the
  // leader within its current check-quorum window (the lease); otherwise,
  // and on a leader that has just woken from quiescence, it falls back to a
  // ReadIndex heartbeat round. Cheaper, but linearizable only while the
  // hosts' clocks advance at similar rates (ReadIndex needs no such
  // assumption). REQUIRES: check_quorum (StartReplica refuses otherwise).
  bool lease_read = false;
  // Quiesce after this many election timeouts without activity (0: never).
  uint32_t quiesce_after_election_timeouts = 0;
  // Bounds handed to the core.
  uint64_t max_uncommitted_bytes = 64 << 20;
  // Bytes proposed through this replica while leader and not yet applied by
  // its state machine: a slow state machine makes proposals come back as
  // dropped instead of growing memory without bound (0: no limit).
  uint64_t max_unapplied_bytes = 256 << 20;
  uint32_t max_inflight_msgs = 256;
  uint64_t max_msg_bytes = 2 << 20;
  // Take a snapshot every this many applied entries (0: never), then keep
  // this many entries before the snapshot index in the log for slow
  // followers (older ones are compacted away).
  uint64_t snapshot_entries = 0;
  uint64_t compaction_overhead = 5000;

  // The checks of flotilla::Validate(const ShardConfig&) below.
  [[nodiscard]] Status Validate() const;
};

// The members a new shard starts with: replica id -> raft address.
using Members = std::map<uint64_t, std::string>;

// Limits that Validate enforces besides the per-field rules above.
inline constexpr uint64_t kMaxRttMs = 60'000;              // one tick at most a minute
inline constexpr uint32_t kMaxWorkers = 1024;              // step_workers, apply_workers
inline constexpr uint32_t kMaxQueueLength = 1u << 24;      // the two queue lengths
inline constexpr uint32_t kMaxElectionRtt = 1u << 20;      // ticks
inline constexpr uint64_t kMaxEntryBytesLimit = 1u << 30;  // max_entry_bytes, max_msg_bytes
inline constexpr size_t kMinSecretBytes = 16;              // deployment_secret, when set
inline constexpr size_t kMaxSecretBytes = 4096;
inline constexpr size_t kMaxPeerNames = 1024;        // tls_peer_names entries
inline constexpr size_t kMaxPeerNameBytes = 255;     // one entry
inline constexpr size_t kMaxStreamLimit = 1u << 16;  // the stream counts of the limits
inline constexpr uint64_t kMaxStreamTimeoutMs = 7 * 24 * 3600'000;  // a snapshot stream's deadlines

// Checks every field of a NodeHostConfig. NodeHost::Create calls it, so an
// invalid config is refused before anything starts. Returns InvalidArgument
// naming the field and the rule it breaks:
//  - data_dir and raft_address are set;
//  - 1 <= rtt_ms <= kMaxRttMs; step_workers, apply_workers <= kMaxWorkers;
//  - 1 <= max_proposal_queue_length, max_inbound_queue_length <= kMaxQueueLength;
//  - 1 <= max_entry_bytes <= min(max_proposal_queue_bytes, kMaxEntryBytesLimit);
//  - max_concurrent_campaigns >= 1 (0 would mean no replica ever campaigns);
//  - the three TLS files are all set or all empty;
//  - tls_peer_names only with TLS, at most kMaxPeerNames names of 1 to
//    kMaxPeerNameBytes printable ASCII bytes without spaces;
//  - deployment_secret empty, or kMinSecretBytes to kMaxSecretBytes
//    printable ASCII bytes without spaces (it travels in gRPC metadata);
//  - snapshot_streams: 1 <= max_streams_per_peer <= max_streams <=
//    kMaxStreamLimit, max_bytes_per_peer >= 1, 1 <= idle_timeout_ms <=
//    total_timeout_ms <= kMaxStreamTimeoutMs, evict_idle_ms <= idle_timeout_ms;
//  - batch_streams: 2 <= max_streams_per_peer <= kMaxStreamLimit (a peer
//    needs its two lanes), max_inflight_bytes_per_peer >= 1.
// deployment_id, wal_dir, in_memory_logdb and listener take any value.
// Thread-safe (a pure function).
[[nodiscard]] Status Validate(const NodeHostConfig& c);

// Checks every field of a ShardConfig; StartReplica calls it first. Returns
// InvalidArgument naming the field and the rule:
//  - shard_id and replica_id are > 0;
//  - 1 <= heartbeat_rtt < election_rtt <= kMaxElectionRtt;
//  - election_rtt * quiesce_after_election_timeouts fits in 32 bits;
//  - lease_read requires check_quorum;
//  - 1 <= max_inflight_msgs; 1 <= max_msg_bytes <= kMaxEntryBytesLimit.
// check_quorum, pre_vote, snapshot_entries (0: never), compaction_overhead
// and the two byte bounds max_uncommitted_bytes and max_unapplied_bytes
// (0: no limit) take any value.
[[nodiscard]] Status Validate(const ShardConfig& c);

// Checks that `address` is host:port with a non-empty host and a port of
// decimal digits only, in [min_port, 65535]. `field` names it in the error.
[[nodiscard]] Status ValidateHostPort(std::string_view field, std::string_view address,
                                      uint32_t min_port);

// True when the host of `address` (host:port) is a loopback address:
// 127.0.0.0/8, ::1 (written [::1]) or localhost.
bool IsLoopbackAddress(std::string_view address);

}  // namespace flotilla
