// What one peer may cost a NodeHost on its raft port: the bounds of the
// incoming snapshot streams and Batches streams (docs/security.md, "Bounded
// cost"). One definition, used by NodeHostConfig, by the transport's
// configuration and by the daemon's [peer_limits] table, so that there is
// one set of defaults.
//
// A peer is the identity a stream was authenticated with: with TLS, the
// peer-list name its certificate holds (or its names, without a list);
// without TLS, the source address of the stream's header, which only the
// deployment secret keeps outsiders from choosing (docs/security.md).
//
// Thread-safety: plain values.
#pragma once

#include <cstddef>
#include <cstdint>

namespace flotilla {

struct SnapshotStreamLimits {
  // Streams received at once, over all peers.
  size_t max_streams = 8;
  // Streams one peer may have open at once.
  size_t max_streams_per_peer = 4;
  // Bytes one peer's open streams may have written (their temporary files).
  uint64_t max_bytes_per_peer = uint64_t{64} << 30;
  // A stream that delivers nothing for this long is ended (the wait for its
  // first chunk included).
  uint64_t idle_timeout_ms = 30'000;
  // A stream still open after this long is ended, however busy. Keep it above
  // the senders' snapshot timeout (10 min by default).
  uint64_t total_timeout_ms = 20 * 60 * 1000;
  // When every slot is taken, a new stream takes the slot of the stream idle
  // longest, if that one has been idle at least this long: streams that
  // stall cannot keep a live one out even until their idle deadline.
  uint64_t evict_idle_ms = 2'000;
};

struct BatchStreamLimits {
  // Batches streams one peer may hold open at once. A correct NodeHost holds
  // two (its control and data lanes); the rest is room for reconnections
  // whose old streams this side has not yet seen close.
  size_t max_streams_per_peer = 8;
  // Bytes (as sent) of one peer's batches that were read and not yet handed
  // to the engine, over all its streams. A batch beyond it is dropped and its
  // stream ended; a batch that arrives while its peer has nothing in flight
  // is always taken, so one message up to the largest accepted gRPC message
  // still passes.
  uint64_t max_inflight_bytes_per_peer = uint64_t{64} << 20;
  // The same over all peers together. Without TLS a peer's identity is the
  // source address it claims, and a holder of the deployment secret can
  // claim as many as it likes: these bound what all of them hold at once.
  // Batches streams open at once (a correct NodeHost holds two per peer).
  size_t max_streams = 512;
  // Bytes (as sent) of all peers' batches read and not yet handed to the
  // engine. A batch beyond it is dropped and its stream ended, unless
  // nothing is in flight at all (one batch always fits alone).
  uint64_t max_inflight_bytes = uint64_t{256} << 20;
};

}  // namespace flotilla
