// Helpers shared by the transport tests: a Handler that records what it is
// given and lets a test wait for it, message builders, and temp directories.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "transport/transport.h"

namespace flotilla::transport::testing {

// Thread-safety: thread-safe.
class RecordingHandler : public Handler {
 public:
  struct Snapshot {
    raft::Message install;
    std::string path;
  };
  struct SnapshotStatus {
    raft::ShardId shard;
    raft::ReplicaId replica;
    bool failed;
  };

  void HandleBatch(std::vector<raft::Message>&& messages, const std::string&) override {
    const bool has_append = std::any_of(messages.begin(), messages.end(), [](const auto& m) {
      return m.type == raft::MessageType::kReplicate;
    });
    if (has_append) {
      std::unique_lock gate(gate_mu_);
      if (hold_appends_) ++held_;
      gate_cv_.wait(gate, [&] { return !hold_appends_; });
    }
    std::lock_guard lock(mu_);
    ++batches_;
    for (auto& m : messages) messages_.push_back(std::move(m));
    cv_.notify_all();
  }
  void HandleUnreachable(raft::ShardId shard, raft::ReplicaId replica) override {
    std::lock_guard lock(mu_);
    unreachable_.emplace_back(shard, replica);
    cv_.notify_all();
  }
  Status AdmitSnapshot(const raft::Message& install, const std::string&) override {
    std::lock_guard lock(mu_);
    return install.from == refused_sender_ ? Status::Rejected("not_from_leader") : Status::Ok();
  }
  void HandleSnapshot(raft::Message install, std::string path) override {
    std::lock_guard lock(mu_);
    snapshots_.push_back({std::move(install), std::move(path)});
    cv_.notify_all();
  }
  void HandleSnapshotStatus(raft::ShardId shard, raft::ReplicaId replica, bool failed) override {
    std::lock_guard lock(mu_);
    statuses_.push_back({shard, replica, failed});
    cv_.notify_all();
  }
  void HandleConnectionUp(const std::string& address) override {
    std::lock_guard lock(mu_);
    ups_.push_back(address);
    cv_.notify_all();
  }
  void HandleConnectionDown(const std::string& address) override {
    std::lock_guard lock(mu_);
    downs_.push_back(address);
    cv_.notify_all();
  }
  void HandleStreamRefused(StreamRefusal why) override {
    std::lock_guard lock(mu_);
    ++refused_[static_cast<size_t>(why)];
    cv_.notify_all();
  }

  // Waits until pred() (called with the lock held) is true or `timeout`
  // passes; returns pred().
  bool WaitFor(const std::function<bool()>& pred,
               std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, pred);
  }

  // While held, a batch holding appends blocks in HandleBatch (so the
  // stream that carries it stalls) until released.
  void HoldAppends(bool hold) {
    {
      std::lock_guard gate(gate_mu_);
      hold_appends_ = hold;
    }
    gate_cv_.notify_all();
  }

  // Batches that blocked in HandleBatch while appends were held.
  size_t Held() {
    std::lock_guard gate(gate_mu_);
    return held_;
  }
  // AdmitSnapshot refuses streams from `sender` (0: none).
  void RefuseSnapshotsFrom(raft::ReplicaId sender) {
    std::lock_guard lock(mu_);
    refused_sender_ = sender;
  }

  std::mutex& mu() { return mu_; }
  // The accessors below REQUIRE mu() held, or no concurrent calls.
  std::vector<raft::Message>& messages() { return messages_; }
  std::vector<std::pair<raft::ShardId, raft::ReplicaId>>& unreachable() { return unreachable_; }
  std::vector<Snapshot>& snapshots() { return snapshots_; }
  std::vector<SnapshotStatus>& statuses() { return statuses_; }
  std::vector<std::string>& ups() { return ups_; }
  std::vector<std::string>& downs() { return downs_; }
  size_t batches() const { return batches_; }

  size_t MessageCount() {
    std::lock_guard lock(mu_);
    return messages_.size();
  }
  size_t Refused(StreamRefusal why) {
    std::lock_guard lock(mu_);
    return refused_[static_cast<size_t>(why)];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  size_t batches_ = 0;
  std::vector<raft::Message> messages_;
  std::vector<std::pair<raft::ShardId, raft::ReplicaId>> unreachable_;
  std::vector<Snapshot> snapshots_;
  std::vector<SnapshotStatus> statuses_;
  std::vector<std::string> ups_;
  std::vector<std::string> downs_;
  size_t refused_[static_cast<size_t>(StreamRefusal::kCount)] = {};
  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  bool hold_appends_ = false;                          // guarded by gate_mu_
  size_t held_ = 0;                                    // guarded by gate_mu_
  raft::ReplicaId refused_sender_ = raft::kNoReplica;  // guarded by mu_
};

inline raft::Message MakeAppend(raft::ShardId shard, raft::ReplicaId from, raft::ReplicaId to,
                                raft::Index index, std::string payload) {
  raft::Message m;
  m.type = raft::MessageType::kReplicate;
  m.shard_id = shard;
  m.from = from;
  m.to = to;
  m.term = 3;
  m.log_index = index - 1;
  m.log_term = 3;
  m.commit = index - 1;
  raft::Entry e;
  e.term = 3;
  e.index = index;
  e.key = index * 7;
  e.cmd = std::move(payload);
  m.entries.push_back(std::move(e));
  return m;
}

inline raft::Message MakeHeartbeat(raft::ShardId shard, raft::ReplicaId from, raft::ReplicaId to) {
  raft::Message m;
  m.type = raft::MessageType::kHeartbeat;
  m.shard_id = shard;
  m.from = from;
  m.to = to;
  m.term = 5;
  m.commit = 9;
  return m;
}

inline raft::Message MakeInstall(raft::ShardId shard, raft::ReplicaId from, raft::ReplicaId to,
                                 raft::Index index) {
  raft::Message m;
  m.type = raft::MessageType::kInstallSnapshot;
  m.shard_id = shard;
  m.from = from;
  m.to = to;
  m.term = 4;
  m.snapshot.index = index;
  m.snapshot.term = 4;
  m.snapshot.membership.voters = {from, to, 3};
  return m;
}

// A directory removed when the object dies.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("flotilla-transport-test-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string path() const { return path_.string(); }
  std::string Sub(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Writes `n` pseudo-random bytes (from `seed`) to `path`.
void WriteRandomFile(const std::string& path, size_t n, uint64_t seed);
// Entries of `dir` whose names start with `prefix`.
std::vector<std::string> ListWithPrefix(const std::string& dir, const std::string& prefix);
// True when the files of directories a and b have the same names and bytes.
bool SameFiles(const std::string& a, const std::string& b);

}  // namespace flotilla::transport::testing
