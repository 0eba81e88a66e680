// The daemon's sd_notify messages, read from a notification socket of the
// test's own, as systemd would read them (sd_notify(3)).
#include "tools/nodehost/systemd_notify.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

namespace flotilla::nodehost {
namespace {

using namespace std::chrono_literals;

// A datagram socket standing in for systemd's NOTIFY_SOCKET.
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

TEST(SystemdNotify, ReadyOnlyOnceEveryHostedShardIsLed) {
  NotifySocket sock;
  std::atomic<size_t> led{1};
  SystemdNotifier n([&] { return LeaderCount{3, led.load()}; });
  ASSERT_TRUE(SystemdNotifier::Wanted());
  n.Start();
  const std::string first = sock.Next(2s);
  EXPECT_NE(first.find("STATUS=serving: 1 of 3 hosted shards led"), std::string::npos) << first;
  EXPECT_EQ(first.find("READY=1"), std::string::npos) << first;
  EXPECT_EQ(first.find("WATCHDOG=1"), std::string::npos) << "no watchdog was asked for";
  EXPECT_FALSE(n.ready());
  led = 3;
  const std::string ready = sock.Until("READY=1", 3s);
  EXPECT_NE(ready.find("3 of 3"), std::string::npos) << ready;
  EXPECT_TRUE(n.ready());
  n.Stop();
  EXPECT_NE(sock.Until("STOPPING=1", 2s), "");
}

TEST(SystemdNotify, TheWatchdogIsFedAtHalfItsIntervalWhileTheCountAnswers) {
  NotifySocket sock;
  setenv("WATCHDOG_USEC", "200000", 1);
  setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  SystemdNotifier n([] { return LeaderCount{1, 1}; });
  n.Start();
  // Every message carries a ping (at 100 ms, half of WATCHDOG_USEC); the
  // deadline is generous so that a loaded machine cannot fail the test.
  int pings = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (pings < 4 && std::chrono::steady_clock::now() - t0 < 20s) {
    if (sock.Next(100ms).find("WATCHDOG=1") != std::string::npos) ++pings;
  }
  n.Stop();
  EXPECT_GE(pings, 4);
}

TEST(SystemdNotify, NothingWithoutANotifySocket) {
  unsetenv("NOTIFY_SOCKET");
  std::atomic<int> calls{0};
  SystemdNotifier n([&] {
    ++calls;
    return LeaderCount{};
  });
  EXPECT_FALSE(SystemdNotifier::Wanted());
  n.Start();
  std::this_thread::sleep_for(50ms);
  n.Stop();
  EXPECT_EQ(calls.load(), 0);
}

}  // namespace
}  // namespace flotilla::nodehost
