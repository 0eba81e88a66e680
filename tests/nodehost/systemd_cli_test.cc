// Real daemons under a stand-in for systemd: each tells its NOTIFY_SOCKET it
// is ready once its shards are led, and that it stops when it stops.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "tests/nodehost/notify_socket.h"
#include "tests/nodehost/test_cluster.h"

namespace flotilla::nodehost {
namespace {

using namespace std::chrono_literals;
using testing::TestCluster;

TEST(SystemdCli, EachDaemonIsReadyOnceItsShardsAreLedAndSaysWhenItStops) {
  // Set before the daemons start: they inherit NOTIFY_SOCKET.
  testing::NotifySocket sock;
  TestCluster::Options o;
  o.nodes = 3;
  TestCluster cluster(o);
  ASSERT_TRUE(cluster.Start());
  int ready = 0;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (ready < 3 && std::chrono::steady_clock::now() < deadline) {
    const std::string m = sock.Next(200ms);
    if (m.find("READY=1") == std::string::npos) continue;
    ++ready;
    // Ready means every shard it hosts is led, and says so.
    EXPECT_NE(m.find("STATUS=serving: "), std::string::npos) << m;
    const size_t of = m.find(" of ");
    ASSERT_NE(of, std::string::npos) << m;
    const size_t led_at = m.find("serving: ") + 9;
    EXPECT_EQ(m.substr(led_at, of - led_at), m.substr(of + 4, m.find(' ', of + 4) - (of + 4))) << m;
  }
  EXPECT_EQ(ready, 3) << "each of the three daemons sends READY=1 once";
  EXPECT_EQ(cluster.StopNode(1), 0);
  EXPECT_NE(sock.Until("STOPPING=1", 30s), "");
}

}  // namespace
}  // namespace flotilla::nodehost
