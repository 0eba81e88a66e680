#include "transport/snapshot_receiver.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include "engine/log/log.h"
#include "transport/crc32c.h"

namespace flotilla::transport {
namespace fs = std::filesystem;
namespace {

std::string Errno(std::string_view what, const std::string& path) {
  return std::string(what) + " " + path + ": " + std::strerror(errno);
}

Status SyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError(Errno("open", path));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Status::IOError(Errno("fsync", path));
  return Status::Ok();
}

// A suffix that keeps two concurrent receptions of the same snapshot apart.
std::string RandomSuffix() {
  static std::atomic<uint64_t> counter{std::random_device{}()};
  uint64_t v = counter.fetch_add(0x9E3779B97F4A7C15ull) * 0xBF58476D1CE4E5B9ull;
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Fails with NoSpace when the file system of `dir` has less than `min_free`
// bytes free for an unprivileged writer.
Status CheckFreeSpace(const std::string& dir, uint64_t min_free) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return Status::IOError(Errno("statvfs", dir));
  const uint64_t free_bytes = uint64_t{st.f_bavail} * st.f_frsize;
  if (free_bytes >= min_free) return Status::Ok();
  return Status::NoSpace("snapshot stream refused: " + std::to_string(free_bytes) +
                         " bytes free on " + dir + ", below the reserve of " +
                         std::to_string(min_free));
}

// Printable ASCII only, at most 128 bytes: a peer's self-declared address
// must not forge log lines.
std::string Printable(std::string_view in) {
  std::string out;
  for (char c : in.substr(0, 128)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '\\') {
      out.push_back(c);
    } else {
      char buf[5];
      std::snprintf(buf, sizeof(buf), "\\x%02x", u);
      out += buf;
    }
  }
  return out;
}

uint64_t MillisSince(std::chrono::steady_clock::time_point t,
                     std::chrono::steady_clock::time_point now) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now - t).count());
}

}  // namespace

bool IsValidSnapshotFileName(std::string_view name) {
  if (name.empty() || name.size() > 255 || name == "." || name == "..") return false;
  for (char c : name) {
    if (c == '/' || c == '\0') return false;
  }
  return true;
}

SnapshotReceiver::SnapshotReceiver(std::string snapshot_dir, SnapshotReceiverLimits limits)
    : snapshot_dir_(std::move(snapshot_dir)), limits_(limits) {}

SnapshotReceiver::~SnapshotReceiver() { Cleanup(); }

void SnapshotReceiver::Cleanup() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!committed_ && !tmp_dir_.empty()) {
    std::error_code ec;
    fs::remove_all(tmp_dir_, ec);  // best effort: a leftover is removed at the next start
    tmp_dir_.clear();
  }
}

Status SnapshotReceiver::Begin(const raft::Message& m) {
  if (m.type != raft::MessageType::kInstallSnapshot) {
    return Status::InvalidArgument("snapshot stream does not start with an InstallSnapshot");
  }
  if (m.snapshot.IsEmpty()) return Status::InvalidArgument("snapshot with index 0");
  if (!tmp_dir_.empty()) return Status::Internal("SnapshotReceiver::Begin called twice");
  std::error_code ec;
  fs::create_directories(snapshot_dir_, ec);
  if (ec) return Status::IOError("create " + snapshot_dir_ + ": " + ec.message());
  if (limits_.min_free_bytes > 0) {
    FLOTILLA_RETURN_IF_ERROR(CheckFreeSpace(snapshot_dir_, limits_.min_free_bytes));
  }
  std::string id = std::to_string(m.shard_id) + "-" + std::to_string(m.to) + "-" +
                   std::to_string(m.snapshot.index);
  tmp_dir_ = snapshot_dir_ + "/tmp-" + id + "-" + RandomSuffix();
  final_dir_ = snapshot_dir_ + "/snapshot-" + id;
  if (!fs::create_directory(tmp_dir_, ec) || ec) {
    std::string dir = tmp_dir_;
    tmp_dir_.clear();
    return Status::IOError("create " + dir + ": " + (ec ? ec.message() : "exists"));
  }
  return Status::Ok();
}

Status SnapshotReceiver::OpenFile(std::string_view name) {
  if (!IsValidSnapshotFileName(name)) {
    return Status::InvalidArgument("invalid snapshot file name");
  }
  if (files_done_ >= limits_.max_snapshot_files) {
    return Status::TooLarge("snapshot has more than " + std::to_string(limits_.max_snapshot_files) +
                            " files");
  }
  file_name_ = std::string(name);
  std::string path = tmp_dir_ + "/" + file_name_;
  // O_EXCL: a file name sent twice is an error, not an overwrite.
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) return Status::IOError(Errno("create", path));
  file_bytes_ = 0;
  file_crc_ = 0;
  return Status::Ok();
}

Status SnapshotReceiver::CloseFile(uint32_t expected_crc) {
  if (file_crc_ != expected_crc) {
    return Status::Corruption("snapshot file " + file_name_ + ": checksum mismatch");
  }
  if (::fsync(fd_) != 0) return Status::IOError(Errno("fsync", file_name_));
  ::close(fd_);
  fd_ = -1;
  ++files_done_;
  return Status::Ok();
}

Status SnapshotReceiver::AddLast(const ChunkData& c) {
  if (fd_ >= 0) return Status::Corruption("snapshot ended inside file " + file_name_);
  if (c.file_count != files_done_) {
    return Status::Corruption("snapshot announced " + std::to_string(c.file_count) +
                              " files, received " + std::to_string(files_done_));
  }
  if (c.total_bytes != total_bytes_) {
    return Status::Corruption("snapshot announced " + std::to_string(c.total_bytes) +
                              " bytes, received " + std::to_string(total_bytes_));
  }
  complete_ = true;
  return Status::Ok();
}

Status SnapshotReceiver::Add(const ChunkData& c) {
  if (tmp_dir_.empty()) return Status::Internal("SnapshotReceiver::Add before Begin");
  if (complete_) return Status::Corruption("snapshot chunk after the last one");
  if (c.last && c.file_name.empty() && c.data.empty()) return AddLast(c);
  if (c.file_name.empty()) return Status::Corruption("snapshot chunk without a file name");
  if (fd_ < 0) {
    FLOTILLA_RETURN_IF_ERROR(OpenFile(c.file_name));
  } else if (c.file_name != file_name_) {
    return Status::Corruption("snapshot file started before " + file_name_ + " ended");
  }
  if (c.file_offset != file_bytes_) {
    return Status::Corruption("snapshot file " + file_name_ + ": chunk at offset " +
                              std::to_string(c.file_offset) + ", expected " +
                              std::to_string(file_bytes_));
  }
  if (Crc32c(c.data) != c.data_crc32c) {
    return Status::Corruption("snapshot file " + file_name_ + ": chunk checksum mismatch at " +
                              std::to_string(c.file_offset));
  }
  if (c.data.size() > limits_.max_snapshot_bytes - total_bytes_) {
    return Status::TooLarge("snapshot exceeds " + std::to_string(limits_.max_snapshot_bytes) +
                            " bytes");
  }
  const char* p = c.data.data();
  size_t left = c.data.size();
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return errno == ENOSPC ? Status::NoSpace(Errno("write", file_name_))
                             : Status::IOError(Errno("write", file_name_));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  file_crc_ = Crc32cExtend(file_crc_, c.data.data(), c.data.size());
  file_bytes_ += c.data.size();
  total_bytes_ += c.data.size();
  unchecked_bytes_ += c.data.size();
  if (limits_.min_free_bytes > 0 && unchecked_bytes_ >= kFreeSpaceCheckBytes) {
    unchecked_bytes_ = 0;
    FLOTILLA_RETURN_IF_ERROR(CheckFreeSpace(tmp_dir_, limits_.min_free_bytes));
  }
  if (c.file_end) FLOTILLA_RETURN_IF_ERROR(CloseFile(c.file_crc32c));
  if (c.last) {
    if (!c.file_end) return Status::Corruption("last snapshot chunk inside a file");
    return AddLast(c);
  }
  return Status::Ok();
}

Result<std::string> SnapshotReceiver::Finish() {
  if (!complete_) return Status::Internal("SnapshotReceiver::Finish before the last chunk");
  FLOTILLA_RETURN_IF_ERROR(SyncPath(tmp_dir_));
  std::error_code ec;
  // The same snapshot received again replaces the earlier copy: the engine
  // did not take it over, or it would have asked for no new one.
  fs::remove_all(final_dir_, ec);
  if (ec) return Status::IOError("remove " + final_dir_ + ": " + ec.message());
  fs::rename(tmp_dir_, final_dir_, ec);
  if (ec) return Status::IOError("rename " + tmp_dir_ + ": " + ec.message());
  committed_ = true;
  FLOTILLA_RETURN_IF_ERROR(SyncPath(snapshot_dir_));
  return final_dir_;
}

// ---------------------------------------------------------------------------
// SnapshotStreamSlots.

SnapshotStreamSlots::Slot::~Slot() { owner_->Release(id_); }
Status SnapshotStreamSlots::Slot::SetPeer(std::string_view peer) {
  return owner_->SetPeer(id_, peer);
}
Status SnapshotStreamSlots::Slot::Received(uint64_t bytes) { return owner_->Received(id_, bytes); }

SnapshotStreamSlots::SnapshotStreamSlots(SnapshotStreamLimits limits) : limits_(limits) {
  watchdog_ = std::thread([this] { Watch(); });
}

SnapshotStreamSlots::~SnapshotStreamSlots() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  watchdog_.join();
}

size_t SnapshotStreamSlots::LiveLocked() const {
  size_t live = 0;
  for (const auto& [id, s] : streams_) live += s.ended.ok();
  return live;
}

void SnapshotStreamSlots::EndLocked(uint64_t id, Stream& s, Status why, uint64_t* counter) {
  Log().warn("transport: snapshot stream {} from {} ended after {} bytes: {}", id,
             s.peer.empty() ? std::string("(no header yet)") : Printable(s.peer), s.bytes,
             why.message());
  s.ended = std::move(why);
  ++*counter;
  if (s.cancel) s.cancel();
  s.cancel = nullptr;
}

Result<std::unique_ptr<SnapshotStreamSlots::Slot>> SnapshotStreamSlots::Acquire(
    std::function<void()> cancel) {
  std::lock_guard<std::mutex> l(mu_);
  const Clock::time_point now = Clock::now();
  if (LiveLocked() >= limits_.max_streams) {
    // The stream idle longest gives way, if it has been idle long enough.
    auto idlest = streams_.end();
    for (auto it = streams_.begin(); it != streams_.end(); ++it) {
      if (it->second.ended.ok() &&
          (idlest == streams_.end() || it->second.last < idlest->second.last)) {
        idlest = it;
      }
    }
    if (idlest == streams_.end() || MillisSince(idlest->second.last, now) < limits_.evict_idle_ms) {
      ++stats_.refused_busy;
      return Status::Busy("too many snapshot streams (" + std::to_string(limits_.max_streams) +
                          "), none idle; retry later");
    }
    EndLocked(
        idlest->first, idlest->second,
        Status::Timeout("evicted: idle " + std::to_string(MillisSince(idlest->second.last, now)) +
                        " ms while every slot was taken"),
        &stats_.evicted);
  }
  const uint64_t id = next_id_++;
  Stream& s = streams_[id];
  s.started = now;
  s.last = now;
  s.cancel = std::move(cancel);
  return std::unique_ptr<Slot>(new Slot(this, id));
}

void SnapshotStreamSlots::Release(uint64_t id) {
  std::lock_guard<std::mutex> l(mu_);
  streams_.erase(id);
}

Status SnapshotStreamSlots::SetPeer(uint64_t id, std::string_view peer) {
  std::lock_guard<std::mutex> l(mu_);
  Stream& s = streams_.at(id);
  if (!s.ended.ok()) return s.ended;
  size_t open = 0;
  for (const auto& [other_id, o] : streams_) open += o.ended.ok() && o.peer == peer;
  if (open >= limits_.max_streams_per_peer) {
    ++stats_.refused_peer_streams;
    Log().warn("transport: snapshot stream from {} refused: it has {} open already",
               Printable(peer), open);
    return Status::Busy("too many snapshot streams from this peer (" +
                        std::to_string(limits_.max_streams_per_peer) + "); retry later");
  }
  s.peer = std::string(peer);
  return Status::Ok();
}

Status SnapshotStreamSlots::Received(uint64_t id, uint64_t bytes) {
  std::lock_guard<std::mutex> l(mu_);
  Stream& s = streams_.at(id);
  if (!s.ended.ok()) return s.ended;
  s.bytes += bytes;
  s.last = Clock::now();
  uint64_t peer_bytes = 0;
  for (const auto& [other_id, o] : streams_) {
    if (o.ended.ok() && o.peer == s.peer) peer_bytes += o.bytes;
  }
  if (peer_bytes > limits_.max_bytes_per_peer) {
    EndLocked(id, s,
              Status::Busy("the peer's open snapshot streams hold more than " +
                           std::to_string(limits_.max_bytes_per_peer) + " bytes"),
              &stats_.ended_peer_bytes);
    return s.ended;
  }
  return Status::Ok();
}

SnapshotStreamStats SnapshotStreamSlots::Stats() const {
  std::lock_guard<std::mutex> l(mu_);
  SnapshotStreamStats out = stats_;
  out.active = streams_.size();
  return out;
}

// Ends the streams past a deadline. It wakes a few times per shortest
// deadline: a deadline is met within a quarter of itself.
void SnapshotStreamSlots::Watch() {
  const uint64_t shortest = std::min(limits_.idle_timeout_ms, limits_.total_timeout_ms);
  const auto period = std::chrono::milliseconds(std::clamp<uint64_t>(shortest / 4, 5, 1000));
  std::unique_lock<std::mutex> l(mu_);
  while (!stopping_) {
    cv_.wait_for(l, period);
    const Clock::time_point now = Clock::now();
    for (auto& [id, s] : streams_) {
      if (!s.ended.ok()) continue;
      if (MillisSince(s.last, now) >= limits_.idle_timeout_ms) {
        EndLocked(id, s,
                  Status::Timeout("idle for " + std::to_string(MillisSince(s.last, now)) +
                                  " ms (idle deadline " + std::to_string(limits_.idle_timeout_ms) +
                                  " ms)"),
                  &stats_.ended_idle);
      } else if (MillisSince(s.started, now) >= limits_.total_timeout_ms) {
        EndLocked(id, s,
                  Status::Timeout("open for " + std::to_string(MillisSince(s.started, now)) +
                                  " ms (total deadline " +
                                  std::to_string(limits_.total_timeout_ms) + " ms)"),
                  &stats_.ended_total);
      }
    }
  }
}

}  // namespace flotilla::transport
