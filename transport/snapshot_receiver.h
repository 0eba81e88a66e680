// SnapshotReceiver: writes one incoming snapshot stream into a temporary
// directory, verifies it, and renames it into place only when it is whole.
//
// Layout under `snapshot_dir`:
//   tmp-<shard>-<replica>-<index>-<random>/   while receiving
//   snapshot-<shard>-<replica>-<index>/        after Finish()
// A receiver destroyed before Finish() succeeded removes its temporary
// directory, so an aborted stream leaves nothing behind.
//
// Thread-safety: not thread-safe; one receiver per stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/raft/types.h"
#include "flotilla/status.h"

namespace flotilla::transport {

// One piece of a snapshot stream, independent of the wire format. See
// SnapshotChunk in proto/raft.proto for the meaning of each field.
struct ChunkData {
  std::string_view file_name;
  uint64_t file_offset = 0;
  std::string_view data;
  uint32_t data_crc32c = 0;
  bool file_end = false;
  uint32_t file_crc32c = 0;
  bool last = false;
  uint64_t total_bytes = 0;
  uint32_t file_count = 0;
};

struct SnapshotReceiverLimits {
  uint64_t max_snapshot_bytes = uint64_t{64} << 30;
  size_t max_snapshot_files = 4096;
};

// True for a name a snapshot file may have: a plain name, no directories.
bool IsValidSnapshotFileName(std::string_view name);

class SnapshotReceiver {
 public:
  SnapshotReceiver(std::string snapshot_dir, SnapshotReceiverLimits limits);
  ~SnapshotReceiver();
  SnapshotReceiver(const SnapshotReceiver&) = delete;
  SnapshotReceiver& operator=(const SnapshotReceiver&) = delete;

  // Validates the kInstallSnapshot message and creates the temporary
  // directory.
  Status Begin(const raft::Message& install);
  // Verifies and writes one chunk. Any error leaves the receiver failed; the
  // caller drops it (which removes the temporary directory).
  Status Add(const ChunkData& chunk);
  // True once the last chunk was added and verified.
  bool complete() const { return complete_; }
  // REQUIRES: complete(). Makes the files durable and renames the directory
  // into place; returns the final path.
  Result<std::string> Finish();

 private:
  Status OpenFile(std::string_view name);
  Status CloseFile(uint32_t expected_crc);
  Status AddLast(const ChunkData& chunk);
  void Cleanup();

  const std::string snapshot_dir_;
  const SnapshotReceiverLimits limits_;
  std::string tmp_dir_;
  std::string final_dir_;
  bool committed_ = false;
  bool complete_ = false;
  int fd_ = -1;  // the file being written, or -1
  std::string file_name_;
  uint64_t file_bytes_ = 0;
  uint32_t file_crc_ = 0;
  uint64_t total_bytes_ = 0;
  uint32_t files_done_ = 0;
};

}  // namespace flotilla::transport
