// BatchStreamBudget: the bounds of incoming Batches streams, per peer and
// over all peers together: how many streams are held open, and how many
// bytes of batches were read and not yet handed to the engine. Without them
// one peer could open streams without end and have a batch of up to
// max_receive_message_bytes decoded on each at once; without the total
// ones, a holder of the deployment secret, which may claim any number of
// source addresses (peer identities without TLS, docs/security.md), could
// do the same as many peers.
//
// Thread-safety: thread-safe; a Stream is used by its stream's reactor only
// (gRPC runs one reaction of a stream at a time).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "flotilla/raft_port_limits.h"
#include "flotilla/status.h"
#include "transport/transport.h"

namespace flotilla::transport {

class BatchStreamBudget {
 public:
  // One admitted stream. Destroying it gives its place back.
  class Stream {
   public:
    ~Stream();
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    // Takes room for one batch of `bytes` (its size as sent): Busy, with
    // `why`, when the peer's batches in flight would exceed
    // max_inflight_bytes_per_peer unless the peer has nothing in flight, or
    // all peers' would exceed max_inflight_bytes unless nothing is in
    // flight at all (one batch always fits alone).
    Status Take(uint64_t bytes, StreamRefusal* why);
    // The batch taken with Take(bytes) was handed to the engine or dropped.
    void Release(uint64_t bytes);
    const std::string& peer() const { return peer_; }

   private:
    friend class BatchStreamBudget;
    Stream(BatchStreamBudget* owner, std::string peer) : owner_(owner), peer_(std::move(peer)) {}
    BatchStreamBudget* const owner_;
    const std::string peer_;
  };

  struct Stats {
    uint64_t refused_streams = 0;  // the peer, or all peers, held their bound of streams
    uint64_t refused_batches = 0;  // the peer's, or all peers', batches in flight were at it
  };

  explicit BatchStreamBudget(BatchStreamLimits limits) : limits_(limits) {}
  BatchStreamBudget(const BatchStreamBudget&) = delete;
  BatchStreamBudget& operator=(const BatchStreamBudget&) = delete;

  // Admits a stream of `peer`, or Busy, with `why`, when all peers hold
  // max_streams or it holds max_streams_per_peer.
  Result<std::unique_ptr<Stream>> Open(std::string_view peer, StreamRefusal* why);
  Stats stats() const;

 private:
  struct Peer {
    size_t streams = 0;
    uint64_t inflight_bytes = 0;
  };

  const BatchStreamLimits limits_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Peer> peers_;  // guarded by mu_; peers with a stream
  size_t streams_ = 0;                           // guarded by mu_; over all peers
  uint64_t inflight_bytes_ = 0;                  // guarded by mu_; over all peers
  Stats stats_;                                  // guarded by mu_
};

}  // namespace flotilla::transport
