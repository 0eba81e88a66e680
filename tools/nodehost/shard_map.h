// ShardMap: which shard holds a key. Shared by the daemon and its clients
// (the CLI fetches the map with KV.ShardMap and routes itself).
//
// shard = shard_ids[fnv1a64(HashPart(key)) % shard_ids.size()], where
// HashPart is the text between the first '{' and the next '}' when that is
// non-empty ("user{42}/name" and "user{42}/mail" share a shard, so a prefix
// scan of "user{42}/" reads one shard), otherwise the whole key.
//
// Thread-safety: immutable after construction; safe to share.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace flotilla::nodehost {

uint64_t Fnv1a64(std::string_view bytes);
std::string_view HashPart(std::string_view key);

class ShardMap {
 public:
  ShardMap() = default;
  // `shard_ids` sorted and unique (the constructor sorts them).
  explicit ShardMap(std::vector<uint64_t> shard_ids);

  bool empty() const { return shard_ids_.empty(); }
  const std::vector<uint64_t>& shard_ids() const { return shard_ids_; }
  // REQUIRES: !empty()
  uint64_t ShardOf(std::string_view key) const;
  // The shard every key with `prefix` maps to, when the prefix contains a
  // complete hash tag; nullopt when keys with the prefix may be anywhere.
  std::optional<uint64_t> ShardOfPrefix(std::string_view prefix) const;

 private:
  std::vector<uint64_t> shard_ids_;
};

}  // namespace flotilla::nodehost
