#include "logdb/rocks_logdb.h"
#include "logdb/latency_recorder.h"

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/sst_file_reader.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>

#include "engine/log/log.h"
#include "logdb/format.h"
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
    // A range deletion starting at a hinted key would corrupt the memtable
    // (ReplicaRecordHint below): a LogDB bug, never a runtime condition.
    if (begin.size() != format::kEntryRangeStartSize) std::abort();
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

// Times every Sync/Fsync of a write-ahead log file (".log").
class TimedFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  TimedFile(std::unique_ptr<rocksdb::FSWritableFile>&& f, LatencyRecorder* rec)
      : FSWritableFileOwnerWrapper(std::move(f)), rec_(rec) {}
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
    const auto t0 = std::chrono::steady_clock::now();
    rocksdb::IOStatus s = target()->Sync(o, d);
    Record(t0);
    return s;
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
    const auto t0 = std::chrono::steady_clock::now();
    rocksdb::IOStatus s = target()->Fsync(o, d);
    Record(t0);
    return s;
  }

 private:
  void Record(std::chrono::steady_clock::time_point t0) {
    rec_->Observe(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
            .count()));
  }
  LatencyRecorder* rec_;
};

class TimedFs final : public rocksdb::FileSystemWrapper {
 public:
  explicit TimedFs(const std::shared_ptr<rocksdb::FileSystem>& base) : FileSystemWrapper(base) {}
  static const char* kClassName() { return "FlotillaTimedFs"; }
  const char* Name() const override { return kClassName(); }

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* d) override {
    return Wrap(f, target()->NewWritableFile(f, o, r, d), r);
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* d) override {
    return Wrap(f, target()->ReopenWritableFile(f, o, r, d), r);
  }
  rocksdb::IOStatus ReuseWritableFile(const std::string& f, const std::string& old,
                                      const rocksdb::FileOptions& o,
                                      std::unique_ptr<rocksdb::FSWritableFile>* r,
                                      rocksdb::IODebugContext* d) override {
    return Wrap(f, target()->ReuseWritableFile(f, old, o, r, d), r);
  }
  LatencyHistogram Read() const { return rec_.Read(); }

 private:
  rocksdb::IOStatus Wrap(const std::string& f, rocksdb::IOStatus s,
                         std::unique_ptr<rocksdb::FSWritableFile>* r) {
    if (s.ok() && f.size() > 4 && f.compare(f.size() - 4, 4, ".log") == 0) {
      *r = std::make_unique<TimedFile>(std::move(*r), &rec_);
    }
    return s;
  }
  LatencyRecorder rec_;
};

// Follows RocksDB's write-stall state (delayed or stopped for compaction),
// and keeps RocksDB from resuming by itself after a full disk.
class StallListener final : public rocksdb::EventListener {
 public:
  void OnStallConditionsChanged(const rocksdb::WriteStallInfo& info) override {
    stalled_.store(info.condition.cur != rocksdb::WriteStallCondition::kNormal,
                   std::memory_order_relaxed);
  }
  // RocksDB's own recovery from NoSpace waits until its SstFileManager sees
  // a whole write buffer (64 MiB here) free, which a small disk never has;
  // and while it waits, DB::Resume answers Busy. The LogDB's owner resumes
  // instead (KvStore::Resume), as soon as a flush can be written.
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason /*reason*/, rocksdb::Status bg_error,
                            bool* auto_recovery) override {
    if (bg_error.IsNoSpace()) *auto_recovery = false;
  }
  bool stalled() const { return stalled_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> stalled_{false};
};

class RocksStore final : public KvStore {
 public:
  RocksStore(std::unique_ptr<rocksdb::DB> db, std::shared_ptr<TimedFs> fs,
             std::unique_ptr<rocksdb::Env> env, std::shared_ptr<StallListener> stall)
      : fs_(std::move(fs)), env_(std::move(env)), stall_(std::move(stall)), db_(std::move(db)) {}
  ~RocksStore() override {
    // Close reports errors a destructor cannot return; a write that mattered
    // has already reported its own.
    db_->Close().PermitUncheckedError();
    db_.reset();
  }

  LatencyHistogram SyncLatency() const override { return fs_ ? fs_->Read() : LatencyHistogram{}; }
  bool Overloaded() const override { return stall_->stalled(); }

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

  // RocksDB names the file of a block that fails its checksum: "... in
  // <path>.sst offset N size M".
  std::string DamagedFileIn(std::string_view message) const override {
    const size_t end = message.find(".sst");
    if (end == std::string_view::npos) return {};
    const size_t begin = message.rfind(' ', end);
    return std::string(message.substr(begin + 1, end + 4 - begin - 1));
  }

  Status KeysOfFile(const std::string& path,
                    const std::function<void(std::string_view key)>& key) override {
    rocksdb::Options opt;
    opt.info_log = NewRocksInfoLogger("sst " + path);
    rocksdb::SstFileReader reader(opt);
    FLOTILLA_RETURN_IF_ERROR(FromRocks(reader.Open(path)));
    rocksdb::ReadOptions ro;
    ro.verify_checksums = false;
    std::unique_ptr<rocksdb::Iterator> it(reader.NewIterator(ro));
    for (it->SeekToFirst(); it->Valid(); it->Next()) key(it->key().ToStringView());
    return FromRocks(it->status());
  }

  // DB::Resume flushes every memtable, which also moves writes to a new
  // write-ahead log: whatever the failed write left in the old one is never
  // replayed, and the old log is deleted once the flush is durable.
  Status Resume() override {
    const rocksdb::Status s = db_->Resume();
    if (s.ok() || s.severity() < rocksdb::Status::Severity::kFatalError) return FromRocks(s);
    // RocksDB 7.8 marks the error unrecoverable when the flush of a failed
    // resume could not create its file: no later Resume succeeds, however
    // much space is freed; a restart reopens the database.
    return Status::IOError("rocksdb gave up resuming after a full disk (" + s.ToString() +
                           "); a restart of the NodeHost reopens the LogDB");
  }

 private:
  // Declared before db_: the database is closed before its Env goes away.
  std::shared_ptr<TimedFs> fs_;
  std::unique_ptr<rocksdb::Env> env_;
  std::shared_ptr<StallListener> stall_;
  std::unique_ptr<rocksdb::DB> db_;
};

class SpdlogRocksLogger final : public rocksdb::Logger {
 public:
  explicit SpdlogRocksLogger(std::string name)
      : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL), name_(std::move(name)) {}
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    // The header is RocksDB's dump of its options at open: not news.
    if (level < GetInfoLogLevel() || level == rocksdb::InfoLogLevel::HEADER_LEVEL) return;
    char buf[1024];
    std::vsnprintf(buf, sizeof(buf), format, ap);
    // Recovery names a damaged write-ahead log only here ("<path>.log:
    // dropping N bytes; Corruption: ..."), not in the status Open returns.
    if (std::strstr(buf, ".log: dropping") != nullptr) {
      std::lock_guard<std::mutex> l(mu_);
      if (wal_damage_.empty()) wal_damage_ = buf;
    }
    Log().log(
        level >= rocksdb::InfoLogLevel::ERROR_LEVEL ? spdlog::level::err : spdlog::level::warn,
        "rocksdb {}: {}", name_, buf);
  }

  // The first damage recovery reported in a write-ahead log, or empty.
  std::string wal_damage() {
    std::lock_guard<std::mutex> l(mu_);
    return wal_damage_;
  }

 private:
  const std::string name_;
  std::mutex mu_;
  std::string wal_damage_;  // guarded by mu_
};

// The memtable insert hint's domain: a replica's entry keys (each save
// appends a batch at a rising index) and its other records (each save writes
// a new version of the hard state); the prefix is the replica. Only keys of
// exactly those two lengths are hinted: RocksDB 7.8 keeps one hint table per
// memtable for point and range-deletion inserts alike, so range deletions
// start at a longer key (format::EntryRangeStart) and are never hinted.
class ReplicaHint final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "flotilla.ReplicaHint"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return rocksdb::Slice(key.data(), format::kReplicaKeySize);
  }
  bool InDomain(const rocksdb::Slice& key) const override {
    return key.size() == format::kReplicaKeySize || key.size() == format::kEntryKeySize;
  }
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
  // A save appends to each saving replica's key range: with a hint kept per
  // replica, the memtable insert resumes from where that replica's previous
  // insert landed instead of searching the whole skip list from the top
  // (docs/logdb.md has the measurement).
  opt.memtable_insert_with_hint_prefix_extractor = std::make_shared<ReplicaHint>();
  // Entries are mostly read right after being written (from the memtable) or
  // in index order on restart; a bloom filter on whole keys serves Term().
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  opt.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // Never a LOG file on the data disk (NewRocksInfoLogger).
  opt.info_log = NewRocksInfoLogger("logdb " + o.dir);
  return opt;
}

// The status of a failed open. Recovery names a damaged write-ahead log only
// in its info log, not in the status Open returns: the name is added (docs/
// logdb.md, "Damage RocksDB finds").
Status OpenFailure(const rocksdb::Status& s, const rocksdb::Options& opt) {
  // TunedOptions made the info logger a SpdlogRocksLogger.
  auto* logger = static_cast<SpdlogRocksLogger*>(opt.info_log.get());
  const std::string wal = s.IsCorruption() ? logger->wal_damage() : std::string();
  if (wal.empty()) return FromRocks(s);
  return Status::Corruption("rocksdb: " + s.ToString() + " in the write-ahead log: " + wal +
                            "; the LogDB is not opened (a damaged record in the middle of "
                            "its write-ahead log is never skipped)");
}

}  // namespace

std::shared_ptr<rocksdb::Logger> NewRocksInfoLogger(std::string name) {
  return std::make_shared<SpdlogRocksLogger>(std::move(name));
}

Result<std::unique_ptr<LogDB>> OpenRocksLogDB(const RocksOptions& options) {
  if (options.dir.empty()) return Status::InvalidArgument("OpenRocksLogDB: dir is empty");
  rocksdb::Options opt = TunedOptions(options);
  // Production file I/O is timed (fsync latency for the metrics); a test's
  // own Env is used as it is.
  std::shared_ptr<TimedFs> fs;
  std::unique_ptr<rocksdb::Env> env;
  if (options.env == nullptr) {
    fs = std::make_shared<TimedFs>(rocksdb::FileSystem::Default());
    env = rocksdb::NewCompositeEnv(fs);
    opt.env = env.get();
  }
  auto stall = std::make_shared<StallListener>();
  opt.listeners.push_back(stall);
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(opt, options.dir, &raw);
  if (!s.ok()) return OpenFailure(s, opt);
  auto store = std::make_unique<RocksStore>(std::unique_ptr<rocksdb::DB>(raw), std::move(fs),
                                            std::move(env), std::move(stall));
  return std::unique_ptr<LogDB>(
      std::make_unique<KvLogDB>(std::move(store), options.sync, "rocksdb"));
}

// Read-only, for the offline inspector: RocksDB replays the write-ahead log
// into memory without writing, and takes no lock, so the caller must make
// sure no daemon writes the database meanwhile (tools/nodehost/logdb_tool.cc).
Result<std::unique_ptr<KvLogDB>> OpenRocksLogDBReadOnly(const std::string& dir,
                                                        const std::string& wal_dir) {
  RocksOptions o;
  o.dir = dir;
  o.wal_dir = wal_dir;
  rocksdb::Options opt = TunedOptions(o);
  opt.create_if_missing = false;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::OpenForReadOnly(opt, dir, &raw);
  if (!s.ok()) return OpenFailure(s, opt);
  auto store = std::make_unique<RocksStore>(std::unique_ptr<rocksdb::DB>(raw), nullptr, nullptr,
                                            std::make_shared<StallListener>());
  return std::make_unique<KvLogDB>(std::move(store), /*sync=*/false, "rocksdb (read-only)");
}

}  // namespace flotilla::logdb
