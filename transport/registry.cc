#include "transport/registry.h"

#include <mutex>

namespace flotilla::transport {

void Registry::Add(raft::ShardId shard, raft::ReplicaId replica, std::string address) {
  std::unique_lock lock(mu_);
  map_[Key{shard, replica}] = std::move(address);
}

void Registry::Remove(raft::ShardId shard, raft::ReplicaId replica) {
  std::unique_lock lock(mu_);
  map_.erase(Key{shard, replica});
}

void Registry::RemoveShard(raft::ShardId shard) {
  std::unique_lock lock(mu_);
  std::erase_if(map_, [shard](const auto& kv) { return kv.first.shard == shard; });
}

std::optional<std::string> Registry::Resolve(raft::ShardId shard, raft::ReplicaId replica) const {
  std::shared_lock lock(mu_);
  auto it = map_.find(Key{shard, replica});
  if (it == map_.end()) return std::nullopt;
  return it->second;
}

size_t Registry::size() const {
  std::shared_lock lock(mu_);
  return map_.size();
}

void Registry::ResolveMany(
    size_t n, const std::function<std::pair<raft::ShardId, raft::ReplicaId>(size_t)>& key_of,
    const std::function<void(size_t, const std::string*)>& fn) const {
  std::shared_lock lock(mu_);
  for (size_t i = 0; i < n; ++i) {
    auto [shard, replica] = key_of(i);
    auto it = map_.find(Key{shard, replica});
    fn(i, it == map_.end() ? nullptr : &it->second);
  }
}

}  // namespace flotilla::transport
