// Registry: where each replica lives, (shard, replica) -> NodeHost address.
// The engine adds and removes entries as memberships change; the transport
// resolves the destination of every outgoing message through it.
//
// Thread-safety: thread-safe; lookups take a shared lock.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include "engine/raft/types.h"

namespace flotilla::transport {

class Registry {
 public:
  // Records that `replica` of `shard` lives at `address`, replacing any
  // earlier address.
  void Add(raft::ShardId shard, raft::ReplicaId replica, std::string address);
  // Forgets one replica; no-op if unknown.
  void Remove(raft::ShardId shard, raft::ReplicaId replica);
  // Forgets every replica of `shard`.
  void RemoveShard(raft::ShardId shard);
  // The address of `replica` of `shard`, or nullopt when unknown.
  std::optional<std::string> Resolve(raft::ShardId shard, raft::ReplicaId replica) const;
  size_t size() const;

  // Calls fn(i, address or nullptr) for i in [0, n) under one shared lock, with
  // the key of i given by key_of(i). For resolving a whole pass at once.
  // fn must not call back into the Registry.
  void ResolveMany(size_t n,
                   const std::function<std::pair<raft::ShardId, raft::ReplicaId>(size_t)>& key_of,
                   const std::function<void(size_t, const std::string*)>& fn) const;

 private:
  struct Key {
    raft::ShardId shard;
    raft::ReplicaId replica;
    friend bool operator==(const Key&, const Key&) = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      // Mixes both halves so that shards with the same replica ids spread out.
      uint64_t h = k.shard * 0x9E3779B97F4A7C15ull;
      h ^= (k.replica + 0x632BE59BD9B4E019ull) + (h << 6) + (h >> 2);
      return static_cast<size_t>(h);
    }
  };

  mutable std::shared_mutex mu_;
  std::unordered_map<Key, std::string, KeyHash> map_;  // guarded by mu_
};

}  // namespace flotilla::transport
