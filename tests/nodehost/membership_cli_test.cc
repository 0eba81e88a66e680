// Safe membership changes from the CLI: remove-replica refuses to take a
// shard below a quorum of running voters unless forced, and add-replica
// --via-learner adds a voter through a non-voting replica that caught up,
// under load, without a failed request.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "tests/nodehost/test_cluster.h"
#include "tools/nodehost/cli.h"
#include "tools/nodehost/client.h"

namespace flotilla::nodehost {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using testing::CliResult;
using testing::TestCluster;

CliResult Admin(const TestCluster& c, std::vector<std::string> args) {
  args.insert(args.begin(), {"--token-file", c.token_file()});
  return c.Cli(args);
}

// The members of `shard` as `nodehost shard -o json` reports them.
std::map<uint64_t, std::string> Members(const TestCluster& c, const std::string& endpoints,
                                        uint64_t shard) {
  std::map<uint64_t, std::string> out;
  const CliResult r =
      c.Cli({"--endpoints", endpoints, "-o", "json", "shard", std::to_string(shard)});
  const json j = json::parse(r.out, nullptr, false);
  if (j.is_discarded()) return out;
  for (const json& m : j["members"]) out[m["replica"].get<uint64_t>()] = m["kind"];
  return out;
}

TEST(MembershipCli, RemoveReplicaRefusesToLoseTheQuorumUnlessForced) {
  TestCluster::Options o;
  o.shards = 2;
  TestCluster cluster(o);
  ASSERT_TRUE(cluster.Start());
  cluster.KillNode(3);
  // Until nodes 1 and 2 elect a leader of the shards 3 led, their replicas
  // know none, and the CLI counts such a replica as not running (CI saw the
  // removal of 3 refused for "1 is down ... or without a leader").
  ASSERT_TRUE(cluster.WaitReady(30s, 3));
  // Shard 1 without voter 2 would have voters 1 and 3, of which only 1 runs.
  CliResult r = Admin(cluster, {"remove-replica", "1", "2"});
  EXPECT_EQ(r.exit_code, kExitRejected) << r.out << r.err;
  EXPECT_NE(r.err.find("would lose the shard's quorum"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("3 is down"), std::string::npos) << r.err;
  EXPECT_EQ(Members(cluster, cluster.endpoints(), 1).count(2), 1u) << "nothing was removed";
  // Removing the dead voter leaves 1 and 2, both running: allowed.
  r = Admin(cluster, {"remove-replica", "1", "3"});
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  // --force removes a voter of shard 2 even though only node 1 would be left
  // running of voters 1 and 3 (the shard then has no quorum: the operator
  // asked for it).
  r = Admin(cluster, {"remove-replica", "--force", "2", "2"});
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
}

TEST(MembershipCli, AddReplicaViaLearnerUnderLoadFailsNoRequest) {
  TestCluster::Options o;
  o.shards = 1;
  o.spare_nodes = 1;  // node 4
  TestCluster cluster(o);
  ASSERT_TRUE(cluster.Start());
  ClientOptions co;
  co.endpoints = {cluster.client_address(1), cluster.client_address(2), cluster.client_address(3)};
  std::string error;
  std::unique_ptr<Client> client = Client::Create(co, &error);
  ASSERT_NE(client, nullptr) << error;
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::string first_failure;
  std::thread load([&] {
    for (int i = 0; !stop; ++i) {
      PutResponse res;
      const CallInfo info = client->Put("k" + std::to_string(i % 500), std::to_string(i), &res);
      if (info.ok()) {
        ++ok;
      } else if (failed++ == 0) {
        first_failure = info.status.error_message();
      }
    }
  });
  // The new daemon starts to join shard 1; the command adds it as
  // non-voting, waits for it to catch up, and promotes it.
  ASSERT_TRUE(cluster.StartNode(4, {1}));
  const std::string all = cluster.endpoints() + "," + cluster.client_address(4);
  const CliResult r = Admin(
      cluster, {"--endpoints", all, "add-replica", "--via-learner", "--wait", "120", "1", "4"});
  std::this_thread::sleep_for(500ms);  // writes after the promotion too
  stop = true;
  load.join();
  EXPECT_EQ(r.exit_code, kExitOk) << r.out << r.err;
  EXPECT_NE(r.out.find("add-non-voting: shard 1 replica 4"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("promote: shard 1 replica 4"), std::string::npos) << r.out;
  EXPECT_EQ(Members(cluster, all, 1)[4], "voter");
  EXPECT_GT(ok.load(), 0);
  EXPECT_EQ(failed.load(), 0) << first_failure;
}

}  // namespace
}  // namespace flotilla::nodehost
