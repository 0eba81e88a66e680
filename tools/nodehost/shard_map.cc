#include "tools/nodehost/shard_map.h"

#include <algorithm>
#include <cstdlib>

namespace flotilla::nodehost {

uint64_t Fnv1a64(std::string_view bytes) {
  uint64_t h = 14695981039346656037ull;
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

std::string_view HashPart(std::string_view key) {
  const size_t open = key.find('{');
  if (open == std::string_view::npos) return key;
  const size_t close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

ShardMap::ShardMap(std::vector<uint64_t> shard_ids) : shard_ids_(std::move(shard_ids)) {
  std::sort(shard_ids_.begin(), shard_ids_.end());
  shard_ids_.erase(std::unique(shard_ids_.begin(), shard_ids_.end()), shard_ids_.end());
}

uint64_t ShardMap::ShardOf(std::string_view key) const {
  if (shard_ids_.empty()) std::abort();  // REQUIRES violated: a programmer error
  return shard_ids_[Fnv1a64(HashPart(key)) % shard_ids_.size()];
}

std::optional<uint64_t> ShardMap::ShardOfPrefix(std::string_view prefix) const {
  const size_t open = prefix.find('{');
  if (open == std::string_view::npos) return std::nullopt;
  const size_t close = prefix.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return std::nullopt;
  return ShardOf(prefix);
}

}  // namespace flotilla::nodehost
