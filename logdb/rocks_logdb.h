// The RocksDB LogDB: one database per NodeHost.
//
// Tuning (write buffers, compression, WAL settings) is chosen by measurement;
// the figures and reasons are in docs/logdb.md.
//
// Thread-safety: the returned LogDB is thread-safe (see LogDB).
#pragma once

#include <memory>
#include <string>

#include "flotilla/status.h"
#include "logdb/logdb.h"

namespace rocksdb {
class Env;
class Logger;
}  // namespace rocksdb

namespace flotilla::logdb {

struct RocksOptions {
  // Directory of the database; created when missing.
  std::string dir;
  // Directory of the write-ahead log; empty puts it in `dir`. A separate,
  // dedicated device here takes the fsync of every Save off the data disk.
  std::string wal_dir;
  // fsync every durable write (Save, SaveSnapshot, SaveBootstrap,
  // RemoveReplica). Turning it off loses acknowledged writes on a power
  // failure; only benchmarks and tests do it.
  bool sync = true;
  // Memtable size in bytes; see docs/logdb.md for the measurement.
  size_t write_buffer_bytes = 64 << 20;
  // Compress SST files with LZ4 (the write-ahead log is never compressed).
  bool compress = false;
  // Write-ahead log files kept for reuse; reusing a file spares fdatasync the
  // inode update of a growing file.
  size_t recycle_wal_files = 0;
  // RocksDB's pipelined write path: the WAL write of one group overlaps the
  // memtable insert of the previous one.
  bool pipelined_write = false;
  // Test hook: all file I/O goes through this Env (e.g. a fault-injecting
  // one). Not owned; must outlive the LogDB. Null: the default Env.
  rocksdb::Env* env = nullptr;
};

// RocksDB's info log for a database named `name` in messages: warnings and
// errors go to the process's log (spdlog), the rest is dropped. No LOG file
// is written next to the data, so RocksDB's error handler, which logs about
// a full disk, never needs that disk (docs/logdb.md, "When the disk is
// full"). Thread-safe.
std::shared_ptr<rocksdb::Logger> NewRocksInfoLogger(std::string name);

// Opens (creating if missing) the database. IOError/NoSpace when the files
// cannot be opened, Corruption when the database fails RocksDB's own
// verification on recovery (for instance a damaged record in the middle of
// the write-ahead log: it is never silently skipped).
Result<std::unique_ptr<LogDB>> OpenRocksLogDB(const RocksOptions& options);

// Opens an existing database read-only, for offline inspection: nothing is
// written, and RocksDB's lock is not taken (the caller checks that no daemon
// holds the database). Writes through the result fail.
class KvLogDB;
Result<std::unique_ptr<KvLogDB>> OpenRocksLogDBReadOnly(const std::string& dir,
                                                        const std::string& wal_dir);

}  // namespace flotilla::logdb
