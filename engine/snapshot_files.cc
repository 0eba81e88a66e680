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

}  // namespace

std::string SnapshotRoot(const std::string& data_dir, uint64_t shard, uint64_t replica) {
  return data_dir + "/snapshots/" + std::to_string(shard) + "-" + std::to_string(replica);
}

std::string SnapshotPath(const std::string& root, uint64_t index) {
  char name[48];
  std::snprintf(name, sizeof(name), "snapshot-%020llu", static_cast<unsigned long long>(index));
  return root + "/" + name;
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
                                  const std::string& sessions) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return Status::IOError("create " + root + ": " + ec.message());
  const std::string final_dir = SnapshotPath(root, index);
  const std::string tmp = final_dir + ".tmp";
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) return Status::IOError("create " + tmp + ": " + ec.message());
  if (save) {
    FileSnapshotWriter w;
    FLOTILLA_RETURN_IF_ERROR(w.Open(tmp + "/data"));
    FLOTILLA_RETURN_IF_ERROR(save(&w));
    FLOTILLA_RETURN_IF_ERROR(w.Finish());
  }
  FileSnapshotWriter sw;
  FLOTILLA_RETURN_IF_ERROR(sw.Open(tmp + "/sessions"));
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
  if (!fs::exists(dir + "/data", ec)) {
    return Status::NotFound("snapshot " + dir +
                            " is shallow (an on-disk state machine's: it holds no state-machine "
                            "data), so the state machine must already be at or past it");
  }
  FileSnapshotReader r;
  FLOTILLA_RETURN_IF_ERROR(r.Open(dir + "/data"));
  FLOTILLA_RETURN_IF_ERROR(sm->Recover(&r));
  return ReadSnapshotSessions(dir, sessions);
}

bool IsShallowSnapshot(const std::string& dir) {
  std::error_code ec;
  return fs::exists(dir + "/sessions", ec) && !fs::exists(dir + "/data", ec);
}

Status ReadSnapshotSessions(const std::string& dir, std::string* sessions) {
  FileSnapshotReader sr;
  FLOTILLA_RETURN_IF_ERROR(sr.Open(dir + "/sessions"));
  sessions->clear();
  std::string chunk;
  do {
    FLOTILLA_RETURN_IF_ERROR(sr.Read(1 << 20, &chunk));
    sessions->append(chunk);
  } while (!chunk.empty());
  return Status::Ok();
}

void PruneSnapshots(const std::string& root, size_t keep) {
  std::error_code ec;
  std::vector<std::string> dirs;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("snapshot-", 0) == 0 && name.find(".tmp") == std::string::npos) {
      dirs.push_back(e.path().string());
    }
  }
  std::sort(dirs.begin(), dirs.end());  // zero-padded indexes sort numerically
  for (size_t i = 0; i + keep < dirs.size(); ++i) fs::remove_all(dirs[i], ec);
}

}  // namespace flotilla::engine
