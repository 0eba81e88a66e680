// The daemon's TOML configuration and the shard map.
#include "tools/nodehost/config.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "flotilla/version.h"
#include "tools/nodehost/cli.h"
#include "tools/nodehost/serve.h"

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
  // Production timing (docs/cli.md, "Timing defaults"): a 1 s election
  // timeout that a saturated host does not miss, and idle shards quiesced.
  EXPECT_EQ(c->ToNodeHostConfig().rtt_ms, 100u);
  EXPECT_EQ(c->ToShardConfig(2).election_rtt, 10u);
  EXPECT_EQ(c->ToShardConfig(2).quiesce_after_election_timeouts, 3u);
  EXPECT_TRUE(c->balance_leaders);
  EXPECT_EQ(c->balance_interval_ms, 5000u);
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

// Each text is refused with InvalidArgument that names the key: ranges are
// checked (nothing truncated, no float taken for an integer), ports parsed
// whole, unknown keys refused, and the engine's rules applied up front.
// Plaintext raft traffic on an address others can reach is refused unless
// the file says insecure = true (issue 14).
TEST(Config, PlaintextOnANonLoopbackRaftAddressNeedsInsecure) {
  const std::string nodes =
      "[[nodes]]\nid = 1\nraft_address = \"10.1.2.3:7101\"\nclient_address = "
      "\"127.0.0.1:7201\"\n[shards]\ncount = 1\n";
  Result<DaemonConfig> c = ParseConfig("node_id = 1\ndata_dir = \"/x\"\n" + nodes, "t.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("insecure = true"), std::string::npos)
      << c.status().ToString();
  c = ParseConfig("node_id = 1\ndata_dir = \"/x\"\ninsecure = true\n" + nodes, "t.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->ToNodeHostConfig().insecure);
  EXPECT_FALSE(
      ParseConfig("node_id = 1\ndata_dir = \"/x\"\ninsecure = \"yes\"\n" + nodes, "t.toml").ok());
}

TEST(Config, BadValuesAreRefusedNamingTheKey) {
  const std::string head = "node_id = 1\ndata_dir = \"/x\"\n";
  const std::string shards = "[shards]\ncount = 1\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {head + "[raft]\nelection_rtt = 4294967296\n" + shards, "raft.election_rtt"},
      {head + "[raft]\nelection_rtt = 4294967306\nheartbeat_rtt = 1\n" + shards,
       "raft.election_rtt"},
      {head + "[raft]\nelection_rtt = 5\nheartbeat_rtt = 5\n" + shards, "raft.election_rtt"},
      {head + "[raft]\nheartbeat_rtt = 0\n" + shards, "raft.heartbeat_rtt"},
      {head + "[raft]\nstep_workers = 100000\n" + shards, "raft.step_workers"},
      {head + "[raft]\nquiesce_after_election_timeouts = 4294967295\n" + shards,
       "quiesce_after_election_timeouts"},
      {head + "rtt_ms = 0\n" + shards, "rtt_ms"},
      {head + "[raft]\nbalance_interval_ms = 0\n" + shards, "balance_interval_ms"},
      {head + "[raft]\nbalance_leaders = 1\n" + shards, "balance_leaders"},
      {head + "rtt_ms = 100000000\n" + shards, "rtt_ms"},
      {head + "[client]\nmax_request_bytes = 4294967296\n" + shards, "client.max_request_bytes"},
      {head + "[client]\nrequest_timeout_ms = 0\n" + shards, "client.request_timeout_ms"},
      {head + "[shards]\ncount = 1e9\n", "shards.count"},
      {head + "[shards]\ncount = 1000000000\n", "shards.count"},
      {head + "[shards]\ncount = 2.0\n", "shards.count"},
      {head + "raft_address = \"127.0.0.1:99999\"\n" + shards, "raft_address"},
      {head + "client_address = \"127.0.0.1:0\"\n" + shards, "client_address"},
      {head + "metrics_address = \"127.0.0.1:18351xyz\"\n" + shards, "metrics_address"},
      {head + "metrics_address = \"127.0.0.1\"\n" + shards, "metrics_address"},
      {head + "electon_rtt = 10\n" + shards, "unknown key electon_rtt"},
      {head + "[raft]\nelecton_rtt = 10\n" + shards, "unknown key raft.electon_rtt"},
      {head + "[tls]\nca = \"a\"\n" + shards, "unknown key tls.ca"},
      {head + "[auth]\ntoken = \"secret\"\n" + shards, "unknown key auth.token"},
      {head + "[shards]\ncount = 1\ncout = 2\n", "unknown key shards.cout"},
      {head + "raft = 3\n" + shards, "raft must be a table"},
  };
  for (const auto& [text, expected] : cases) {
    SCOPED_TRACE(text);
    Result<DaemonConfig> c = Parse(text);
    if (c.ok()) {
      ADD_FAILURE() << "accepted; should mention " << expected;
      continue;
    }
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(c.status().message().find(expected), std::string::npos)
        << c.status().message() << " should mention " << expected;
  }
  // A node's own addresses in [[nodes]] are checked too.
  Result<DaemonConfig> c =
      ParseConfig(head + shards + "[[nodes]]\nid = 1\nraft_address = \"127.0.0.1:7101\"\n" +
                      "client_address = \"127.0.0.1:72010\"\n",
                  "test.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("client_address"), std::string::npos)
      << c.status().ToString();
}

// Peers and clients are trusted apart (docs/security.md): a CA that signs
// client certificates may not also admit them to the raft port.
TEST(Config, PeerAndClientTrustAreKeptApart) {
  const std::string head = "node_id = 1\ndata_dir = \"/x\"\n[shards]\ncount = 1\n";
  const std::string tls = "[tls]\nca_file = \"ca\"\ncert_file = \"c\"\nkey_file = \"k\"\n";
  const std::string names = "peer_names = [\"node1\", \"10.0.0.2\"]\n";
  const auto client_tls = [](const std::string& ca) {
    return "[client_tls]\nca_file = \"" + ca + "\"\ncert_file = \"cc\"\nkey_file = \"ck\"\n";
  };
  const std::vector<std::pair<std::string, std::string>> refused = {
      {head + tls, "tls.peer_names"},
      {head + tls + client_tls("ca"), "tls.peer_names"},
      {head + "[client_tls]\nca_file = \"x\"\n", "[client_tls] needs all"},
      {head + "[client_tls]\nclient_names = [\"ops\"]\n", "client_names needs [client_tls]"},
      {head + "[auth]\nevery_call = true\n", "every_call needs credentials"},
      {head + "[auth]\nevery_call = 1\n", "auth.every_call must be true or false"},
      {head + tls + "peer_names = \"node1\"\n", "tls.peer_names must be an array"},
      {head + tls + "peer_names = [\"\"]\n", "tls.peer_names must hold non-empty"},
      {head + "[client_tls]\nnames = []\n", "unknown key client_tls.names"},
  };
  for (const auto& [text, expected] : refused) {
    SCOPED_TRACE(text);
    Result<DaemonConfig> c = Parse(text);
    ASSERT_FALSE(c.ok());
    EXPECT_NE(c.status().message().find(expected), std::string::npos) << c.status().message();
  }
  Result<DaemonConfig> c = Parse(head + tls + names);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->ToNodeHostConfig().tls_peer_names, (std::vector<std::string>{"node1", "10.0.0.2"}));
  EXPECT_EQ(c->client_tls_files().ca, "ca") << "the client API shares [tls]";
  c = Parse(head + tls + client_tls("client-ca") + "client_names = [\"ops\"]\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->client_tls_files().ca, "client-ca");
  EXPECT_EQ(c->client_names, std::vector<std::string>{"ops"});
  c = Parse(head + "[auth]\ntoken_file = \"t\"\nsecret_file = \"s\"\nevery_call = true\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->every_call);
  EXPECT_EQ(c->secret_file, "s");
}

TEST(Config, BoundsThemselvesAreAccepted) {
  Result<DaemonConfig> c = Parse(R"(
node_id = 1
data_dir = "/x"
rtt_ms = 60000
metrics_address = "127.0.0.1:65535"
[raft]
election_rtt = 1048576
heartbeat_rtt = 1048575
step_workers = 1024
[client]
max_request_bytes = 33554432
[shards]
count = 100000
)");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->shards.size(), kMaxShards);
  EXPECT_EQ(c->election_rtt, 1048576u);
}

// [peer_limits] reaches the engine's one set of stream limits (review
// finding D6: the transport had its own copy with other defaults), and the
// engine's rules on them apply to the file.
TEST(Config, PeerLimitsReachTheEngine) {
  const std::string head = "node_id = 1\ndata_dir = \"/x\"\n";
  const std::string shards = "[shards]\ncount = 1\n";
  Result<DaemonConfig> c = Parse(head + shards);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const NodeHostConfig defaults;
  EXPECT_EQ(c->ToNodeHostConfig().snapshot_streams.max_streams,
            defaults.snapshot_streams.max_streams);
  EXPECT_EQ(c->ToNodeHostConfig().snapshot_streams.total_timeout_ms, 20u * 60 * 1000);
  c = Parse(head +
            "[peer_limits]\nsnapshot_streams = 3\nsnapshot_streams_per_peer = 1\n"
            "snapshot_bytes_per_peer = 1000\nsnapshot_idle_timeout_ms = 500\n"
            "snapshot_total_timeout_ms = 9000\nsnapshot_evict_idle_ms = 100\n"
            "batch_streams_per_peer = 4\nbatch_inflight_bytes_per_peer = 2048\n"
            "batch_streams = 6\nbatch_inflight_bytes = 4096\n" +
            shards);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const NodeHostConfig nc = c->ToNodeHostConfig();
  EXPECT_EQ(nc.snapshot_streams.max_streams, 3u);
  EXPECT_EQ(nc.snapshot_streams.max_streams_per_peer, 1u);
  EXPECT_EQ(nc.snapshot_streams.max_bytes_per_peer, 1000u);
  EXPECT_EQ(nc.snapshot_streams.idle_timeout_ms, 500u);
  EXPECT_EQ(nc.snapshot_streams.total_timeout_ms, 9000u);
  EXPECT_EQ(nc.snapshot_streams.evict_idle_ms, 100u);
  EXPECT_EQ(nc.batch_streams.max_streams_per_peer, 4u);
  EXPECT_EQ(nc.batch_streams.max_inflight_bytes_per_peer, 2048u);
  EXPECT_EQ(nc.batch_streams.max_streams, 6u);
  EXPECT_EQ(nc.batch_streams.max_inflight_bytes, 4096u);
  for (const auto& [text, expected] : std::vector<std::pair<std::string, std::string>>{
           {"[peer_limits]\nsnapshot_streams = 2\nsnapshot_streams_per_peer = 3\n",
            "snapshot_streams.max_streams_per_peer"},
           {"[peer_limits]\nsnapshot_idle_timeout_ms = 2000000\n",
            "snapshot_streams.idle_timeout_ms"},
           {"[peer_limits]\nbatch_streams_per_peer = 1\n", "peer_limits.batch_streams_per_peer"},
           {"[peer_limits]\nbatch_inflight_bytes_per_peer = 0\n",
            "peer_limits.batch_inflight_bytes_per_peer"},
           {"[peer_limits]\nbatch_streams = 2\nbatch_streams_per_peer = 3\n",
            "batch_streams.max_streams_per_peer"},
           {"[peer_limits]\nbatch_inflight_bytes = 1000\n",
            "batch_streams.max_inflight_bytes_per_peer"},
           {"[peer_limits]\nbatch_stream = 4\n", "unknown key peer_limits.batch_stream"},
       }) {
    Result<DaemonConfig> bad = Parse(head + text + shards);
    ASSERT_FALSE(bad.ok()) << text;
    EXPECT_NE(bad.status().message().find(expected), std::string::npos) << bad.status().ToString();
  }
}

// Writes `bytes` to a fresh file and returns its path.
std::string WriteTemp(const std::string& bytes) {
  static int n = 0;
  const std::string path =
      ::testing::TempDir() + "/token-" + std::to_string(getpid()) + "-" + std::to_string(n++);
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

// The daemon and the CLI both call ReadTokenFile, so they agree on every file.
TEST(TokenFile, OneLineHoldsTheTokenAndAnythingElseIsAnError) {
  for (const char* ok : {"s3cret", "s3cret\n", "s3cret\r\n"}) {
    Result<std::string> t = ReadTokenFile(WriteTemp(ok), "auth.token_file");
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_EQ(*t, "s3cret");
  }
  for (const std::string& bad : std::vector<std::string>{
           "", "\n", "s3cret\nother\n", "s3cret\n\n", "s3 cret\n", " s3cret\n", "s3cret \n",
           "s3cret\t\n", "s3c\rret\n", std::string(kMaxTokenBytes + 1, 'a')}) {
    SCOPED_TRACE(bad);
    Result<std::string> t = ReadTokenFile(WriteTemp(bad), "auth.token_file");
    ASSERT_FALSE(t.ok()) << "accepted token " << *t;
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(t.status().message().find("auth.token_file"), std::string::npos);
  }
  EXPECT_TRUE(ReadTokenFile(WriteTemp(std::string(kMaxTokenBytes, 'a') + "\n"), "t").ok());
  EXPECT_EQ(ReadTokenFile("/nonexistent/token", "t").status().code(), StatusCode::kNotFound);
}

// Runs `nodehost serve` on `config`, expects exit 2, and returns what it
// printed, so that a test can check it was refused for the right reason.
std::string RefusedServe(const std::string& config) {
  ::testing::internal::CaptureStderr();
  const int rc = RunServe(config);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, kServeBadConfig) << err;
  return err;
}

// `nodehost serve` exits with 2 for a config it refuses, before anything starts
// (no port, no data directory). Tables go after the top-level keys, or those
// would belong to the table.
TEST(Serve, ABadConfigOrTokenFileExitsWithTwo) {
  const std::string dir = ::testing::TempDir() + "/serve-" + std::to_string(getpid());
  const std::string top = "node_id = 1\ndata_dir = \"" + dir + "\"\n";
  const std::string good = top + "[shards]\ncount = 1\n" + kNodes;
  const auto refused = [&](const std::string& config, const std::string& why) {
    const std::string path = WriteTemp(config);
    const std::string err = RefusedServe(path);
    EXPECT_NE(err.find(why), std::string::npos) << err << " should mention " << why;
    // `serve --check-config` refuses it for the same reason.
    ::testing::internal::CaptureStderr();
    EXPECT_EQ(CheckServeConfig(path), kServeBadConfig);
    const std::string checked = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(checked.find(why), std::string::npos) << checked << " should mention " << why;
  };
  EXPECT_NE(RefusedServe("/nonexistent/nodehost.toml").find("cannot read"), std::string::npos);
  refused(good + "[raft]\nelection_rtt = 4294967296\n", "raft.election_rtt");
  refused("metrics_address = \"127.0.0.1:99999\"\n" + good, "metrics_address");
  refused("wal = \"/x\"\n" + good, "unknown key wal");
  // Read after the config: a two-line token file.
  const std::string token = WriteTemp("one\ntwo\n");
  refused(good + "[auth]\ntoken_file = \"" + token + "\"\n", "more than one line");
  // A secret too short to be one, or of two lines.
  refused(good + "[auth]\nsecret_file = \"" + WriteTemp("short\n") + "\"\n", "at least 16");
  refused(good + "[auth]\nsecret_file = \"" + WriteTemp("0123456789abcdef\n0123456789abcdef\n") +
              "\"\n",
          "more than one line");
  // [client_tls] whose CA is a copy of [tls]'s, without peer_names: any
  // client certificate could speak Raft.
  const std::string pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  const std::string ca = WriteTemp(pem);
  const std::string files = "cert_file = \"" + ca + "\"\nkey_file = \"" + ca + "\"\n";
  refused(good + "[tls]\nca_file = \"" + ca + "\"\n" + files + "[client_tls]\nca_file = \"" +
              WriteTemp(pem) + "\"\n" + files,
          "the same CA");
  // A file [tls] names that is missing: the start would fail in
  // NodeHost::Create, the check finds it first.
  refused(good + "[tls]\nca_file = \"" + ca +
              "\"\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"" + ca +
              "\"\npeer_names = [\"n1\"]\n",
          "/nonexistent/cert.pem");
  EXPECT_FALSE(std::filesystem::exists(dir + "/nodehost")) << "nothing started";
}

// `nodehost serve --check-config FILE` accepts a good config, says what it
// found, and starts nothing (no data directory, no port).
TEST(Serve, CheckConfigAcceptsAGoodConfigAndStartsNothing) {
  const std::string dir = ::testing::TempDir() + "/check-" + std::to_string(getpid());
  const std::string path =
      WriteTemp("node_id = 1\ndata_dir = \"" + dir + "\"\n[shards]\ncount = 4\n" + kNodes);
  ::testing::internal::CaptureStdout();
  const char* argv[] = {"nodehost", "serve", "--check-config", path.c_str()};
  EXPECT_EQ(RunCli(4, const_cast<char**>(argv)), kServeOk);
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find(path + ": ok (node 1, 4 shards"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir)) << "nothing started";
  // --config and --check-config exclude each other.
  const char* both[] = {"nodehost",   "serve",          "--config",
                        path.c_str(), "--check-config", path.c_str()};
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(RunCli(6, const_cast<char**>(both)), kExitUsage);
  ::testing::internal::GetCapturedStderr();
}

// `nodehost --version` names the daemon's and the library's versions.
TEST(Cli, VersionNamesTheDaemonAndTheLibrary) {
  ::testing::internal::CaptureStdout();
  const char* argv[] = {"nodehost", "--version"};
  EXPECT_EQ(RunCli(2, const_cast<char**>(argv)), 0);
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(out, "nodehost " + std::string(kHeaderVersion) + " (libflotilla " +
                     std::string(Version()) + ")\n");
}

// Every global flag is also read from NODEHOST_<FLAG>; a bad value there is a
// usage error like a bad flag.
TEST(Cli, GlobalFlagsComeFromTheEnvironment) {
  for (const char* var : {"NODEHOST_TIMEOUT", "NODEHOST_OUTPUT"}) {
    SCOPED_TRACE(var);
    ASSERT_EQ(setenv(var, "nonsense", 1), 0);
    const char* argv[] = {"nodehost", "status"};
    ::testing::internal::CaptureStderr();
    EXPECT_EQ(RunCli(2, const_cast<char**>(argv)), kExitUsage);
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("nonsense"), std::string::npos) << err;
    unsetenv(var);
  }
}

}  // namespace
}  // namespace flotilla::nodehost
