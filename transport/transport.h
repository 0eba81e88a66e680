// The transport: how the Raft messages and snapshots of all shards of one
// NodeHost reach the other NodeHosts.
//
// The engine owns a Registry (who lives where), a Handler (what to do with
// what arrives) and one Transport. Two implementations share this contract:
// the gRPC transport (grpc_transport.h) between processes, and the in-process
// transport (inproc_transport.h) for tests and the deterministic simulator.
// See docs/transport.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/raft/types.h"
#include "flotilla/status.h"
#include "transport/registry.h"
#include "transport/snapshot_receiver.h"

namespace flotilla::transport {

// Why a stream to or from a peer NodeHost was refused (docs/security.md). The
// names (StreamRefusalName) are stable metric labels.
enum class StreamRefusal : int {
  kDeploymentId,        // the stream's header names another deployment or version
  kPeerNotListed,       // the client certificate holds no name of the peer list
  kServerNotListed,     // dialling: the server's certificate holds no name of the peer list
  kServerHostMismatch,  // dialling: the server's certificate is not valid for the address dialled
  kNoSecret,            // the stream carries no deployment secret
  kWrongSecret,         // the stream carries another secret
  kPeerBatchStreams,    // the peer holds batch_receive.max_streams_per_peer Batches streams
  kPeerInflightBytes,   // the peer's batches in flight reached
                        // batch_receive.max_inflight_bytes_per_peer
  kSnapshotSender,      // a snapshot stream's sender is no member or not the shard's leader
  kBatchStreams,        // all peers together hold batch_receive.max_streams Batches streams
  kBatchInflightBytes,  // all peers' batches in flight reached batch_receive.max_inflight_bytes
  kCount,
};
std::string_view StreamRefusalName(StreamRefusal r);

// A peer-supplied string made safe for one log line: printable ASCII kept,
// everything else (newlines, escapes, bytes above 0x7e) as \xNN, and at most
// 128 bytes of it.
std::string EscapeForLog(std::string_view in);

// Implemented by the engine. Calls come from transport threads (gRPC) or from
// the thread that drives the InProcNetwork; an implementation must be
// thread-safe and must not block for long: it hands work to its own queues.
class Handler {
 public:
  virtual ~Handler() = default;

  // Messages that arrived from one NodeHost, of any shards, in the order they
  // were sent per shard. The engine routes them to its replicas.
  // `source_address` is that NodeHost's address (the batch header's, checked
  // against the deployment id), which hosts every sender of the batch: a
  // replica can answer a member it has no address for yet.
  virtual void HandleBatch(std::vector<raft::Message>&& messages,
                           const std::string& source_address) = 0;

  // A message to `replica` of `shard` was dropped because its NodeHost could
  // not be reached (or its queue was full). Called at most once per
  // (shard, replica) per failed send pass.
  virtual void HandleUnreachable(raft::ShardId shard, raft::ReplicaId replica) = 0;

  // A snapshot stream's first chunk arrived: its header was accepted and
  // `install` (shard, sender, receiver, term, snapshot metadata) decoded;
  // nothing was written yet. OK when the sender may be streaming to that
  // replica at all (a member of the shard, and plausibly its leader in a
  // term at least the replica's); otherwise Rejected saying why, and the
  // stream is refused before a byte reaches the disk. The snapshot is checked
  // again in full once received (HandleSnapshot and the engine's inbound
  // checks). `source_address` as in HandleBatch. The default admits all.
  virtual Status AdmitSnapshot(const raft::Message& install, const std::string& source_address) {
    (void)install;
    (void)source_address;
    return Status::Ok();
  }

  // A snapshot for `install.to` was received in full, verified and renamed
  // into `snapshot_path` (a directory holding the snapshot's files). The
  // engine owns the directory from now on.
  virtual void HandleSnapshot(raft::Message install, std::string snapshot_path) = 0;

  // Sender side: the snapshot to `replica` of `shard` finished (failed =
  // false) or failed (failed = true).
  virtual void HandleSnapshotStatus(raft::ShardId shard, raft::ReplicaId replica, bool failed) = 0;

  // The connection to the NodeHost at `address` came up or went down.
  virtual void HandleConnectionUp(const std::string& address) { (void)address; }
  virtual void HandleConnectionDown(const std::string& address) { (void)address; }

  // A stream from a peer, or a connection to one, was refused for `why`
  // (counted in the engine's metrics; the transport logs it).
  virtual void HandleStreamRefused(StreamRefusal why) { (void)why; }
};

// The bytes of one snapshot, as a sequence of named files. A snapshot on disk
// is read with NewFileSnapshotSource; an on-disk state machine can implement
// this interface to stream straight from itself.
//
// Thread-safety: used by one thread at a time.
class SnapshotSource {
 public:
  virtual ~SnapshotSource() = default;
  // Moves to the next file and sets *name (a plain file name: no '/', not
  // "." or ".."). Returns false when there are no more files.
  virtual Result<bool> NextFile(std::string* name) = 0;
  // Appends up to `max_bytes` of the current file to *out and returns how
  // many; 0 means the current file has ended.
  virtual Result<size_t> Read(size_t max_bytes, std::string* out) = 0;
};

// Reads the snapshot at `path`: a single file, or a directory whose regular
// files (not recursively, in name order) make up the snapshot.
Result<std::unique_ptr<SnapshotSource>> NewFileSnapshotSource(const std::string& path);

// One snapshot to send: `install` is the kInstallSnapshot message (with
// shard_id, from, to and the snapshot's metadata); `source` yields its bytes.
struct SnapshotJob {
  raft::Message install;
  std::unique_ptr<SnapshotSource> source;
};

// A (shard, replica) whose messages were dropped.
struct DroppedTarget {
  raft::ShardId shard_id = 0;
  raft::ReplicaId replica_id = 0;
  friend bool operator==(const DroppedTarget&, const DroppedTarget&) = default;
};

// Thread-safety: every method may be called from any thread, concurrently,
// between Start() and Stop().
class Transport {
 public:
  virtual ~Transport() = default;

  // Starts listening and sending. Fails when the address cannot be bound or
  // the TLS files cannot be read.
  virtual Status Start() = 0;
  // Stops sending and receiving; queued messages are dropped and in-flight
  // snapshots fail. Handlers are not called after Stop() returns. Idempotent.
  virtual void Stop() = 0;

  // The address this NodeHost is reachable at (with the port the OS chose).
  virtual std::string address() const = 0;

  // Queues `m` for m.to of m.shard_id without blocking. Returns false when it
  // was dropped: the address is unknown to the Registry, the bounded queue
  // of that NodeHost is full, the transport is stopped, or m is a
  // kInstallSnapshot (those go through SendSnapshot). The caller then
  // reports the peer unreachable to its replica.
  virtual bool Send(raft::Message&& m) = 0;

  // Send() for a whole pass at once, with one lock per destination queue
  // instead of one per message. Moves the messages out of `messages` and
  // clears it (its capacity stays with the caller). Appends the targets of
  // dropped messages to *dropped (may be null), deduplicated.
  virtual void SendBatch(std::vector<raft::Message>& messages,
                         std::vector<DroppedTarget>* dropped) = 0;

  // Starts streaming a snapshot to job.install.to. Returns an error at once
  // when the job is malformed, the address is unknown, or too many snapshots
  // are queued (Busy); otherwise the outcome arrives later through
  // Handler::HandleSnapshotStatus.
  virtual Status SendSnapshot(SnapshotJob job) = 0;

  // The admission control of incoming snapshot streams (zero where a
  // transport has none).
  virtual SnapshotStreamStats SnapshotReceiveStats() const { return {}; }
};

}  // namespace flotilla::transport
