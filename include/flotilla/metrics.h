// Counters and latency histograms of a NodeHost, for monitoring (the nodehost
// daemon renders them as Prometheus text at /metrics).
//
// NodeHost::GetMetrics() returns a copy: counters only ever grow (until the
// NodeHost is recreated); gauges are read at the time of the call. Every
// label set is bounded: the figures are per NodeHost, never per key or
// per request.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <string>

namespace flotilla {

// A latency histogram with fixed bucket bounds in microseconds. counts[i]
// counts observations <= kBoundsUs[i] (not cumulative); the last count is the
// overflow bucket (+Inf).
struct LatencyHistogram {
  static constexpr std::array<uint64_t, 18> kBoundsUs = {
      25,    50,    100,    250,    500,    1000,    2500,    5000,    10000,
      25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
  std::array<uint64_t, kBoundsUs.size() + 1> counts{};
  uint64_t count = 0;
  uint64_t sum_us = 0;
};

struct NodeHostMetrics {
  // --- Counters.
  uint64_t proposals = 0;          // proposals accepted into a shard's queue
  uint64_t proposals_refused = 0;  // refused at once: busy, too large, storage failed
  uint64_t proposals_dropped = 0;  // completed as dropped (no leader, limits)
  uint64_t reads = 0;              // linearizable reads accepted
  uint64_t entries_committed = 0;  // committed entries handed to the apply workers
  uint64_t entries_applied = 0;    // entries applied to state machines
  uint64_t saves = 0;              // LogDB writes by the step workers (one per pass)
  uint64_t saved_entries = 0;      // entries in those writes
  uint64_t saved_bytes = 0;        // payload bytes of those entries
  uint64_t messages_sent = 0;      // Raft messages handed to the transport
  uint64_t messages_received = 0;  // Raft messages received for local replicas
  uint64_t messages_dropped = 0;   // received but refused: unknown replica, full queue; or unsent
  uint64_t snapshots_sent = 0;
  uint64_t snapshots_received = 0;
  uint64_t snapshot_bytes_sent = 0;
  uint64_t snapshot_bytes_received = 0;
  uint64_t snapshots_taken = 0;
  uint64_t leader_changes = 0;  // a local replica saw its shard's leader change
  uint64_t campaigns = 0;       // elections started by local replicas
  uint64_t replica_steps = 0;   // replicas visited by the step workers (idle cost)
  // Damaged data at rest found by a checksum (a LogDB record, a snapshot
  // file): each stops the one replica it belongs to.
  uint64_t corruptions = 0;
  // The LogDB resumed writing after its RocksDB had failed a write for want
  // of space (the disk filled past any reserve) and space was freed.
  uint64_t storage_resumes = 0;
  // A snapshot of this NodeHost's own failed its checksums while it was sent
  // to a follower: it is never sent again, and a fresh one is taken.
  uint64_t snapshots_damaged = 0;
  // Raft messages from peers that failed validation and were dropped before
  // the protocol core saw them, by reason (see docs/security.md): the reason
  // names are stable metric labels. Zero counts are listed too.
  std::map<std::string, uint64_t> messages_rejected;
  // Streams from peers, or connections to them, refused by peer
  // authentication (docs/security.md), by reason: deployment_id,
  // peer_not_listed, server_not_listed, server_host_mismatch, no_secret,
  // wrong_secret. Zero counts are listed too.
  std::map<std::string, uint64_t> streams_refused;
  // --- Latency.
  LatencyHistogram save_latency;   // one LogDB::Save, encoding to durable return
  LatencyHistogram fsync_latency;  // one fsync of the LogDB's write-ahead log (RocksDB only)
  // --- Gauges.
  uint64_t shards = 0;                // replicas running on this NodeHost
  uint64_t leaders = 0;               // of which lead their shard
  uint64_t quiesced = 0;              // of which are quiesced
  uint64_t campaigning = 0;           // of which hold a campaign slot now
  uint64_t proposal_queue_depth = 0;  // proposals and reads waiting for a step worker
  uint64_t apply_queue_depth = 0;     // batches of committed entries waiting to be applied
  uint64_t log_cache_bytes = 0;       // entries kept in memory for replication and applying
  bool storage_failed = false;        // the LogDB failed; writes are refused
  bool storage_low = false;           // free space below min_free_bytes; writes are refused
  uint64_t storage_free_bytes = 0;    // least free space of data_dir and wal_dir, last checked
  // Incoming snapshot streams (transport): open now, and ended or refused
  // since start by reason (busy, peer_streams, peer_bytes, idle, total,
  // evicted).
  uint64_t snapshot_receives_active = 0;
  std::map<std::string, uint64_t> snapshot_receives_ended;
};

}  // namespace flotilla
