#include "logdb/rocks_logdb.h"

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <string>
#include <utility>

#include "logdb/kv_logdb.h"

namespace flotilla::logdb {
namespace {

rocksdb::Slice ToSlice(std::string_view s) { return {s.data(), s.size()}; }

Status FromRocks(const rocksdb::Status& s) {
  if (s.ok()) return Status::Ok();
  if (s.IsNoSpace()) return Status::NoSpace("rocksdb: " + s.ToString());
  if (s.IsNotFound()) return Status::NotFound("rocksdb: " + s.ToString());
  if (s.IsCorruption()) return Status::Corruption("rocksdb: " + s.ToString());
  if (s.IsIOError()) return Status::IOError("rocksdb: " + s.ToString());
  if (s.IsBusy() || s.IsTryAgain()) return Status::Busy("rocksdb: " + s.ToString());
  if (s.IsShutdownInProgress()) return Status::Terminated("rocksdb: " + s.ToString());
  if (s.IsInvalidArgument()) return Status::InvalidArgument("rocksdb: " + s.ToString());
  return Status::IOError("rocksdb: " + s.ToString());
}

class RocksBatch final : public KvStore::Batch {
 public:
  void Put(std::string_view key, std::string_view value) override {
    // WriteBatch only fails on a batch above its size limit, which we do not set.
    b_.Put(ToSlice(key), ToSlice(value)).PermitUncheckedError();
  }
  void Delete(std::string_view key) override { b_.Delete(ToSlice(key)).PermitUncheckedError(); }
  void DeleteRange(std::string_view begin, std::string_view end) override {
    b_.DeleteRange(ToSlice(begin), ToSlice(end)).PermitUncheckedError();
  }
  void Clear() override { b_.Clear(); }
  size_t Count() const override { return b_.Count(); }
  rocksdb::WriteBatch* batch() { return &b_; }

 private:
  rocksdb::WriteBatch b_;
};

class RocksIterator final : public KvStore::Iterator {
 public:
  RocksIterator(rocksdb::DB* db, std::string_view lower, std::string_view upper)
      : lower_(lower), upper_(upper), lower_slice_(lower_), upper_slice_(upper_) {
    rocksdb::ReadOptions ro;
    ro.iterate_lower_bound = &lower_slice_;
    ro.iterate_upper_bound = &upper_slice_;
    it_.reset(db->NewIterator(ro));
  }
  void Seek(std::string_view target) override { it_->Seek(ToSlice(target)); }
  void SeekForPrev(std::string_view target) override { it_->SeekForPrev(ToSlice(target)); }
  void Next() override { it_->Next(); }
  bool Valid() const override { return it_->Valid(); }
  std::string_view key() const override { return it_->key().ToStringView(); }
  std::string_view value() const override { return it_->value().ToStringView(); }
  Status status() const override { return FromRocks(it_->status()); }

 private:
  // The bounds must outlive the iterator, which keeps pointers to them.
  std::string lower_;
  std::string upper_;
  rocksdb::Slice lower_slice_;
  rocksdb::Slice upper_slice_;
  std::unique_ptr<rocksdb::Iterator> it_;
};

class RocksStore final : public KvStore {
 public:
  explicit RocksStore(std::unique_ptr<rocksdb::DB> db) : db_(std::move(db)) {}
  ~RocksStore() override {
    // Close reports errors a destructor cannot return; a write that mattered
    // has already reported its own.
    db_->Close().PermitUncheckedError();
  }

  std::unique_ptr<Batch> NewBatch() override { return std::make_unique<RocksBatch>(); }

  Status Write(Batch* batch, bool sync) override {
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    return FromRocks(db_->Write(wo, static_cast<RocksBatch*>(batch)->batch()));
  }

  Status Get(std::string_view key, std::string* value) override {
    rocksdb::PinnableSlice pinned;
    rocksdb::Status s =
        db_->Get(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), ToSlice(key), &pinned);
    if (s.IsNotFound()) return Status::NotFound("no such key");
    if (!s.ok()) return FromRocks(s);
    value->assign(pinned.data(), pinned.size());
    return Status::Ok();
  }

  std::unique_ptr<Iterator> NewIterator(std::string_view lower, std::string_view upper) override {
    return std::make_unique<RocksIterator>(db_.get(), lower, upper);
  }

 private:
  std::unique_ptr<rocksdb::DB> db_;
};

// The reasons for each value are in docs/logdb.md.
rocksdb::Options TunedOptions(const RocksOptions& o) {
  rocksdb::Options opt;
  opt.create_if_missing = true;
  if (o.env != nullptr) opt.env = o.env;
  if (!o.wal_dir.empty()) opt.wal_dir = o.wal_dir;
  // A crash may tear the record being written; anything else wrong in the WAL
  // is corruption of acknowledged data and must stop the open, not be skipped.
  opt.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  opt.write_buffer_size = o.write_buffer_bytes;
  opt.max_write_buffer_number = 4;
  opt.min_write_buffer_number_to_merge = 1;
  opt.max_background_jobs = 2;
  opt.recycle_log_file_num = o.recycle_wal_files;
  opt.enable_pipelined_write = o.pipelined_write;
  opt.compression = o.compress ? rocksdb::kLZ4Compression : rocksdb::kNoCompression;
  opt.level0_file_num_compaction_trigger = 4;
  opt.max_bytes_for_level_base = 4 * o.write_buffer_bytes;
  opt.target_file_size_base = o.write_buffer_bytes;
  // Entries are mostly read right after being written (from the memtable) or
  // in index order on restart; a bloom filter on whole keys serves Term().
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  opt.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return opt;
}

}  // namespace

Result<std::unique_ptr<LogDB>> OpenRocksLogDB(const RocksOptions& options) {
  if (options.dir.empty()) return Status::InvalidArgument("OpenRocksLogDB: dir is empty");
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(TunedOptions(options), options.dir, &raw);
  if (!s.ok()) return FromRocks(s);
  auto store = std::make_unique<RocksStore>(std::unique_ptr<rocksdb::DB>(raw));
  return std::unique_ptr<LogDB>(
      std::make_unique<KvLogDB>(std::move(store), options.sync, "rocksdb"));
}

}  // namespace flotilla::logdb
