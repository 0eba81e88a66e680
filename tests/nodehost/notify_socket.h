// A datagram socket standing in for systemd's NOTIFY_SOCKET (sd_notify(3)):
// it sets NOTIFY_SOCKET for this process and the daemons it starts, and
// reads what they send. Not thread-safe.
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>

namespace flotilla::nodehost::testing {

class NotifySocket {
 public:
  NotifySocket() {
    path_ = ::testing::TempDir() + "/notify-" + std::to_string(getpid());
    unlink(path_.c_str());
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    path_.copy(a.sun_path, sizeof(a.sun_path) - 1);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    timeval tv{0, 100 * 1000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setenv("NOTIFY_SOCKET", path_.c_str(), 1);
  }
  ~NotifySocket() {
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    close(fd_);
    unlink(path_.c_str());
  }
  // The next message, or "" after `wait`.
  std::string Next(std::chrono::milliseconds wait) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    char buf[4096];
    while (std::chrono::steady_clock::now() < deadline) {
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n > 0) return std::string(buf, static_cast<size_t>(n));
    }
    return "";
  }
  // Reads messages until one contains `what`; returns it, or "".
  std::string Until(const std::string& what, std::chrono::milliseconds wait) {
    using namespace std::chrono_literals;
    const auto deadline = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < deadline) {
      std::string m = Next(100ms);
      if (m.find(what) != std::string::npos) return m;
    }
    return "";
  }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace flotilla::nodehost::testing
