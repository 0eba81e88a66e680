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
  // A membership change (add, remove, promote; a joint one counts once)
  // was applied by this replica at log index `index`.
  virtual void MembershipChanged(uint64_t /*shard_id*/, uint64_t /*replica_id*/,
                                 uint64_t /*index*/) {}
  // This replica took a snapshot at `index` and recorded it durably.
  virtual void SnapshotCreated(uint64_t /*shard_id*/, uint64_t /*replica_id*/, uint64_t /*index*/) {
  }
  // This replica's state machine was restored from the snapshot at `index`
  // (one received from the leader); a restart's restore is not reported.
  virtual void SnapshotRecovered(uint64_t /*shard_id*/, uint64_t /*replica_id*/,
                                 uint64_t /*index*/) {}
  // This replica's log entries up to `index` were compacted away.
  virtual void LogCompacted(uint64_t /*shard_id*/, uint64_t /*replica_id*/, uint64_t /*index*/) {}
  // NodeHost::Close finished: every replica stopped, every thread joined.
  // The last call this NodeHost makes to the listener.
  virtual void NodeHostClosed() {}
};

}  // namespace flotilla
