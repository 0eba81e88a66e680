// The daemon's TOML configuration and the shard map.
#include "tools/nodehost/config.h"

#include <gtest/gtest.h>

#include <map>

namespace flotilla::nodehost {
namespace {

constexpr const char* kNodes = R"(
[[nodes]]
id = 1
raft_address = "127.0.0.1:7101"
client_address = "127.0.0.1:7201"
[[nodes]]
id = 2
raft_address = "127.0.0.1:7102"
client_address = "127.0.0.1:7202"
[[nodes]]
id = 3
raft_address = "127.0.0.1:7103"
client_address = "127.0.0.1:7203"
)";

Result<DaemonConfig> Parse(const std::string& head) {
  return ParseConfig(head + kNodes, "test.toml");
}

TEST(Config, ShorthandShardsAndDefaultsFromTheNodeTable) {
  Result<DaemonConfig> c = Parse(R"(
node_id = 2
data_dir = "/tmp/x"
metrics_address = "127.0.0.1:7302"
[raft]
snapshot_entries = 100
[auth]
token_file = "/tmp/token"
[shards]
count = 3
)");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->raft_address, "127.0.0.1:7102");
  EXPECT_EQ(c->client_address, "127.0.0.1:7202");
  EXPECT_EQ(c->shards.size(), 3u);
  EXPECT_EQ(c->shards[0].members, (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_TRUE(c->Hosts(c->shards[2]));
  EXPECT_EQ(c->ToShardConfig(2).replica_id, 2u);
  EXPECT_EQ(c->ToShardConfig(2).snapshot_entries, 100u);
  EXPECT_EQ(c->InitialMembers(c->shards[0]).at(3), "127.0.0.1:7103");
  EXPECT_EQ(c->token_file, "/tmp/token");
}

TEST(Config, ExplicitShardsWithJoiningNode) {
  Result<DaemonConfig> c = Parse(R"(
node_id = 3
data_dir = "/tmp/x"
[[shards]]
id = 10
members = [1, 2]
joining = [3]
[[shards]]
id = 11
members = [1, 2]
)");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->Joins(c->shards[0]));
  EXPECT_TRUE(c->Hosts(c->shards[0]));
  EXPECT_FALSE(c->Hosts(c->shards[1]));
  EXPECT_EQ(c->shard_map().shard_ids(), (std::vector<uint64_t>{10, 11}));
}

TEST(Config, ErrorsNameTheKey) {
  const std::map<std::string, std::string> cases = {
      {"data_dir = \"/x\"\n[shards]\ncount = 1\n", "node_id"},
      {"node_id = 9\ndata_dir = \"/x\"\n[shards]\ncount = 1\n", "not listed in [[nodes]]"},
      {"node_id = 1\n[shards]\ncount = 1\n", "data_dir"},
      {"node_id = 1\ndata_dir = \"/x\"\n", "shards"},
      {"node_id = 1\ndata_dir = \"/x\"\n[shards]\ncount = 1\nmembers = [7]\n", "node 7"},
      {"node_id = \"one\"\ndata_dir = \"/x\"\n[shards]\ncount = 1\n", "node_id must be"},
      {"node_id = 1\ndata_dir = \"/x\"\n[tls]\nca_file = \"a\"\n[shards]\ncount = 1\n", "[tls]"},
      {"node_id = 1\ndata_dir = \"/x\"\nlog_level = \"loud\"\n[shards]\ncount = 1\n", "log_level"},
      {"node_id = = 1\n", "line 1"},
  };
  for (const auto& [text, expected] : cases) {
    Result<DaemonConfig> c = Parse(text);
    ASSERT_FALSE(c.ok()) << text;
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(c.status().message().find(expected), std::string::npos)
        << c.status().message() << " should mention " << expected;
    EXPECT_NE(c.status().message().find("test.toml"), std::string::npos);
  }
  EXPECT_EQ(LoadConfig("/nonexistent/nodehost.toml").status().code(), StatusCode::kNotFound);
}

TEST(ShardMap, HashTagsKeepRelatedKeysTogether) {
  ShardMap m({4, 1, 3, 2, 2});
  EXPECT_EQ(m.shard_ids(), (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(m.ShardOf("user{42}/name"), m.ShardOf("user{42}/mail"));
  EXPECT_EQ(m.ShardOf("user{42}/name"), m.ShardOf("42"));
  EXPECT_EQ(m.ShardOfPrefix("user{42}/"), m.ShardOf("42"));
  EXPECT_EQ(m.ShardOfPrefix("user"), std::nullopt);
  EXPECT_EQ(m.ShardOfPrefix("user{4"), std::nullopt);
  EXPECT_EQ(HashPart("a{}b"), "a{}b");  // an empty tag hashes the whole key
  // Keys spread over every shard.
  std::map<uint64_t, int> seen;
  for (int i = 0; i < 1000; ++i) ++seen[m.ShardOf("key" + std::to_string(i))];
  EXPECT_EQ(seen.size(), 4u);
  for (const auto& [shard, n] : seen) EXPECT_GT(n, 150) << "shard " << shard;
  // The hash is fixed: clients and daemons of any version agree.
  EXPECT_EQ(Fnv1a64("a"), 0xaf63dc4c8601ec8cull);
}

}  // namespace
}  // namespace flotilla::nodehost
