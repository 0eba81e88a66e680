// Configuration of a Transport. Every bound has its unit in its name.
//
// Thread-safety: a plain value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "flotilla/raft_port_limits.h"

namespace flotilla::transport {

// Mutual TLS between NodeHosts. When enabled, both sides present a
// certificate signed by the CA in `ca_path` and verify the peer's; a peer
// without a valid certificate cannot open any stream. The dialer also checks
// that the server's certificate is valid for the address it dialled.
struct TlsConfig {
  bool enabled = false;
  std::string ca_path;    // PEM: the CA that signs every NodeHost's certificate
  std::string cert_path;  // PEM: this NodeHost's certificate chain
  std::string key_path;   // PEM: this NodeHost's private key
  // The names (a DNS or IP subjectAltName, or the subject's CN) of the
  // certificates that may open streams to this NodeHost, and that it accepts
  // from the servers it dials. Empty: any certificate the CA signed, which
  // is safe only when that CA signs the cluster's NodeHosts and nothing else.
  std::vector<std::string> peer_names;
};

struct TransportConfig {
  // Where this NodeHost listens ("host:port"; port 0 lets the OS choose, see
  // Transport::address() for the result). The in-process transport uses it as
  // the NodeHost's name on the InProcNetwork.
  std::string listen_address = "127.0.0.1:0";
  // Two clusters with different ids refuse each other's streams.
  uint64_t deployment_id = 0;
  // Received snapshots are written below this directory (created if absent).
  std::string snapshot_dir;

  // Per remote NodeHost and lane (control or data): messages waiting to be
  // sent. A Send beyond either bound is dropped and reported to the caller.
  size_t max_queue_messages = 8192;
  size_t max_queue_bytes = 64u << 20;
  // A batch written to a stream holds at most this many bytes (as counted by
  // raft::Message::SizeBytes), except that one message always fits alone.
  size_t max_batch_bytes = 1u << 20;
  // Largest gRPC message accepted: bounds a single batch or snapshot chunk.
  size_t max_receive_message_bytes = 128u << 20;
  // Incoming data that exceeds these is rejected as corrupt.
  size_t max_entries_per_message = 1u << 16;
  size_t max_members_per_list = 1024;
  // Messages decoded from one received batch; at least max_batch_bytes / 16.
  size_t max_messages_per_batch = 1u << 16;

  // Snapshots.
  size_t snapshot_chunk_bytes = 1u << 20;
  size_t max_concurrent_snapshot_sends = 4;
  size_t max_queued_snapshot_sends = 64;
  uint64_t max_snapshot_bytes = uint64_t{64} << 30;
  size_t max_snapshot_files = 4096;
  // A sent snapshot stream is abandoned after this long.
  uint64_t snapshot_timeout_ms = 10 * 60 * 1000;
  // Incoming snapshot streams and Batches streams: how many at once, per
  // peer, and what they may hold (flotilla/raft_port_limits.h;
  // docs/security.md, "Bounded cost").
  SnapshotStreamLimits snapshot_receive;
  BatchStreamLimits batch_receive;
  // A received stream fails when the snapshot directory's file system has
  // fewer free bytes than this (0: not checked).
  uint64_t snapshot_min_free_bytes = 0;

  // Connections.
  uint64_t connect_timeout_ms = 2000;
  uint64_t reconnect_backoff_initial_ms = 50;
  uint64_t reconnect_backoff_max_ms = 5000;
  // How often an idle lane checks that its connection is still up.
  uint64_t idle_check_interval_ms = 100;
  uint64_t keepalive_interval_ms = 10000;
  uint64_t keepalive_timeout_ms = 5000;
  // How long Stop() lets in-flight calls finish before cancelling them.
  uint64_t shutdown_grace_ms = 200;

  TlsConfig tls;
  // When set, every stream carries it (request metadata) and an incoming
  // stream without it, or with another, is refused: the peers' only
  // credential on plaintext loopback. Never logged. Printable ASCII.
  std::string secret;
};

}  // namespace flotilla::transport
