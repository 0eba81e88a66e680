#include "engine/snapshot_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "logdb/crc32c.h"

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

// The index of a directory named received-<20 digits>-<from>-<term>.
bool ParseReceivedIndex(const std::string& name, uint64_t* index) {
  const size_t end = kReceivedPrefix.size() + 20;
  return name.size() > end && name[end] == '-' &&
         ParseIndex(name.substr(0, end), kReceivedPrefix, index);
}

}  // namespace

std::string SnapshotRoot(const std::string& data_dir, uint64_t shard, uint64_t replica) {
  return data_dir + "/snapshots/" + std::to_string(shard) + "-" + std::to_string(replica);
}

std::string SnapshotPath(const std::string& root, uint64_t index) {
  return root + "/" + IndexedName(kSnapshotPrefix, index);
}

std::string ReceivedSnapshotPath(const std::string& root, uint64_t index, SnapshotSender sender) {
  return root + "/" + IndexedName(kReceivedPrefix, index) + "-" + std::to_string(sender.from) +
         "-" + std::to_string(sender.term);
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
  crc_ = logdb::Crc32cExtend(crc_, bytes.data(), bytes.size());
  bytes_ += bytes.size();
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

namespace {

// The checksums file (docs/logdb-format.md, "Snapshot files"), little-endian:
//   "FLSC", u8 version, u32 count,
//   per file: u32 name length, name, u64 size, u32 CRC32C of the file,
//   u32 CRC32C of every byte before it.
constexpr std::string_view kChecksumsMagic = "FLSC";
constexpr uint8_t kChecksumsVersion = 1;
constexpr size_t kMaxChecksumsBytes = 1 << 20;

void PutLe(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}

bool GetLe(std::string_view* in, int bytes, uint64_t* v) {
  if (in->size() < static_cast<size_t>(bytes)) return false;
  *v = 0;
  for (int i = bytes - 1; i >= 0; --i)
    *v = (*v << 8) | static_cast<uint8_t>((*in)[static_cast<size_t>(i)]);
  in->remove_prefix(static_cast<size_t>(bytes));
  return true;
}

std::string EncodeChecksums(const std::vector<SnapshotFileSum>& sums) {
  std::string out(kChecksumsMagic);
  out.push_back(static_cast<char>(kChecksumsVersion));
  PutLe(&out, sums.size(), 4);
  for (const SnapshotFileSum& f : sums) {
    PutLe(&out, f.name.size(), 4);
    out += f.name;
    PutLe(&out, f.size, 8);
    PutLe(&out, f.crc, 4);
  }
  PutLe(&out, logdb::Crc32c(out), 4);
  return out;
}

Status DecodeChecksums(const std::string& dir, std::string_view in,
                       std::vector<SnapshotFileSum>* out) {
  const auto bad = [&](const char* what) {
    return Status::Corruption("snapshot " + dir + ": checksums file " + what);
  };
  if (in.size() < kChecksumsMagic.size() + 1 + 4 + 4) return bad("is too short");
  const std::string_view body = in.substr(0, in.size() - 4);
  std::string_view tail = in.substr(in.size() - 4);
  uint64_t stored = 0;
  GetLe(&tail, 4, &stored);
  if (logdb::Crc32c(body) != stored) return bad("fails its own checksum");
  std::string_view r = body.substr(kChecksumsMagic.size());
  if (body.substr(0, kChecksumsMagic.size()) != kChecksumsMagic) return bad("has a bad magic");
  if (static_cast<uint8_t>(r[0]) != kChecksumsVersion) return bad("has an unknown version");
  r.remove_prefix(1);
  uint64_t count = 0;
  if (!GetLe(&r, 4, &count)) return bad("is malformed");
  out->clear();
  for (uint64_t i = 0; i < count; ++i) {
    SnapshotFileSum f;
    uint64_t len = 0;
    uint64_t crc = 0;
    if (!GetLe(&r, 4, &len) || len > r.size()) return bad("is malformed");
    f.name = std::string(r.substr(0, len));
    r.remove_prefix(len);
    if (!GetLe(&r, 8, &f.size) || !GetLe(&r, 4, &crc)) return bad("is malformed");
    f.crc = static_cast<uint32_t>(crc);
    out->push_back(std::move(f));
  }
  if (!r.empty()) return bad("has trailing bytes");
  return Status::Ok();
}

constexpr std::string_view kChecksumsTmp = ".tmp";

Status ReadWholeFile(const std::string& path, std::string* out) {
  FileSnapshotReader r;
  FLOTILLA_RETURN_IF_ERROR(r.Open(path));
  out->clear();
  std::string chunk;
  do {
    FLOTILLA_RETURN_IF_ERROR(r.Read(1 << 20, &chunk));
    out->append(chunk);
  } while (!chunk.empty());
  return Status::Ok();
}

// The regular files of a snapshot directory other than its checksums file
// (and a temporary one left by a crash while writing it), by name.
Status ListSnapshotFiles(const std::string& dir, std::vector<std::string>* names) {
  std::error_code ec;
  names->clear();
  const std::string tmp = std::string(kSnapshotChecksumsFile) + std::string(kChecksumsTmp);
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name == kSnapshotChecksumsFile || name == tmp || !e.is_regular_file(ec)) continue;
    names->push_back(name);
  }
  if (ec) return Status::IOError("list " + dir + ": " + ec.message());
  std::sort(names->begin(), names->end());
  return Status::Ok();
}

// Writes `bytes` as the file `name` of `dir` durably (a temporary, fsync,
// rename, fsync of the directory), so that a crash leaves the old or the
// new file, never a torn one.
Status WriteFileDurably(const std::string& dir, const std::string& name, std::string_view bytes) {
  const std::string tmp = dir + "/" + name + std::string(kChecksumsTmp);
  FileSnapshotWriter w;
  FLOTILLA_RETURN_IF_ERROR(w.Open(tmp));
  FLOTILLA_RETURN_IF_ERROR(w.Write(bytes));
  FLOTILLA_RETURN_IF_ERROR(w.Finish());
  std::error_code ec;
  fs::rename(tmp, dir + "/" + name, ec);
  if (ec) return Status::IOError("rename " + tmp + ": " + ec.message());
  return SyncDir(dir);
}

}  // namespace

Status ChecksumFile(const std::string& path, SnapshotFileSum* out) {
  FileSnapshotReader r;
  FLOTILLA_RETURN_IF_ERROR(r.Open(path));
  out->size = 0;
  out->crc = 0;
  std::string chunk;
  do {
    FLOTILLA_RETURN_IF_ERROR(r.Read(1 << 20, &chunk));
    out->crc = logdb::Crc32cExtend(out->crc, chunk.data(), chunk.size());
    out->size += chunk.size();
  } while (!chunk.empty());
  return Status::Ok();
}

Result<std::vector<SnapshotFileSum>> ReadSnapshotChecksums(const std::string& dir) {
  const std::string path = dir + "/" + kSnapshotChecksumsFile;
  std::error_code ec;
  if (!fs::exists(path, ec)) return Status::NotFound("snapshot " + dir + " has no checksums file");
  const uint64_t size = fs::file_size(path, ec);
  if (ec) return Status::IOError("stat " + path + ": " + ec.message());
  if (size > kMaxChecksumsBytes) {
    return Status::Corruption("snapshot " + dir + ": checksums file is too large");
  }
  std::string bytes;
  FLOTILLA_RETURN_IF_ERROR(ReadWholeFile(path, &bytes));
  std::vector<SnapshotFileSum> sums;
  FLOTILLA_RETURN_IF_ERROR(DecodeChecksums(dir, bytes, &sums));
  return sums;
}

Status CheckSnapshotFiles(const std::string& dir, const std::vector<SnapshotFileSum>& sums) {
  std::vector<std::string> present;
  FLOTILLA_RETURN_IF_ERROR(ListSnapshotFiles(dir, &present));
  for (const std::string& name : present) {
    const bool listed = std::any_of(sums.begin(), sums.end(),
                                    [&](const SnapshotFileSum& f) { return f.name == name; });
    if (!listed) {
      return Status::Corruption("snapshot " + dir + ": file " + name +
                                " is not in its checksums file");
    }
  }
  for (const SnapshotFileSum& want : sums) {
    const std::string where = "snapshot " + dir + ": file " + want.name;
    std::error_code ec;
    if (!fs::exists(dir + "/" + want.name, ec)) {
      return Status::Corruption(where + " is missing (its checksums file lists it)");
    }
    SnapshotFileSum got;
    FLOTILLA_RETURN_IF_ERROR(ChecksumFile(dir + "/" + want.name, &got));
    if (got.size != want.size) {
      return Status::Corruption(where + ": size " + std::to_string(got.size) + " where " +
                                std::to_string(want.size) + " was recorded");
    }
    if (got.crc != want.crc) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), "checksum mismatch (recorded %08x, found %08x)", want.crc,
                    got.crc);
      return Status::Corruption(where + ": " + buf);
    }
  }
  return Status::Ok();
}

Status WriteSnapshotChecksums(const std::string& dir) {
  std::vector<std::string> names;
  FLOTILLA_RETURN_IF_ERROR(ListSnapshotFiles(dir, &names));
  std::vector<SnapshotFileSum> sums(names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    sums[i].name = names[i];
    FLOTILLA_RETURN_IF_ERROR(ChecksumFile(dir + "/" + names[i], &sums[i]));
  }
  return WriteFileDurably(dir, kSnapshotChecksumsFile, EncodeChecksums(sums));
}

Result<SnapshotCheck> VerifySnapshotFiles(const std::string& dir) {
  Result<std::vector<SnapshotFileSum>> sums = ReadSnapshotChecksums(dir);
  if (sums.status().code() == StatusCode::kNotFound) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
      return Status::NotFound("snapshot " + dir +
                              " is missing (the LogDB records it; its directory is gone)");
    }
    FLOTILLA_RETURN_IF_ERROR(WriteSnapshotChecksums(dir));
    return SnapshotCheck::kUpgraded;
  }
  FLOTILLA_RETURN_IF_ERROR(sums.status());
  FLOTILLA_RETURN_IF_ERROR(CheckSnapshotFiles(dir, *sums));
  return SnapshotCheck::kVerified;
}

Status SealReceivedSnapshot(const std::string& dir) {
  Result<std::vector<SnapshotFileSum>> sums = ReadSnapshotChecksums(dir);
  if (sums.status().code() == StatusCode::kNotFound) return WriteSnapshotChecksums(dir);
  FLOTILLA_RETURN_IF_ERROR(sums.status());
  return CheckSnapshotFiles(dir, *sums);
}

namespace {

// Writes the files of a snapshot, and their checksums, into `tmp`.
Status WriteSnapshotFiles(const std::string& tmp, const SaveFn& save, const std::string& sessions,
                          bool metadata_only) {
  // Each file's checksum is taken from the bytes as they are written, not
  // read back: what the state machine produced is what a restore must find.
  std::vector<SnapshotFileSum> sums;
  if (metadata_only) {
    FileSnapshotWriter w;
    FLOTILLA_RETURN_IF_ERROR(w.Open(tmp + "/" + kSnapshotMetadataOnlyFile));
    FLOTILLA_RETURN_IF_ERROR(w.Finish());
    sums.push_back({kSnapshotMetadataOnlyFile, w.bytes(), w.crc()});
  } else if (save) {
    FileSnapshotWriter w;
    FLOTILLA_RETURN_IF_ERROR(w.Open(tmp + "/" + kSnapshotDataFile));
    FLOTILLA_RETURN_IF_ERROR(save(&w));
    FLOTILLA_RETURN_IF_ERROR(w.Finish());
    sums.push_back({kSnapshotDataFile, w.bytes(), w.crc()});
  }
  FileSnapshotWriter sw;
  FLOTILLA_RETURN_IF_ERROR(sw.Open(tmp + "/" + kSnapshotSessionsFile));
  FLOTILLA_RETURN_IF_ERROR(sw.Write(sessions));
  FLOTILLA_RETURN_IF_ERROR(sw.Finish());
  sums.push_back({kSnapshotSessionsFile, sw.bytes(), sw.crc()});
  FileSnapshotWriter cw;
  FLOTILLA_RETURN_IF_ERROR(cw.Open(tmp + "/" + kSnapshotChecksumsFile));
  FLOTILLA_RETURN_IF_ERROR(cw.Write(EncodeChecksums(sums)));
  FLOTILLA_RETURN_IF_ERROR(cw.Finish());
  return SyncDir(tmp);
}

}  // namespace

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
  if (Status s = WriteSnapshotFiles(tmp, save, sessions, metadata_only); !s.ok()) {
    // Whatever failed (often a full disk), the partial files must not keep
    // the space until the next start.
    fs::remove_all(tmp, ec);
    return s;
  }
  fs::remove_all(final_dir, ec);
  fs::rename(tmp, final_dir, ec);
  if (ec) {
    const Status s = Status::IOError("rename " + tmp + ": " + ec.message());
    fs::remove_all(tmp, ec);
    return s;
  }
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
  return ReadWholeFile(dir + "/" + kSnapshotSessionsFile, sessions);
}

Status KeepReceivedSnapshot(const std::string& root, uint64_t index, SnapshotSender sender,
                            const std::string& incoming) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return Status::IOError("create " + root + ": " + ec.message());
  const std::string dest = ReceivedSnapshotPath(root, index, sender);
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

void DropReceivedSnapshot(const std::string& root, uint64_t index, SnapshotSender sender) {
  std::error_code ec;
  fs::remove_all(ReceivedSnapshotPath(root, index, sender), ec);
}

Status InstallReceivedSnapshot(const std::string& root, uint64_t index, SnapshotSender sender) {
  std::error_code ec;
  const std::string received = ReceivedSnapshotPath(root, index, sender);
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
    } else if (ParseReceivedIndex(name, &index)) {
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
