// Snapshot files of one replica: <data_dir>/snapshots/<shard>-<replica>/snapshot-<index>/data.
// A snapshot is written into a temporary directory, fsynced, and renamed into
// place, so a crash never leaves a partial snapshot under the final name.
//
// Thread-safety: the classes are not thread-safe; the functions are.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

#include "engine/managed_sm.h"
#include "flotilla/state_machine.h"

namespace flotilla::engine {

std::string SnapshotRoot(const std::string& data_dir, uint64_t shard, uint64_t replica);
std::string SnapshotPath(const std::string& root, uint64_t index);

class FileSnapshotWriter final : public SnapshotWriter {
 public:
  ~FileSnapshotWriter() override;
  Status Open(const std::string& path);
  Status Write(std::string_view bytes) override;
  // Flushes and fsyncs; REQUIRES: Open succeeded.
  Status Finish();

 private:
  std::FILE* f_ = nullptr;
  std::string path_;
};

class FileSnapshotReader final : public SnapshotReader {
 public:
  ~FileSnapshotReader() override;
  Status Open(const std::string& path);
  Status Read(size_t max, std::string* out) override;

 private:
  std::FILE* f_ = nullptr;
  std::string path_;
};

// Saves a state machine's snapshot at `index` under `root` (temporary
// directory, fsync, rename): the file `data` holds the state machine's bytes,
// `sessions` the engine's session registry. Returns the final directory.
// With `save` null the snapshot is shallow: only `sessions` is written (an
// on-disk state machine keeps its own data, made durable by Sync first).
// `save` writes the state machine's bytes (null: shallow).
using SaveFn = std::function<Status(SnapshotWriter*)>;
Result<std::string> WriteSnapshot(const std::string& root, uint64_t index, const SaveFn& save,
                                  const std::string& sessions);
// Restores a state machine (and the session registry bytes) from `dir`.
// NotFound when the snapshot is shallow (it has no `data`).
Status ReadSnapshot(const std::string& dir, ManagedStateMachine* sm, std::string* sessions);
// True when `dir` holds a shallow snapshot: sessions, no state-machine data.
bool IsShallowSnapshot(const std::string& dir);
// Reads only the session registry bytes of the snapshot in `dir`.
Status ReadSnapshotSessions(const std::string& dir, std::string* sessions);
// Removes snapshot directories under `root` other than the newest `keep`.
void PruneSnapshots(const std::string& root, size_t keep);

}  // namespace flotilla::engine
