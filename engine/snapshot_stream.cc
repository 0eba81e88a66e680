#include "engine/snapshot_stream.h"

#include <algorithm>

#include "engine/snapshot_files.h"

namespace flotilla::engine {

Status SnapshotPipe::Write(std::string_view bytes) {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return reader_closed_ || capacity_ == 0 || bytes_ < capacity_; });
  if (reader_closed_) return Status::Aborted("the snapshot stream's reader has gone");
  if (bytes.empty()) return Status::Ok();
  chunks_.emplace_back(bytes);
  bytes_ += bytes.size();
  cv_.notify_all();
  return Status::Ok();
}

void SnapshotPipe::Finish(Status s) {
  std::lock_guard<std::mutex> l(mu_);
  finished_ = true;
  status_ = std::move(s);
  cv_.notify_all();
}

Result<size_t> SnapshotPipe::Read(size_t max, std::string* out) {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return !chunks_.empty() || finished_; });
  if (chunks_.empty()) {
    if (!status_.ok()) return status_;
    return size_t{0};
  }
  size_t n = 0;
  while (n < max && !chunks_.empty()) {
    const std::string& c = chunks_.front();
    const size_t take = std::min(max - n, c.size() - front_offset_);
    out->append(c, front_offset_, take);
    n += take;
    front_offset_ += take;
    if (front_offset_ == c.size()) {
      chunks_.pop_front();
      front_offset_ = 0;
    }
  }
  bytes_ -= n;
  cv_.notify_all();
  return n;
}

void SnapshotPipe::CloseReader() {
  std::lock_guard<std::mutex> l(mu_);
  reader_closed_ = true;
  chunks_.clear();
  bytes_ = 0;
  cv_.notify_all();
}

namespace {

// A stream of named files: each either fixed bytes or read from a pipe.
class StreamSource final : public transport::SnapshotSource {
 public:
  struct File {
    std::string name;
    std::string bytes;                   // when pipe is null
    std::shared_ptr<SnapshotPipe> pipe;  // read as its writer produces
  };
  StreamSource(std::vector<File> files, std::function<void()> on_first_read)
      : files_(std::move(files)), on_first_read_(std::move(on_first_read)) {}
  ~StreamSource() override {
    for (File& f : files_) {
      if (f.pipe) f.pipe->CloseReader();
    }
  }

  Result<bool> NextFile(std::string* name) override {
    if (on_first_read_) {
      std::function<void()> start = std::move(on_first_read_);
      on_first_read_ = nullptr;
      start();
    }
    if (next_ >= files_.size()) return false;
    current_ = &files_[next_++];
    offset_ = 0;
    *name = current_->name;
    return true;
  }

  Result<size_t> Read(size_t max_bytes, std::string* out) override {
    if (current_ == nullptr) return Status::Internal("snapshot source read before its first file");
    if (current_->pipe) return current_->pipe->Read(max_bytes, out);
    const size_t n = std::min(max_bytes, current_->bytes.size() - offset_);
    out->append(current_->bytes, offset_, n);
    offset_ += n;
    return n;
  }

 private:
  std::vector<File> files_;
  std::function<void()> on_first_read_;
  size_t next_ = 0;
  File* current_ = nullptr;
  size_t offset_ = 0;
};

// Holds a token while the wrapped source lives.
class HoldingSource final : public transport::SnapshotSource {
 public:
  HoldingSource(std::unique_ptr<transport::SnapshotSource> source, std::shared_ptr<void> token)
      : source_(std::move(source)), token_(std::move(token)) {}
  Result<bool> NextFile(std::string* name) override { return source_->NextFile(name); }
  Result<size_t> Read(size_t max_bytes, std::string* out) override {
    return source_->Read(max_bytes, out);
  }

 private:
  std::unique_ptr<transport::SnapshotSource> source_;
  std::shared_ptr<void> token_;
};

}  // namespace

std::unique_ptr<transport::SnapshotSource> NewStateMachineSnapshotSource(
    std::string sessions, std::shared_ptr<SnapshotPipe> pipe, std::function<void()> start_writer) {
  std::vector<StreamSource::File> files;
  files.push_back({kSnapshotSessionsFile, std::move(sessions), nullptr});
  files.push_back({kSnapshotDataFile, std::string(), std::move(pipe)});
  return std::make_unique<StreamSource>(std::move(files), std::move(start_writer));
}

std::unique_ptr<transport::SnapshotSource> NewMetadataOnlySnapshotSource(std::string sessions) {
  std::vector<StreamSource::File> files;
  files.push_back({kSnapshotMetadataOnlyFile, std::string(), nullptr});
  files.push_back({kSnapshotSessionsFile, std::move(sessions), nullptr});
  return std::make_unique<StreamSource>(std::move(files), nullptr);
}

std::unique_ptr<transport::SnapshotSource> HoldWhileStreaming(
    std::unique_ptr<transport::SnapshotSource> source, std::shared_ptr<void> token) {
  return std::make_unique<HoldingSource>(std::move(source), std::move(token));
}

SnapshotWorkers::SnapshotWorkers(size_t threads, bool start_threads) {
  if (!start_threads) return;
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

SnapshotWorkers::~SnapshotWorkers() { Stop(); }

void SnapshotWorkers::Submit(std::function<void()> task) {
  if (threads_.empty()) {
    task();
    return;
  }
  std::lock_guard<std::mutex> l(mu_);
  tasks_.push_back(std::move(task));
  cv_.notify_one();
}

void SnapshotWorkers::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

void SnapshotWorkers::Loop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping, and nothing left to run
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace flotilla::engine
