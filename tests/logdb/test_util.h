// Helpers shared by the LogDB tests. Not thread-safe.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/raft/types.h"
#include "logdb/kv_store.h"

namespace flotilla::logdb::testing {

// A fresh directory under /tmp, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "flotilla-logdb-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;  // best effort: a leftover temp dir is not a test failure
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Entries [lo, hi] of term `term` whose payload depends on index and term,
// so a test can tell an old entry from its replacement.
inline std::vector<raft::Entry> MakeEntries(raft::Index lo, raft::Index hi, raft::Term term,
                                            size_t payload_bytes = 16) {
  std::vector<raft::Entry> out;
  for (raft::Index i = lo; i <= hi; ++i) {
    raft::Entry e;
    e.index = i;
    e.term = term;
    e.type = raft::EntryType::kNormal;
    e.key = i * 7;
    e.client_id = term;
    e.series_id = i + term;
    e.responded_to = i / 2;
    std::string cmd(payload_bytes, '\0');
    for (size_t b = 0; b < payload_bytes; ++b)
      cmd[b] = static_cast<char>((i * 31 + term * 17 + b) & 0xff);
    e.cmd = std::move(cmd);
    out.push_back(std::move(e));
  }
  return out;
}

// Flips bit `bit` (modulo the value's size in bits) of the value stored
// under `key`, through the store itself, so that the store's own checksums
// (RocksDB's) still pass and only the LogDB's can tell. False when the key
// cannot be read or written.
inline bool FlipStoredBit(KvStore* store, const std::string& key, size_t bit) {
  std::string value;
  if (!store->Get(key, &value).ok() || value.empty()) return false;
  bit %= value.size() * 8;
  value[bit / 8] = static_cast<char>(value[bit / 8] ^ (1 << (bit % 8)));
  auto batch = store->NewBatch();
  batch->Put(key, value);
  return store->Write(batch.get(), true).ok();
}

}  // namespace flotilla::logdb::testing
