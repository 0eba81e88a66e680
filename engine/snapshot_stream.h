// Streaming a snapshot straight from an on-disk state machine, and the
// snapshot workers that run the state machine's SaveSnapshot for it.
//
// An on-disk state machine persists itself, so its local snapshots are
// shallow (the session registry only; see snapshot_files.h) and nothing of
// its data is copied to disk. When a follower needs a snapshot, the apply
// worker prepares one at the current applied index (PrepareSnapshot, with
// updates held off), and a snapshot worker runs SaveSnapshot into a bounded
// SnapshotPipe that the transport reads as the file "data" of the stream:
// the bytes go from the state machine to the network without touching disk,
// and at most the pipe's capacity of them is in memory.
//
// Thread-safety: SnapshotPipe and SnapshotWorkers are thread-safe;
// NewStateMachineSnapshotSource's source is used by one thread at a time
// (the transport's), while one other thread writes into its pipe.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "flotilla/state_machine.h"
#include "flotilla/status.h"
#include "transport/transport.h"

namespace flotilla::engine {

// A bounded byte pipe between one writer and one reader.
class SnapshotPipe {
 public:
  // capacity 0: unbounded (a driver without threads writes it all first).
  explicit SnapshotPipe(size_t capacity) : capacity_(capacity) {}

  // Writer side. Write blocks while the pipe is full; it fails with Aborted
  // once the reader has gone.
  Status Write(std::string_view bytes);
  // The writer is done: with OK the reader sees the end, otherwise the error.
  void Finish(Status s);

  // Reader side. Appends up to `max` bytes to *out; 0 at the end; blocks
  // until bytes or the end arrive.
  Result<size_t> Read(size_t max, std::string* out);
  // The reader stops reading (the stream ended or failed): unblocks and
  // fails the writer.
  void CloseReader();

 private:
  const size_t capacity_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> chunks_;  // guarded by mu_
  size_t front_offset_ = 0;         // guarded by mu_: consumed bytes of chunks_.front()
  size_t bytes_ = 0;                // guarded by mu_
  bool finished_ = false;           // guarded by mu_
  Status status_;                   // guarded by mu_
  bool reader_closed_ = false;      // guarded by mu_
};

// The SnapshotWriter face of a pipe, for the state machine's SaveSnapshot.
class PipeWriter final : public SnapshotWriter {
 public:
  explicit PipeWriter(std::shared_ptr<SnapshotPipe> pipe) : pipe_(std::move(pipe)) {}
  Status Write(std::string_view bytes) override { return pipe_->Write(bytes); }

 private:
  std::shared_ptr<SnapshotPipe> pipe_;
};

// A snapshot stream of two files: "sessions" (the given bytes) and "data"
// (read from `pipe` as the writer produces it). Destroying the source closes
// the pipe's reader side.
//
// `start_writer` starts the pipe's writer; the source calls it once, when
// the transport starts reading it. So a writer runs only while a transport
// sender reads its pipe: the snapshot workers and the transport's senders
// are separate pools taking streams in their own orders, and a writer
// started before its reader could block a snapshot worker on a full pipe
// that no sender reads, while every sender waits for a writer queued behind
// it (a deadlock with six streams in flight). Never started (the job was
// refused or dropped), the writer never runs.
std::unique_ptr<transport::SnapshotSource> NewStateMachineSnapshotSource(
    std::string sessions, std::shared_ptr<SnapshotPipe> pipe, std::function<void()> start_writer);

// The stream of a snapshot that carries metadata only (one to a witness):
// the files "metadata-only" and "sessions" (the given bytes), no data.
std::unique_ptr<transport::SnapshotSource> NewMetadataOnlySnapshotSource(std::string sessions);

// `source`, holding `token` (a SnapshotPins pin) for as long as it lives.
std::unique_ptr<transport::SnapshotSource> HoldWhileStreaming(
    std::unique_ptr<transport::SnapshotSource> source, std::shared_ptr<void> token);

// A small pool of threads for snapshot work that must not hold up an apply
// worker. Without threads (a deterministic driver), Submit runs the task at
// once on the caller's thread.
class SnapshotWorkers {
 public:
  SnapshotWorkers(size_t threads, bool start_threads);
  ~SnapshotWorkers();
  SnapshotWorkers(const SnapshotWorkers&) = delete;
  SnapshotWorkers& operator=(const SnapshotWorkers&) = delete;

  void Submit(std::function<void()> task);
  // Runs the queued tasks to the end and joins the threads. Idempotent.
  void Stop();
  bool threaded() const { return !threads_.empty(); }

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // guarded by mu_
  bool stop_ = false;                        // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace flotilla::engine
