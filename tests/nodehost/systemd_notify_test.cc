// The daemon's sd_notify messages, read from a notification socket of the
// test's own, as systemd would read them (sd_notify(3)).
#include "tools/nodehost/systemd_notify.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "tests/nodehost/notify_socket.h"

namespace flotilla::nodehost {
namespace {

using namespace std::chrono_literals;
using testing::NotifySocket;

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
