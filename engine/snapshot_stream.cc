#include "engine/snapshot_stream.h"

#include <algorithm>

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

class StateMachineSource final : public transport::SnapshotSource {
 public:
  StateMachineSource(std::string sessions, std::shared_ptr<SnapshotPipe> pipe)
      : sessions_(std::move(sessions)), pipe_(std::move(pipe)) {}
  ~StateMachineSource() override { pipe_->CloseReader(); }

  Result<bool> NextFile(std::string* name) override {
    ++file_;
    offset_ = 0;
    if (file_ == 1) *name = "sessions";
    if (file_ == 2) *name = "data";
    return file_ <= 2;
  }

  Result<size_t> Read(size_t max_bytes, std::string* out) override {
    if (file_ == 1) {
      const size_t n = std::min(max_bytes, sessions_.size() - offset_);
      out->append(sessions_, offset_, n);
      offset_ += n;
      return n;
    }
    if (file_ == 2) return pipe_->Read(max_bytes, out);
    return Status::Internal("snapshot source read past its files");
  }

 private:
  std::string sessions_;
  std::shared_ptr<SnapshotPipe> pipe_;
  int file_ = 0;
  size_t offset_ = 0;
};

}  // namespace

std::unique_ptr<transport::SnapshotSource> NewStateMachineSnapshotSource(
    std::string sessions, std::shared_ptr<SnapshotPipe> pipe) {
  return std::make_unique<StateMachineSource>(std::move(sessions), std::move(pipe));
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
