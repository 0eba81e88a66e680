// A small tmpfs mounted by a test (for full-disk tests) and unmounted when
// the object dies. Mounting needs CAP_SYS_ADMIN (root in CI): when it is not
// permitted, error() says why and the test skips with that reason; under
// CI=true a skip is itself a failure (see FLOTILLA_SKIP_OR_FAIL_FULL_DISK).
#pragma once

#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

namespace flotilla::testing {

class TmpfsMount {
 public:
  explicit TmpfsMount(uint64_t size_bytes) {
    std::random_device rd;
    path_ = (std::filesystem::temp_directory_path() /
             ("flotilla-tmpfs-" + std::to_string(rd()) + std::to_string(rd())))
                .string();
    std::error_code ec;
    std::filesystem::create_directories(path_, ec);
    const std::string opts = "size=" + std::to_string(size_bytes) + ",mode=0755";
    if (::mount("tmpfs", path_.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
      error_ = "cannot mount a tmpfs at " + path_ + ": " + std::strerror(errno) +
               " (full-disk tests need root or CAP_SYS_ADMIN)";
      std::filesystem::remove(path_, ec);
      return;
    }
    mounted_ = true;
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;

  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }
  const std::string& path() const { return path_; }

  // Writes a file of zeros at `file` until the file system is full (or
  // `max_bytes` are written); returns the bytes written.
  static uint64_t Fill(const std::string& file, uint64_t max_bytes = UINT64_MAX) {
    std::ofstream out(file, std::ios::binary);
    const std::string block(64 << 10, '\0');
    uint64_t written = 0;
    while (written < max_bytes && out.write(block.data(), block.size()) && out.flush()) {
      written += block.size();
    }
    return written;
  }

 private:
  std::string path_;
  std::string error_;
  bool mounted_ = false;
};

// True under CI=true: a full-disk test that cannot mount fails there
// instead of skipping, so CI never passes without running it.
inline bool FullDiskTestsRequired() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

}  // namespace flotilla::testing

// Skips the test (or fails it under CI=true) when `mount` did not mount.
#define FLOTILLA_SKIP_OR_FAIL_FULL_DISK(mount)                                     \
  do {                                                                             \
    if (!(mount).mounted()) {                                                      \
      if (::flotilla::testing::FullDiskTestsRequired()) FAIL() << (mount).error(); \
      GTEST_SKIP() << (mount).error();                                             \
    }                                                                              \
  } while (0)
