#include "logdb/memory_logdb.h"

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "logdb/format.h"

namespace flotilla::logdb {

// An ordered map with atomic batches, a one-level undo of the last write and
// an injectable failure. Thread-safe: every method takes mu_.
class MemoryStore final : public KvStore {
 public:
  class MemBatch final : public Batch {
   public:
    enum class Kind : uint8_t { kPut, kDelete, kDeleteRange };
    struct Op {
      Kind kind;
      std::string a;  // key, or range begin
      std::string b;  // value, or range end
    };
    void Put(std::string_view key, std::string_view value) override {
      ops_.push_back({Kind::kPut, std::string(key), std::string(value)});
    }
    void Delete(std::string_view key) override {
      ops_.push_back({Kind::kDelete, std::string(key), {}});
    }
    void DeleteRange(std::string_view begin, std::string_view end) override {
      ops_.push_back({Kind::kDeleteRange, std::string(begin), std::string(end)});
    }
    void Clear() override { ops_.clear(); }
    size_t Count() const override { return ops_.size(); }
    const std::vector<Op>& ops() const { return ops_; }

   private:
    std::vector<Op> ops_;
  };

  std::unique_ptr<Batch> NewBatch() override { return std::make_unique<MemBatch>(); }

  Status Write(Batch* batch, bool /*sync*/) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (fail_next_) {
      Status s = std::move(*fail_next_);
      fail_next_.reset();
      return s;
    }
    undo_.clear();
    has_undo_ = true;
    ++writes_;
    for (const MemBatch::Op& op : static_cast<MemBatch*>(batch)->ops()) Apply(op);
    return Status::Ok();
  }

  Status Get(std::string_view key, std::string* value) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return Status::NotFound("no such key");
    *value = it->second;
    return Status::Ok();
  }

  std::unique_ptr<Iterator> NewIterator(std::string_view lower, std::string_view upper) override;

  uint64_t writes() {
    std::lock_guard<std::mutex> lock(mu_);
    return writes_;
  }

  void FailNextWrite(Status s) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_next_ = std::move(s);
  }

  bool FlipBit(const std::string& key, size_t bit) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end() || it->second.empty()) return false;
    bit %= it->second.size() * 8;
    it->second[bit / 8] = static_cast<char>(it->second[bit / 8] ^ (1 << (bit % 8)));
    return true;
  }

  bool Undo() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!has_undo_) return false;
    // Restore in reverse so a key changed twice ends with its oldest value.
    for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) {
      if (it->second) {
        map_[it->first] = *it->second;
      } else {
        map_.erase(it->first);
      }
    }
    undo_.clear();
    has_undo_ = false;
    return true;
  }

  // Iterator support: the row at the first key >= target (or, with
  // `before`, the last key <= target) inside [lower, upper), copied out under
  // the lock so that iterators never hold the lock between calls. Returns
  // false when there is none.
  bool Find(std::string_view target, bool before, std::string_view lower, std::string_view upper,
            std::string* key, std::string* value) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.lower_bound(before ? std::min(target, upper) : std::max(target, lower));
    if (before) {
      // Unless `it` is the target itself, the answer is the key before it.
      const bool exact = it != map_.end() && it->first == target && target < upper;
      if (!exact) {
        if (it == map_.begin()) return false;
        --it;
      }
    }
    if (it == map_.end() || it->first < lower || it->first >= upper) return false;
    key->assign(it->first);
    value->assign(it->second);
    return true;
  }

  // The row after `key` inside [.., upper).
  bool FindNext(const std::string& key, std::string_view upper, std::string* next_key,
                std::string* value) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.upper_bound(key);
    if (it == map_.end() || it->first >= upper) return false;
    next_key->assign(it->first);
    value->assign(it->second);
    return true;
  }

 private:
  // REQUIRES: mu_ is held.
  void Remember(const std::string& key) {
    auto it = map_.find(key);
    undo_.emplace_back(key,
                       it == map_.end() ? std::nullopt : std::optional<std::string>(it->second));
  }

  // REQUIRES: mu_ is held.
  void Apply(const MemBatch::Op& op) {
    switch (op.kind) {
      case MemBatch::Kind::kPut:
        Remember(op.a);
        map_[op.a] = op.b;
        break;
      case MemBatch::Kind::kDelete:
        Remember(op.a);
        map_.erase(op.a);
        break;
      case MemBatch::Kind::kDeleteRange: {
        auto it = map_.lower_bound(op.a);
        while (it != map_.end() && it->first < op.b) {
          undo_.emplace_back(it->first, it->second);
          it = map_.erase(it);
        }
        break;
      }
    }
  }

  std::mutex mu_;
  std::map<std::string, std::string, std::less<>> map_;                   // guarded by mu_
  std::vector<std::pair<std::string, std::optional<std::string>>> undo_;  // guarded by mu_
  bool has_undo_ = false;                                                 // guarded by mu_
  std::optional<Status> fail_next_;                                       // guarded by mu_
  uint64_t writes_ = 0;                                                   // guarded by mu_
};

namespace {

// Not a snapshot: each step looks the store up again, so an iterator sees
// writes made after it was created, as a RocksDB iterator without a snapshot
// may. Each step is O(log n) and copies one row.
class MemIterator final : public KvStore::Iterator {
 public:
  MemIterator(MemoryStore* store, std::string_view lower, std::string_view upper)
      : store_(store), lower_(lower), upper_(upper) {}
  void Seek(std::string_view target) override {
    valid_ = store_->Find(target, false, lower_, upper_, &key_, &value_);
  }
  void SeekForPrev(std::string_view target) override {
    valid_ = store_->Find(target, true, lower_, upper_, &key_, &value_);
  }
  void Next() override { valid_ = store_->FindNext(key_, upper_, &key_, &value_); }
  bool Valid() const override { return valid_; }
  std::string_view key() const override { return key_; }
  std::string_view value() const override { return value_; }
  Status status() const override { return Status::Ok(); }

 private:
  MemoryStore* const store_;
  const std::string lower_;
  const std::string upper_;
  bool valid_ = false;
  std::string key_;
  std::string value_;
};

}  // namespace

std::unique_ptr<KvStore::Iterator> MemoryStore::NewIterator(std::string_view lower,
                                                            std::string_view upper) {
  return std::make_unique<MemIterator>(this, lower, upper);
}

MemoryLogDB::MemoryLogDB() : MemoryLogDB(std::make_unique<MemoryStore>()) {}

MemoryLogDB::MemoryLogDB(std::unique_ptr<MemoryStore> store)
    : KvLogDB(std::move(store), /*sync=*/true, "memory"),
      mem_(static_cast<MemoryStore*>(store_for_testing())) {}

MemoryLogDB::~MemoryLogDB() = default;

void MemoryLogDB::FailNextWrite(Status error) { mem_->FailNextWrite(std::move(error)); }

bool MemoryLogDB::FlipEntryBit(raft::ShardId shard, raft::ReplicaId replica, raft::Index index,
                               size_t bit) {
  std::string key;
  size_t offset = 0;
  size_t size = 0;
  if (!LocateEntryForTesting(shard, replica, index, &key, &offset, &size).ok()) return false;
  return mem_->FlipBit(key, offset * 8 + bit % (size * 8));
}

bool MemoryLogDB::DropLastWrite() {
  if (!mem_->Undo()) return false;
  ForgetVolatileState();
  return true;
}

uint64_t MemoryLogDB::store_writes() const { return mem_->writes(); }

std::unique_ptr<MemoryLogDB> NewMemoryLogDB() { return std::make_unique<MemoryLogDB>(); }

}  // namespace flotilla::logdb
