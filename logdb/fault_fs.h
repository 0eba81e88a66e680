// FaultFs: a RocksDB FileSystem wrapper that injects storage faults, for tests.
//
// It tracks, per file written through it, how many bytes were appended and how
// many of them were synced, and can:
//  - fail every Sync/Fsync with an I/O error (a failed fsync);
//  - fail every Append with "no space left on device";
//  - simulate a power cut: Crash() makes every later write fail (so nothing
//    more reaches the disk while the DB is torn down), then
//    DropUnsyncedData() truncates each file to what was last synced, and
//    Recover() lets writes through again for the reopen.
// Bit flips in stored bytes are done with FlipFileBit on closed files.
//
// Limits: directory entries are treated as durable at once (a created or
// renamed file survives a crash even without a directory fsync), which is
// kinder than a real disk; RocksDB syncs its directories anyway.
//
// Thread-safety: thread-safe; RocksDB calls it from its background threads.
#pragma once

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "flotilla/status.h"

namespace flotilla::logdb {

class FaultFs final : public rocksdb::FileSystemWrapper {
 public:
  explicit FaultFs(const std::shared_ptr<rocksdb::FileSystem>& base);
  static const char* kClassName() { return "FlotillaFaultFs"; }
  const char* Name() const override { return kClassName(); }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& opts,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& fname, const rocksdb::FileOptions& opts,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                      const rocksdb::FileOptions& opts,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus RenameFile(const std::string& src, const std::string& target,
                               const rocksdb::IOOptions& opts,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteFile(const std::string& fname, const rocksdb::IOOptions& opts,
                               rocksdb::IODebugContext* dbg) override;

  void set_fail_sync(bool fail) { fail_sync_.store(fail); }
  // A full disk: appends fail with NoSpace, and so does creating or renaming
  // a file unless `new_files_too` is false (a disk with room for a directory
  // entry but not for data, as tmpfs and ext4 usually are).
  void set_no_space(bool full, bool new_files_too = true) {
    no_space_new_files_.store(new_files_too);
    no_space_.store(full);
  }
  void Crash() { crashed_.store(true); }
  // Truncates every file written since construction to its synced length.
  // REQUIRES: the DB using this file system is closed.
  Status DropUnsyncedData();
  void Recover() { crashed_.store(false); }

  // Flips one bit of a file at byte `offset`. REQUIRES: nothing has it open.
  static Status FlipFileBit(const std::string& path, uint64_t offset, int bit);

  // Called by the file wrappers.
  rocksdb::IOStatus BeforeAppend() const;
  rocksdb::IOStatus BeforeCreate() const;
  rocksdb::IOStatus BeforeSync() const;
  void Appended(const std::string& fname, uint64_t new_size);
  void Synced(const std::string& fname);

 private:
  struct FileState {
    uint64_t size = 0;
    uint64_t synced = 0;
  };
  rocksdb::IOStatus Wrap(const std::string& fname, rocksdb::IOStatus s, uint64_t initial_size,
                         std::unique_ptr<rocksdb::FSWritableFile>* result);

  std::atomic<bool> fail_sync_{false};
  std::atomic<bool> no_space_{false};
  std::atomic<bool> no_space_new_files_{true};
  std::atomic<bool> crashed_{false};
  std::mutex mu_;
  std::map<std::string, FileState> files_;  // guarded by mu_
};

// An Env whose file I/O goes through `fs`. Keep both alive while a DB uses it.
std::unique_ptr<rocksdb::Env> NewFaultEnv(const std::shared_ptr<FaultFs>& fs);

}  // namespace flotilla::logdb
