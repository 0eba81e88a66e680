// SnapshotReceiver: writes one incoming snapshot stream into a temporary
// directory, verifies it, and renames it into place only when it is whole.
//
// Layout under `snapshot_dir`:
//   tmp-<shard>-<replica>-<index>-<random>/   while receiving
//   snapshot-<shard>-<replica>-<index>/        after Finish()
// A receiver destroyed before Finish() succeeded removes its temporary
// directory, so an aborted stream leaves nothing behind.
//
// SnapshotStreamSlots: the admission control of incoming snapshot streams
// (how many at once, how many and how many bytes per peer, idle and total
// deadlines), so that streams which never finish cannot hold the receive
// slots or the disk (docs/security.md, "Bounded cost").
//
// Thread-safety: a SnapshotReceiver is not thread-safe (one per stream);
// SnapshotStreamSlots and its Slots are.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "engine/raft/types.h"
#include "flotilla/raft_port_limits.h"
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
  // The stream fails with NoSpace when the free space of the snapshot
  // directory's file system falls below this many bytes (checked every
  // kFreeSpaceCheckBytes received): a stream must never fill the disk the
  // LogDB and the state machines need. 0: not checked.
  uint64_t min_free_bytes = 0;
};

// Received bytes between two checks of the free space.
inline constexpr uint64_t kFreeSpaceCheckBytes = 4u << 20;

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
  uint64_t unchecked_bytes_ = 0;  // received since the last free-space check
};

// Counters since start; `active` is a gauge.
struct SnapshotStreamStats {
  uint64_t active = 0;
  uint64_t refused_busy = 0;          // every slot held by a stream that is not idle
  uint64_t refused_peer_streams = 0;  // the peer had max_streams_per_peer open
  uint64_t ended_peer_bytes = 0;      // the peer's streams exceeded max_bytes_per_peer
  uint64_t ended_idle = 0;            // idle_timeout_ms passed without a chunk
  uint64_t ended_total = 0;           // total_timeout_ms passed
  uint64_t evicted = 0;               // an idle stream gave its slot to a new one
};

class SnapshotStreamSlots {
 public:
  // One admitted stream. Destroying it frees its slot.
  class Slot {
   public:
    ~Slot();
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    // Names the stream's peer once its header is read. Busy when the peer
    // holds max_streams_per_peer streams already.
    Status SetPeer(std::string_view peer);
    // Accounts `bytes` more written by the stream and restarts its idle
    // clock. Busy over the peer's byte quota; Timeout when the stream was
    // already ended by a deadline or an eviction.
    Status Received(uint64_t bytes);

   private:
    friend class SnapshotStreamSlots;
    Slot(SnapshotStreamSlots* owner, uint64_t id) : owner_(owner), id_(id) {}
    SnapshotStreamSlots* const owner_;
    const uint64_t id_;
  };

  explicit SnapshotStreamSlots(SnapshotStreamLimits limits);
  ~SnapshotStreamSlots();
  SnapshotStreamSlots(const SnapshotStreamSlots&) = delete;
  SnapshotStreamSlots& operator=(const SnapshotStreamSlots&) = delete;

  // Admits a new stream, or Busy when every slot is held by a stream that is
  // not idle. `cancel` ends the stream (it makes its pending read fail); it is
  // called at most once, with this object's lock held, so it must neither
  // block nor call back.
  Result<std::unique_ptr<Slot>> Acquire(std::function<void()> cancel);
  SnapshotStreamStats Stats() const;

 private:
  using Clock = std::chrono::steady_clock;
  struct Stream {
    std::string peer;
    uint64_t bytes = 0;
    Clock::time_point started;
    Clock::time_point last;
    std::function<void()> cancel;
    Status ended;  // non-OK once ended: the stream no longer holds a slot
  };

  void Release(uint64_t id);
  Status SetPeer(uint64_t id, std::string_view peer);
  Status Received(uint64_t id, uint64_t bytes);
  // Ends stream `s`: it stops counting against any limit, and its read fails.
  void EndLocked(uint64_t id, Stream& s, Status why, uint64_t* counter);
  size_t LiveLocked() const;
  void Watch();

  const SnapshotStreamLimits limits_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, Stream> streams_;  // guarded by mu_
  uint64_t next_id_ = 1;                // guarded by mu_
  SnapshotStreamStats stats_;           // guarded by mu_
  bool stopping_ = false;               // guarded by mu_
  std::thread watchdog_;
};

}  // namespace flotilla::transport
