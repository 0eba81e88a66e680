#include "logdb/fault_fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

// Returns the injected failure, if any, from a function returning IOStatus.
#define FLOTILLA_FAULT_CHECK(expr)                 \
  do {                                             \
    rocksdb::IOStatus fault_status_ = (expr);      \
    if (!fault_status_.ok()) return fault_status_; \
  } while (0)

namespace flotilla::logdb {
namespace {

// Passes every call through, after asking FaultFs whether it should fail, and
// reports appended and synced lengths back to it.
class FaultFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  FaultFile(std::unique_ptr<rocksdb::FSWritableFile> base, FaultFs* fs, std::string fname,
            uint64_t size)
      : FSWritableFileOwnerWrapper(std::move(base)),
        fs_(fs),
        fname_(std::move(fname)),
        size_(size) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    FLOTILLA_FAULT_CHECK(fs_->BeforeAppend());
    rocksdb::IOStatus s = target()->Append(data, options, dbg);
    if (s.ok()) Grew(size_ + data.size());
    return s;
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    FLOTILLA_FAULT_CHECK(fs_->BeforeAppend());
    rocksdb::IOStatus s = target()->Append(data, options, info, dbg);
    if (s.ok()) Grew(size_ + data.size());
    return s;
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     rocksdb::IODebugContext* dbg) override {
    FLOTILLA_FAULT_CHECK(fs_->BeforeAppend());
    rocksdb::IOStatus s = target()->PositionedAppend(data, offset, options, dbg);
    if (s.ok()) Grew(std::max(size_, offset + data.size()));
    return s;
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     const rocksdb::DataVerificationInfo& info,
                                     rocksdb::IODebugContext* dbg) override {
    FLOTILLA_FAULT_CHECK(fs_->BeforeAppend());
    rocksdb::IOStatus s = target()->PositionedAppend(data, offset, options, info, dbg);
    if (s.ok()) Grew(std::max(size_, offset + data.size()));
    return s;
  }
  rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
    FLOTILLA_FAULT_CHECK(fs_->BeforeAppend());
    rocksdb::IOStatus s = target()->Truncate(size, options, dbg);
    if (s.ok()) Grew(size);
    return s;
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    FLOTILLA_FAULT_CHECK(fs_->BeforeSync());
    rocksdb::IOStatus s = target()->Sync(options, dbg);
    if (s.ok()) fs_->Synced(fname_);
    return s;
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    FLOTILLA_FAULT_CHECK(fs_->BeforeSync());
    rocksdb::IOStatus s = target()->Fsync(options, dbg);
    if (s.ok()) fs_->Synced(fname_);
    return s;
  }
  rocksdb::IOStatus RangeSync(uint64_t offset, uint64_t nbytes, const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override {
    // RangeSync starts write-back but promises no durability: it is not a sync.
    FLOTILLA_FAULT_CHECK(fs_->BeforeSync());
    return target()->RangeSync(offset, nbytes, options, dbg);
  }
  rocksdb::IOStatus Close(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    return target()->Close(options, dbg);
  }

 private:
  void Grew(uint64_t size) {
    size_ = size;
    fs_->Appended(fname_, size_);
  }

  FaultFs* const fs_;
  const std::string fname_;
  uint64_t size_;
};

}  // namespace

FaultFs::FaultFs(const std::shared_ptr<rocksdb::FileSystem>& base) : FileSystemWrapper(base) {}

rocksdb::IOStatus FaultFs::BeforeAppend() const {
  if (crashed_.load()) return rocksdb::IOStatus::IOError("fault injection: simulated crash");
  if (no_space_.load()) {
    // As RocksDB's POSIX file system reports ENOSPC: retryable.
    rocksdb::IOStatus s = rocksdb::IOStatus::NoSpace("fault injection: no space left on device");
    s.SetRetryable(true);
    return s;
  }
  return rocksdb::IOStatus::OK();
}

rocksdb::IOStatus FaultFs::BeforeCreate() const {
  if (!no_space_new_files_.load() && !crashed_.load()) return rocksdb::IOStatus::OK();
  return BeforeAppend();
}

rocksdb::IOStatus FaultFs::BeforeSync() const {
  if (crashed_.load()) return rocksdb::IOStatus::IOError("fault injection: simulated crash");
  if (fail_sync_.load()) return rocksdb::IOStatus::IOError("fault injection: fsync failed");
  return rocksdb::IOStatus::OK();
}

void FaultFs::Appended(const std::string& fname, uint64_t new_size) {
  std::lock_guard<std::mutex> lock(mu_);
  FileState& f = files_[fname];
  f.size = new_size;
  f.synced = std::min(f.synced, new_size);
}

void FaultFs::Synced(const std::string& fname) {
  std::lock_guard<std::mutex> lock(mu_);
  FileState& f = files_[fname];
  f.synced = f.size;
}

rocksdb::IOStatus FaultFs::Wrap(const std::string& fname, rocksdb::IOStatus s,
                                uint64_t initial_size,
                                std::unique_ptr<rocksdb::FSWritableFile>* result) {
  if (!s.ok()) return s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    FileState& f = files_[fname];
    f.size = initial_size;
    // Bytes present before we saw the file were written by an earlier,
    // closed DB: treat them as durable.
    f.synced = initial_size;
  }
  *result = std::make_unique<FaultFile>(std::move(*result), this, fname, initial_size);
  return s;
}

rocksdb::IOStatus FaultFs::NewWritableFile(const std::string& fname,
                                           const rocksdb::FileOptions& opts,
                                           std::unique_ptr<rocksdb::FSWritableFile>* result,
                                           rocksdb::IODebugContext* dbg) {
  FLOTILLA_FAULT_CHECK(BeforeCreate());
  return Wrap(fname, target()->NewWritableFile(fname, opts, result, dbg), 0, result);
}

rocksdb::IOStatus FaultFs::ReopenWritableFile(const std::string& fname,
                                              const rocksdb::FileOptions& opts,
                                              std::unique_ptr<rocksdb::FSWritableFile>* result,
                                              rocksdb::IODebugContext* dbg) {
  FLOTILLA_FAULT_CHECK(BeforeCreate());
  uint64_t size = 0;
  if (!target()->GetFileSize(fname, rocksdb::IOOptions(), &size, dbg).ok()) size = 0;
  return Wrap(fname, target()->ReopenWritableFile(fname, opts, result, dbg), size, result);
}

rocksdb::IOStatus FaultFs::ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                             const rocksdb::FileOptions& opts,
                                             std::unique_ptr<rocksdb::FSWritableFile>* result,
                                             rocksdb::IODebugContext* dbg) {
  FLOTILLA_FAULT_CHECK(BeforeCreate());
  {
    std::lock_guard<std::mutex> lock(mu_);
    files_.erase(old_fname);
  }
  return Wrap(fname, target()->ReuseWritableFile(fname, old_fname, opts, result, dbg), 0, result);
}

rocksdb::IOStatus FaultFs::RenameFile(const std::string& src, const std::string& dst,
                                      const rocksdb::IOOptions& opts,
                                      rocksdb::IODebugContext* dbg) {
  FLOTILLA_FAULT_CHECK(BeforeCreate());
  rocksdb::IOStatus s = target()->RenameFile(src, dst, opts, dbg);
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = files_.find(src);
  if (it != files_.end()) {
    files_[dst] = it->second;
    files_.erase(it);
  } else {
    files_.erase(dst);
  }
  return s;
}

rocksdb::IOStatus FaultFs::DeleteFile(const std::string& fname, const rocksdb::IOOptions& opts,
                                      rocksdb::IODebugContext* dbg) {
  // Removing a file never needs space: a full disk does not refuse it.
  if (crashed_.load()) return rocksdb::IOStatus::IOError("fault injection: simulated crash");
  rocksdb::IOStatus s = target()->DeleteFile(fname, opts, dbg);
  std::lock_guard<std::mutex> lock(mu_);
  files_.erase(fname);
  return s;
}

Status FaultFs::DropUnsyncedData() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [name, f] : files_) {
    if (f.size == f.synced) continue;
    // A file deleted behind our back (e.g. by an earlier DB) has nothing to drop.
    if (!target()->FileExists(name, rocksdb::IOOptions(), nullptr).ok()) continue;
    // The POSIX FileSystem of RocksDB does not implement Truncate.
    if (::truncate(name.c_str(), static_cast<off_t>(f.synced)) != 0) {
      return Status::IOError("truncate " + name + ": " + std::strerror(errno));
    }
    f.size = f.synced;
  }
  return Status::Ok();
}

Status FaultFs::FlipFileBit(const std::string& path, uint64_t offset, int bit) {
  const int fd = ::open(path.c_str(), O_RDWR);
  if (fd < 0) return Status::IOError("open " + path + ": " + std::strerror(errno));
  unsigned char byte = 0;
  Status st;
  if (::pread(fd, &byte, 1, static_cast<off_t>(offset)) != 1) {
    st = Status::IOError("read " + path);
  } else {
    byte = static_cast<unsigned char>(byte ^ (1u << (bit & 7)));
    if (::pwrite(fd, &byte, 1, static_cast<off_t>(offset)) != 1)
      st = Status::IOError("write " + path);
  }
  ::close(fd);
  return st;
}

std::unique_ptr<rocksdb::Env> NewFaultEnv(const std::shared_ptr<FaultFs>& fs) {
  return rocksdb::NewCompositeEnv(fs);
}

}  // namespace flotilla::logdb
