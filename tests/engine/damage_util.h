// Damage at rest for engine tests: open the RocksDB LogDB of a closed
// NodeHost and rewrite one of its records through RocksDB, so that
// RocksDB's own checksums pass and ours fail.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "logdb/kv_logdb.h"
#include "logdb/rocks_logdb.h"
#include "tests/logdb/test_util.h"

namespace flotilla::testing {

// Opens the RocksDB LogDB under `data_dir` (its NodeHost closed) and runs `f`.
inline void WithLogDB(const std::string& data_dir, const std::function<void(logdb::KvLogDB*)>& f) {
  logdb::RocksOptions o;
  o.dir = data_dir + "/logdb";
  auto db = logdb::OpenRocksLogDB(o);
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  auto* kv = dynamic_cast<logdb::KvLogDB*>(db->get());
  ASSERT_NE(kv, nullptr);
  f(kv);
}

// Flips the last bit of the command of entry `index` of `shard`'s `replica`.
inline void FlipEntryBit(logdb::KvLogDB* kv, uint64_t shard, uint64_t replica, uint64_t index) {
  std::string key;
  size_t offset = 0;
  size_t size = 0;
  ASSERT_TRUE(kv->LocateEntryForTesting(shard, replica, index, &key, &offset, &size).ok());
  ASSERT_TRUE(logdb::testing::FlipStoredBit(kv->store_for_testing(), key, (offset + size - 1) * 8));
}

}  // namespace flotilla::testing
