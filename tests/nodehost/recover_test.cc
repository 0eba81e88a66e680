// Quorum-loss recovery: two of three daemons are lost for good; `nodehost
// recover --force-new-membership` rebuilds each shard from the survivor's
// replica, which then serves every acknowledged write it held, alone, and
// takes new ones.
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "tests/nodehost/test_cluster.h"
#include "tools/nodehost/cli.h"

namespace flotilla::nodehost {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using testing::CliResult;
using testing::TestCluster;

#define EXPECT_EXIT_CODE(result, code)                                 \
  EXPECT_EQ((result).exit_code, (code)) << "stdout:\n"                 \
                                        << (result).out << "stderr:\n" \
                                        << (result).err

TEST(Recover, TwoOfThreeLostTheSurvivorServesEveryWriteItHeld) {
  TestCluster::Options o;
  o.shards = 2;
  TestCluster cluster(o);
  ASSERT_TRUE(cluster.Start());
  constexpr int kKeys = 60;
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_EQ(cluster.Cli({"put", "key" + std::to_string(i), "v" + std::to_string(i)}).exit_code,
              0);
  }
  // Node 1 holds every acknowledged write once its replicas' lag is 0.
  const std::string node1 = cluster.client_address(1);
  bool caught_up = false;
  for (int i = 0; i < 100 && !caught_up; ++i) {
    const json j = json::parse(cluster.Cli({"-o", "json", "shards"}).out, nullptr, false);
    caught_up = !j.is_discarded() && !j["replicas"].empty();
    for (const json& r : j["replicas"]) {
      if (r["node"] == 1 && r["lag"] != 0) caught_up = false;
    }
    if (!caught_up) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(caught_up);
  cluster.KillNode(2);
  cluster.KillNode(3);
  const std::string config = cluster.dir() + "/node1.toml";
  // While node 1 runs, recover refuses to touch its data.
  EXPECT_EXIT_CODE(
      cluster.Cli({"recover", "--config", config, "--shard", "1", "--force-new-membership"}),
      kExitUnavailable);
  ASSERT_EQ(cluster.StopNode(1), 0);
  // Without the flag it says what it would do, and does nothing.
  CliResult r = cluster.Cli({"recover", "--config", config, "--shard", "1"});
  EXPECT_EXIT_CODE(r, kExitUsage);
  EXPECT_NE(r.err.find("--force-new-membership"), std::string::npos) << r.err;
  for (const std::string shard : {"1", "2"}) {
    r = cluster.Cli({"recover", "--config", config, "--shard", shard, "--force-new-membership"});
    EXPECT_EXIT_CODE(r, kExitOk);
    EXPECT_NE(r.out.find("replica 1 is its only member (2 membership changes appended"),
              std::string::npos)
        << r.out;
  }
  ASSERT_TRUE(cluster.StartNode(1));
  // Alone, node 1 leads both shards, serves every key and takes new writes.
  CliResult got;
  for (int i = 0; i < 100; ++i) {
    got = cluster.Cli({"--endpoints", node1, "get", "key0"});
    if (got.exit_code == 0) break;
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_EXIT_CODE(got, kExitOk);
  for (int i = 0; i < kKeys; ++i) {
    got = cluster.Cli({"--endpoints", node1, "get", "key" + std::to_string(i)});
    EXPECT_EXIT_CODE(got, kExitOk);
    EXPECT_EQ(got.out, "v" + std::to_string(i) + "\n");
  }
  EXPECT_EXIT_CODE(cluster.Cli({"--endpoints", node1, "put", "after", "recovery"}), kExitOk);
  const json members = json::parse(
      cluster.Cli({"--endpoints", node1, "-o", "json", "shard", "1"}).out, nullptr, false);
  ASSERT_FALSE(members.is_discarded());
  ASSERT_EQ(members["members"].size(), 1u) << members.dump();
  EXPECT_EQ(members["members"][0]["replica"], 1);
}

}  // namespace
}  // namespace flotilla::nodehost
