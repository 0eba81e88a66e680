// EventListener: notifications for the program that embeds a NodeHost.
//
// Called from the NodeHost's own threads (step workers, apply workers,
// transport threads): implementations must be thread-safe, must return
// quickly and must not call back into the NodeHost synchronously.
#pragma once

#include <cstdint>
#include <string>

namespace flotilla {

class EventListener {
 public:
  virtual ~EventListener() = default;
  // `leader` is 0 when the shard has no known leader.
  virtual void LeaderChanged(uint64_t /*shard_id*/, uint64_t /*replica_id*/, uint64_t /*leader*/,
                             uint64_t /*term*/) {}
  virtual void ReplicaStarted(uint64_t /*shard_id*/, uint64_t /*replica_id*/) {}
  virtual void ReplicaStopped(uint64_t /*shard_id*/, uint64_t /*replica_id*/) {}
  // A snapshot stream this replica sent to `to` ended.
  virtual void SnapshotSent(uint64_t /*shard_id*/, uint64_t /*to*/, bool /*failed*/) {}
  virtual void SnapshotReceived(uint64_t /*shard_id*/, uint64_t /*replica_id*/,
                                uint64_t /*index*/) {}
  virtual void ConnectionUp(const std::string& /*address*/) {}
  virtual void ConnectionDown(const std::string& /*address*/) {}
};

}  // namespace flotilla
