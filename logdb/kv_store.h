// KvStore: the ordered key-value store under a KvLogDB.
//
// The LogDB logic (record layout, suffix truncation, read semantics,
// poisoning) is written once in KvLogDB over this interface, and runs over
// RocksDB in production and over an in-memory ordered map in tests and the
// simulator. Sharing the logic is why the two LogDBs cannot drift apart; the
// conformance suite then checks the contract on both stores.
//
// Private to logdb/.
//
// Thread-safety: implementations are thread-safe; a Batch is used by one
// thread at a time.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "flotilla/metrics.h"
#include "flotilla/status.h"

namespace flotilla::logdb {

class KvStore {
 public:
  // Writes collected in order and applied atomically by Write.
  class Batch {
   public:
    virtual ~Batch() = default;
    virtual void Put(std::string_view key, std::string_view value) = 0;
    virtual void Delete(std::string_view key) = 0;
    // Removes every key in [begin, end).
    virtual void DeleteRange(std::string_view begin, std::string_view end) = 0;
    // Empties the batch, keeping its buffers for reuse.
    virtual void Clear() = 0;
    virtual size_t Count() const = 0;
  };

  // A snapshot-free cursor over [lower, upper) of the keys.
  class Iterator {
   public:
    virtual ~Iterator() = default;
    // Positions at the first key >= target.
    virtual void Seek(std::string_view target) = 0;
    // Positions at the last key <= target.
    virtual void SeekForPrev(std::string_view target) = 0;
    virtual void Next() = 0;
    virtual bool Valid() const = 0;
    // REQUIRES: Valid(). Views stay valid until the iterator moves.
    virtual std::string_view key() const = 0;
    virtual std::string_view value() const = 0;
    // An error met while iterating (Valid() is then false).
    virtual Status status() const = 0;
  };

  virtual ~KvStore() = default;

  virtual std::unique_ptr<Batch> NewBatch() = 0;
  // Applies `batch` atomically; durable on return when `sync`.
  virtual Status Write(Batch* batch, bool sync) = 0;
  // NotFound when absent.
  virtual Status Get(std::string_view key, std::string* value) = 0;
  virtual std::unique_ptr<Iterator> NewIterator(std::string_view lower, std::string_view upper) = 0;
  // See LogDB::SyncLatency and LogDB::Overloaded.
  virtual LatencyHistogram SyncLatency() const { return {}; }
  virtual bool Overloaded() const { return false; }
  // Takes writes again after a write failed for want of space, once the
  // failed state is cleared durably; an error (NoSpace while the disk is
  // still full) leaves the store refusing writes. See LogDB::Resume.
  virtual Status Resume() { return Status::Ok(); }
  // The store's file that `message` (a read's Corruption) names, or empty.
  virtual std::string DamagedFileIn(std::string_view message) const {
    (void)message;
    return {};
  }
  // Calls `key` with every key of the store's file `path`, read without
  // verifying checksums (so that a damaged block still yields its keys; a
  // damaged key is passed as it is found).
  virtual Status KeysOfFile(const std::string& path,
                            const std::function<void(std::string_view key)>& key) {
    (void)path;
    (void)key;
    return Status::Ok();
  }
};

}  // namespace flotilla::logdb
