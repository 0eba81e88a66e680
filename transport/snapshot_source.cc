// NewFileSnapshotSource: a SnapshotSource over a file or a directory of files.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "transport/snapshot_receiver.h"
#include "transport/transport.h"

namespace flotilla::transport {
namespace fs = std::filesystem;
namespace {

// Thread-safety: not thread-safe (one sender uses it).
class FileSnapshotSource final : public SnapshotSource {
 public:
  explicit FileSnapshotSource(std::vector<fs::path> files) : files_(std::move(files)) {}
  ~FileSnapshotSource() override { CloseCurrent(); }

  Result<bool> NextFile(std::string* name) override {
    CloseCurrent();
    if (next_ >= files_.size()) return false;
    const fs::path& p = files_[next_++];
    fd_ = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) return Status::IOError("open " + p.string() + ": " + std::strerror(errno));
    *name = p.filename().string();
    return true;
  }

  Result<size_t> Read(size_t max_bytes, std::string* out) override {
    if (fd_ < 0) return Status::Internal("FileSnapshotSource::Read without a current file");
    const size_t old = out->size();
    out->resize(old + max_bytes);
    size_t got = 0;
    // Fills the whole request unless the file ends, so chunks stay full size.
    while (got < max_bytes) {
      ssize_t n = ::read(fd_, out->data() + old + got, max_bytes - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        out->resize(old);
        return Status::IOError(std::string("read snapshot file: ") + std::strerror(errno));
      }
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    out->resize(old + got);
    return got;
  }

 private:
  void CloseCurrent() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  std::vector<fs::path> files_;
  size_t next_ = 0;
  int fd_ = -1;
};

}  // namespace

Result<std::unique_ptr<SnapshotSource>> NewFileSnapshotSource(const std::string& path) {
  std::error_code ec;
  std::vector<fs::path> files;
  if (fs::is_directory(path, ec)) {
    for (const auto& e : fs::directory_iterator(path, ec)) {
      if (e.is_regular_file()) files.push_back(e.path());
    }
    if (ec) return Status::IOError("list " + path + ": " + ec.message());
    std::sort(files.begin(), files.end());
  } else if (fs::is_regular_file(path, ec)) {
    files.emplace_back(path);
  } else {
    return Status::NotFound("no snapshot at " + path);
  }
  for (const fs::path& f : files) {
    if (!IsValidSnapshotFileName(f.filename().string())) {
      return Status::InvalidArgument("snapshot file name not allowed: " + f.string());
    }
  }
  return std::unique_ptr<SnapshotSource>(new FileSnapshotSource(std::move(files)));
}

}  // namespace flotilla::transport

#include "transport/crc32c.h"
#include "transport/snapshot_chunker.h"

namespace flotilla::transport {

SnapshotChunker::SnapshotChunker(SnapshotSource* source, size_t chunk_bytes)
    : source_(source), chunk_bytes_(std::max<size_t>(chunk_bytes, 1)) {}

Result<bool> SnapshotChunker::Next(ChunkData* chunk) {
  if (done_) return false;
  *chunk = ChunkData{};
  if (!in_file_) {
    Result<bool> more = source_->NextFile(&file_name_);
    if (!more.ok()) return more.status();
    if (!*more) {
      chunk->last = true;
      chunk->total_bytes = total_bytes_;
      chunk->file_count = file_count_;
      done_ = true;
      return true;
    }
    if (!IsValidSnapshotFileName(file_name_)) {
      return Status::InvalidArgument("snapshot source yielded an invalid file name");
    }
    in_file_ = true;
    file_offset_ = 0;
    file_crc_ = 0;
  }
  buffer_.clear();
  Result<size_t> n = source_->Read(chunk_bytes_, &buffer_);
  if (!n.ok()) return n.status();
  chunk->file_name = file_name_;
  chunk->file_offset = file_offset_;
  chunk->data = buffer_;
  chunk->data_crc32c = Crc32c(buffer_);
  if (*n == 0) {
    chunk->file_end = true;
    chunk->file_crc32c = file_crc_;
    in_file_ = false;
    ++file_count_;
    return true;
  }
  file_crc_ = Crc32cExtend(file_crc_, buffer_.data(), buffer_.size());
  file_offset_ += buffer_.size();
  total_bytes_ += buffer_.size();
  return true;
}

}  // namespace flotilla::transport
