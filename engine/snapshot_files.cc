#include "engine/snapshot_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

namespace flotilla::engine {
namespace fs = std::filesystem;

namespace {

Status ErrnoStatus(const std::string& what, int err) {
  const std::string m = what + ": " + std::strerror(err);
  return err == ENOSPC ? Status::NoSpace(m) : Status::IOError(m);
}

Status SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return ErrnoStatus("open " + dir, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  return rc == 0 ? Status::Ok() : ErrnoStatus("fsync " + dir, err);
}

// The index of a directory named <prefix><20 digits>, exactly.
bool ParseIndex(const std::string& name, std::string_view prefix, uint64_t* index) {
  constexpr size_t kDigits = 20;
  if (name.size() != prefix.size() + kDigits || name.compare(0, prefix.size(), prefix) != 0) {
    return false;
  }
  uint64_t v = 0;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    v = v * 10 + static_cast<uint64_t>(name[i] - '0');
  }
  *index = v;
  return true;
}

std::string IndexedName(std::string_view prefix, uint64_t index) {
  char digits[24];
  std::snprintf(digits, sizeof(digits), "%020llu", static_cast<unsigned long long>(index));
  return std::string(prefix) + digits;
}

constexpr std::string_view kSnapshotPrefix = "snapshot-";
constexpr std::string_view kReceivedPrefix = "received-";
constexpr std::string_view kTmpSuffix = ".tmp";

}  // namespace

std::string SnapshotRoot(const std::string& data_dir, uint64_t shard, uint64_t replica) {
  return data_dir + "/snapshots/" + std::to_string(shard) + "-" + std::to_string(replica);
}

std::string SnapshotPath(const std::string& root, uint64_t index) {
  return root + "/" + IndexedName(kSnapshotPrefix, index);
}

std::string ReceivedSnapshotPath(const std::string& root, uint64_t index) {
  return root + "/" + IndexedName(kReceivedPrefix, index);
}

std::shared_ptr<void> SnapshotPins::Pin(uint64_t index) {
  {
    std::lock_guard<std::mutex> l(mu_);
    ++counts_[index];
  }
  return std::shared_ptr<void>(nullptr, [self = shared_from_this(), index](void*) {
    std::lock_guard<std::mutex> l(self->mu_);
    if (--self->counts_[index] == 0) self->counts_.erase(index);
  });
}

bool SnapshotPins::Pinned(uint64_t index) {
  std::lock_guard<std::mutex> l(mu_);
  return counts_.count(index) != 0;
}

FileSnapshotWriter::~FileSnapshotWriter() {
  if (f_ != nullptr) std::fclose(f_);
}

Status FileSnapshotWriter::Open(const std::string& path) {
  path_ = path;
  f_ = std::fopen(path.c_str(), "wb");
  return f_ != nullptr ? Status::Ok() : ErrnoStatus("create " + path, errno);
}

Status FileSnapshotWriter::Write(std::string_view bytes) {
  if (std::fwrite(bytes.data(), 1, bytes.size(), f_) != bytes.size()) {
    return ErrnoStatus("write " + path_, errno);
  }
  return Status::Ok();
}

Status FileSnapshotWriter::Finish() {
  if (std::fflush(f_) != 0) return ErrnoStatus("flush " + path_, errno);
  if (::fsync(::fileno(f_)) != 0) return ErrnoStatus("fsync " + path_, errno);
  const int rc = std::fclose(f_);
  f_ = nullptr;
  return rc == 0 ? Status::Ok() : ErrnoStatus("close " + path_, errno);
}

FileSnapshotReader::~FileSnapshotReader() {
  if (f_ != nullptr) std::fclose(f_);
}

Status FileSnapshotReader::Open(const std::string& path) {
  path_ = path;
  f_ = std::fopen(path.c_str(), "rb");
  return f_ != nullptr ? Status::Ok() : ErrnoStatus("open " + path, errno);
}

Status FileSnapshotReader::Read(size_t max, std::string* out) {
  out->resize(max);
  const size_t n = std::fread(out->data(), 1, max, f_);
  out->resize(n);
  if (n == 0 && std::ferror(f_)) return ErrnoStatus("read " + path_, errno);
  return Status::Ok();
}

Result<std::string> WriteSnapshot(const std::string& root, uint64_t index, const SaveFn& save,
                                  const std::string& sessions, bool metadata_only) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return Status::IOError("create " + root + ": " + ec.message());
  const std::string final_dir = SnapshotPath(root, index);
  const std::string tmp = final_dir + std::string(kTmpSuffix);
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) return Status::IOError("create " + tmp + ": " + ec.message());
  if (metadata_only) {
    FileSnapshotWriter w;
    FLOTILLA_RETURN_IF_ERROR(w.Open(tmp + "/" + kSnapshotMetadataOnlyFile));
    FLOTILLA_RETURN_IF_ERROR(w.Finish());
  } else if (save) {
    FileSnapshotWriter w;
    FLOTILLA_RETURN_IF_ERROR(w.Open(tmp + "/" + kSnapshotDataFile));
    FLOTILLA_RETURN_IF_ERROR(save(&w));
    FLOTILLA_RETURN_IF_ERROR(w.Finish());
  }
  FileSnapshotWriter sw;
  FLOTILLA_RETURN_IF_ERROR(sw.Open(tmp + "/" + kSnapshotSessionsFile));
  FLOTILLA_RETURN_IF_ERROR(sw.Write(sessions));
  FLOTILLA_RETURN_IF_ERROR(sw.Finish());
  FLOTILLA_RETURN_IF_ERROR(SyncDir(tmp));
  fs::remove_all(final_dir, ec);
  fs::rename(tmp, final_dir, ec);
  if (ec) return Status::IOError("rename " + tmp + ": " + ec.message());
  FLOTILLA_RETURN_IF_ERROR(SyncDir(root));
  return final_dir;
}

Status ReadSnapshot(const std::string& dir, ManagedStateMachine* sm, std::string* sessions) {
  std::error_code ec;
  if (IsMetadataOnlySnapshot(dir)) return ReadSnapshotSessions(dir, sessions);
  if (!fs::is_directory(dir, ec)) {
    return Status::NotFound("snapshot " + dir +
                            " is missing (the LogDB records it; its directory is gone)");
  }
  if (!fs::exists(dir + "/" + kSnapshotDataFile, ec)) {
    return Status::NotFound("snapshot " + dir +
                            " is shallow (an on-disk state machine's: it holds no state-machine "
                            "data), so the state machine must already be at or past it");
  }
  FileSnapshotReader r;
  FLOTILLA_RETURN_IF_ERROR(r.Open(dir + "/" + kSnapshotDataFile));
  FLOTILLA_RETURN_IF_ERROR(sm->Recover(&r));
  return ReadSnapshotSessions(dir, sessions);
}

bool IsShallowSnapshot(const std::string& dir) {
  std::error_code ec;
  return fs::exists(dir + "/" + kSnapshotSessionsFile, ec) &&
         !fs::exists(dir + "/" + kSnapshotDataFile, ec) && !IsMetadataOnlySnapshot(dir);
}

bool IsMetadataOnlySnapshot(const std::string& dir) {
  std::error_code ec;
  return fs::exists(dir + "/" + kSnapshotMetadataOnlyFile, ec);
}

Status ReadSnapshotSessions(const std::string& dir, std::string* sessions) {
  FileSnapshotReader sr;
  FLOTILLA_RETURN_IF_ERROR(sr.Open(dir + "/" + kSnapshotSessionsFile));
  sessions->clear();
  std::string chunk;
  do {
    FLOTILLA_RETURN_IF_ERROR(sr.Read(1 << 20, &chunk));
    sessions->append(chunk);
  } while (!chunk.empty());
  return Status::Ok();
}

Status KeepReceivedSnapshot(const std::string& root, uint64_t index, const std::string& incoming) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return Status::IOError("create " + root + ": " + ec.message());
  const std::string dest = ReceivedSnapshotPath(root, index);
  // A directory is never renamed over a non-empty one: when another
  // snapshot of this index waits (or is being installed right now), this one
  // is dropped.
  fs::rename(incoming, dest, ec);
  if (!ec) return SyncDir(root);
  std::error_code rm;
  fs::remove_all(incoming, rm);
  if (ec == std::errc::directory_not_empty || ec == std::errc::file_exists) return Status::Ok();
  return Status::IOError("rename " + incoming + " to " + dest + ": " + ec.message());
}

Status InstallReceivedSnapshot(const std::string& root, uint64_t index) {
  std::error_code ec;
  const std::string received = ReceivedSnapshotPath(root, index);
  if (!fs::exists(received, ec)) {
    return Status::NotFound("no received snapshot " + std::to_string(index) + " under " + root);
  }
  const std::string dest = SnapshotPath(root, index);
  fs::remove_all(dest, ec);
  fs::rename(received, dest, ec);
  if (ec) return Status::IOError("rename " + received + ": " + ec.message());
  return SyncDir(root);
}

void PruneSnapshots(const std::string& root, uint64_t recorded, SnapshotPins* pins) {
  std::error_code ec;
  std::vector<std::string> doomed;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    uint64_t index = 0;
    if (ParseIndex(name, kSnapshotPrefix, &index)) {
      if (index < recorded && !pins->Pinned(index)) doomed.push_back(e.path().string());
    } else if (ParseIndex(name, kReceivedPrefix, &index)) {
      if (index <= recorded) doomed.push_back(e.path().string());
    }
  }
  for (const std::string& d : doomed) fs::remove_all(d, ec);
}

void CleanSnapshotRoot(const std::string& root) {
  std::error_code ec;
  std::vector<std::string> doomed;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    const bool tmp = name.size() > kTmpSuffix.size() && name.ends_with(kTmpSuffix) &&
                     name.starts_with("snapshot-");
    if (tmp || name.starts_with(kReceivedPrefix)) doomed.push_back(e.path().string());
  }
  for (const std::string& d : doomed) fs::remove_all(d, ec);
}

}  // namespace flotilla::engine
