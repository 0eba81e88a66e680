// NodeHostConfig and ShardConfig are checked up front: a bad value is an
// InvalidArgument naming its field, never an abort inside the core, a port
// gRPC cannot parse, or TLS silently off.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <random>

#include "engine/raft/types.h"
#include "flotilla/node_host.h"
#include "tests/engine/kv_state_machine.h"

namespace flotilla {
namespace {

std::string TempRoot() {
  std::random_device rd;
  return (std::filesystem::temp_directory_path() / ("flotilla-config-" + std::to_string(rd())))
      .string();
}

NodeHostConfig GoodHost(const std::string& root) {
  NodeHostConfig c;
  c.data_dir = root;
  c.raft_address = "127.0.0.1:0";
  c.in_memory_logdb = true;
  c.step_workers = 1;
  c.apply_workers = 1;
  return c;
}

ShardConfig GoodShard() {
  ShardConfig sc;
  sc.shard_id = 1;
  sc.replica_id = 1;
  return sc;
}

// Expects InvalidArgument whose message names `field`.
void ExpectInvalid(const Status& s, const std::string& field) {
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find(field), std::string::npos) << s.ToString();
}

TEST(EngineConfig, CreateRefusesEachBadNodeHostField) {
  const std::string root = TempRoot();
  const std::vector<std::pair<std::string, std::function<void(NodeHostConfig&)>>> cases = {
      {"data_dir", [](NodeHostConfig& c) { c.data_dir.clear(); }},
      {"raft_address", [](NodeHostConfig& c) { c.raft_address.clear(); }},
      {"raft_address", [](NodeHostConfig& c) { c.raft_address = "127.0.0.1:99999"; }},
      {"raft_address", [](NodeHostConfig& c) { c.raft_address = "127.0.0.1:80x"; }},
      {"raft_address", [](NodeHostConfig& c) { c.raft_address = "127.0.0.1"; }},
      {"rtt_ms", [](NodeHostConfig& c) { c.rtt_ms = 0; }},
      {"rtt_ms", [](NodeHostConfig& c) { c.rtt_ms = kMaxRttMs + 1; }},
      {"step_workers", [](NodeHostConfig& c) { c.step_workers = kMaxWorkers + 1; }},
      {"apply_workers", [](NodeHostConfig& c) { c.apply_workers = 1u << 31; }},
      {"max_proposal_queue_length", [](NodeHostConfig& c) { c.max_proposal_queue_length = 0; }},
      {"max_inbound_queue_length", [](NodeHostConfig& c) { c.max_inbound_queue_length = 0; }},
      {"max_proposal_queue_bytes", [](NodeHostConfig& c) { c.max_proposal_queue_bytes = 0; }},
      {"max_entry_bytes", [](NodeHostConfig& c) { c.max_entry_bytes = 0; }},
      {"max_entry_bytes",
       [](NodeHostConfig& c) { c.max_entry_bytes = c.max_proposal_queue_bytes + 1; }},
      {"max_concurrent_campaigns", [](NodeHostConfig& c) { c.max_concurrent_campaigns = 0; }},
      {"tls_ca_file",
       [](NodeHostConfig& c) {
         c.tls_cert_file = "cert.pem";
         c.tls_key_file = "key.pem";
       }},
      {"tls_ca_file", [](NodeHostConfig& c) { c.tls_ca_file = "ca.pem"; }},
      // A peer list without TLS would be silently ignored.
      {"tls_peer_names", [](NodeHostConfig& c) { c.tls_peer_names = {"node1"}; }},
      {"tls_peer_names",
       [](NodeHostConfig& c) {
         c.tls_ca_file = "ca.pem";
         c.tls_cert_file = "cert.pem";
         c.tls_key_file = "key.pem";
         c.tls_peer_names = {"node1", "a name"};
       }},
      {"deployment_secret", [](NodeHostConfig& c) { c.deployment_secret = "short"; }},
      {"deployment_secret",
       [](NodeHostConfig& c) { c.deployment_secret = "0123456789abcdef\n0123456789abcdef"; }},
      {"deployment_secret",
       [](NodeHostConfig& c) { c.deployment_secret = std::string(kMaxSecretBytes + 1, 'x'); }},
  };
  for (const auto& [field, mutate] : cases) {
    SCOPED_TRACE(field);
    NodeHostConfig c = GoodHost(root);
    mutate(c);
    Result<std::unique_ptr<NodeHost>> nh = NodeHost::Create(c);
    ASSERT_FALSE(nh.ok()) << "accepted a bad " << field;
    ExpectInvalid(nh.status(), field);
  }
  std::filesystem::remove_all(root);
}

TEST(EngineConfig, StartReplicaRefusesEachBadShardFieldWithoutAborting) {
  const std::string root = TempRoot();
  Result<std::unique_ptr<NodeHost>> nh = NodeHost::Create(GoodHost(root));
  ASSERT_TRUE(nh.ok()) << nh.status().ToString();
  const std::vector<std::pair<std::string, std::function<void(ShardConfig&)>>> cases = {
      {"shard_id", [](ShardConfig& c) { c.shard_id = 0; }},
      {"replica_id", [](ShardConfig& c) { c.replica_id = 0; }},
      // The core stops the process on these two.
      {"election_rtt", [](ShardConfig& c) { c.election_rtt = c.heartbeat_rtt; }},
      {"election_rtt",
       [](ShardConfig& c) {
         c.heartbeat_rtt = 20;
         c.election_rtt = 10;
       }},
      {"heartbeat_rtt", [](ShardConfig& c) { c.heartbeat_rtt = 0; }},
      {"election_rtt", [](ShardConfig& c) { c.election_rtt = UINT32_MAX; }},
      {"quiesce_after_election_timeouts",
       [](ShardConfig& c) { c.quiesce_after_election_timeouts = UINT32_MAX; }},
      {"lease_read",
       [](ShardConfig& c) {
         c.lease_read = true;
         c.check_quorum = false;
       }},
      {"max_inflight_msgs", [](ShardConfig& c) { c.max_inflight_msgs = 0; }},
      {"max_msg_bytes", [](ShardConfig& c) { c.max_msg_bytes = 0; }},
  };
  for (const auto& [field, mutate] : cases) {
    SCOPED_TRACE(field);
    ShardConfig sc = GoodShard();
    mutate(sc);
    Status s = (*nh)->StartReplica(
        sc, {{1, (*nh)->raft_address()}}, StartMode::kNewShard,
        [](uint64_t, uint64_t) { return std::make_unique<testing::KvStateMachine>(); });
    ExpectInvalid(s, field);
  }
  // The refused starts left nothing behind: a good one still starts.
  EXPECT_TRUE((*nh)
                  ->StartReplica(GoodShard(), {{1, (*nh)->raft_address()}}, StartMode::kNewShard,
                                 [](uint64_t, uint64_t) {
                                   return std::make_unique<testing::KvStateMachine>();
                                 })
                  .ok());
  (*nh)->Close();
  std::filesystem::remove_all(root);
}

TEST(EngineConfig, DefaultsAndBoundsAreValid) {
  NodeHostConfig c = GoodHost("/tmp/x");
  EXPECT_TRUE(Validate(c).ok());
  c.tls_ca_file = "ca.pem";
  c.tls_cert_file = "cert.pem";
  c.tls_key_file = "key.pem";
  c.rtt_ms = kMaxRttMs;
  c.step_workers = kMaxWorkers;
  c.max_entry_bytes = c.max_proposal_queue_bytes;
  EXPECT_TRUE(Validate(c).ok()) << Validate(c).ToString();
  ShardConfig sc = GoodShard();
  EXPECT_TRUE(Validate(sc).ok());
  sc.election_rtt = kMaxElectionRtt;
  sc.heartbeat_rtt = kMaxElectionRtt - 1;
  sc.quiesce_after_election_timeouts = UINT32_MAX / kMaxElectionRtt;
  sc.max_uncommitted_bytes = 0;
  sc.max_unapplied_bytes = 0;
  EXPECT_TRUE(Validate(sc).ok()) << Validate(sc).ToString();
}

TEST(EngineConfig, LoopbackAddressesAreRecognised) {
  for (const char* a : {"127.0.0.1:1", "127.1.2.3:0", "localhost:80", "[::1]:7000"}) {
    EXPECT_TRUE(IsLoopbackAddress(a)) << a;
  }
  for (const char* a : {"0.0.0.0:1", "10.0.0.1:1", "127.0.0.1.evil.com:1", "128.0.0.1:1", "[::]:1",
                        "host1", "127.0.0:1"}) {
    EXPECT_FALSE(IsLoopbackAddress(a)) << a;
  }
}

// Plaintext raft traffic on an address others can reach: refused unless
// NodeHostConfig::insecure says so (issue 14).
TEST(EngineConfig, PlaintextOnANonLoopbackRaftAddressNeedsInsecure) {
  NodeHostConfig c;
  c.data_dir = ::testing::TempDir() + "/flotilla-insecure-test";
  c.raft_address = "0.0.0.0:0";
  Result<std::unique_ptr<NodeHost>> nh = NodeHost::Create(c);
  ASSERT_FALSE(nh.ok());
  ExpectInvalid(nh.status(), "insecure");
  c.insecure = true;
  nh = NodeHost::Create(c);
  ASSERT_TRUE(nh.ok()) << nh.status().ToString();
  (*nh)->Close();
  std::filesystem::remove_all(c.data_dir);
}

// A refused secret is described, never quoted: Status travels to logs.
TEST(EngineConfig, ABadSecretIsNotQuotedInTheError) {
  NodeHostConfig c = GoodHost(TempRoot());
  c.deployment_secret = "tiny-secret";
  const Status s = Validate(c);
  ExpectInvalid(s, "deployment_secret");
  EXPECT_EQ(s.ToString().find("tiny-secret"), std::string::npos) << s.ToString();
  c.deployment_secret = "a-good-secret-of-32-bytes-length";
  EXPECT_TRUE(Validate(c).ok());
}

TEST(EngineConfig, HostPortIsParsedWhole) {
  EXPECT_TRUE(ValidateHostPort("a", "127.0.0.1:1", 1).ok());
  EXPECT_TRUE(ValidateHostPort("a", "[::1]:65535", 1).ok());
  EXPECT_TRUE(ValidateHostPort("a", "localhost:0", 0).ok());
  for (const char* bad : {"127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:18351xyz", "127.0.0.1:",
                          ":80", "127.0.0.1", "127.0.0.1:+80", "127.0.0.1:-1", "h:4294967297"}) {
    SCOPED_TRACE(bad);
    ExpectInvalid(ValidateHostPort("a.b", bad, 1), "a.b");
  }
}

// The member functions an embedder calls before Create/StartReplica give
// the same answer as the free functions, field names included.
TEST(EngineConfig, MemberValidateIsTheSameCheck) {
  NodeHostConfig c = GoodHost("/tmp/x");
  EXPECT_TRUE(c.Validate().ok());
  c.rtt_ms = 0;
  EXPECT_EQ(c.Validate().ToString(), Validate(c).ToString());
  EXPECT_NE(c.Validate().ToString().find("rtt_ms"), std::string::npos) << c.Validate().ToString();
  ShardConfig sc = GoodShard();
  EXPECT_TRUE(sc.Validate().ok());
  sc.heartbeat_rtt = sc.election_rtt;
  EXPECT_FALSE(sc.Validate().ok());
  EXPECT_EQ(sc.Validate().ToString(), Validate(sc).ToString());
}

// ReplicaInfo::role is an enum now; its names are the ones the daemon and
// its CLI always printed (the core's).
TEST(EngineConfig, ReplicaRoleNamesAreTheCores) {
  for (int i = 0; i <= static_cast<int>(raft::Role::kWitness); ++i)
    EXPECT_EQ(ReplicaRoleName(static_cast<ReplicaRole>(i)),
              raft::RoleName(static_cast<raft::Role>(i)));
}

// A refusal is never in RequestResult::data, which carries only what a
// state machine returned: SyncPropose and SyncRead to a shard this NodeHost
// does not run are kRejected with the reason in `error` (before: in data).
TEST(EngineConfig, ARefusalIsInErrorNeverInData) {
  const std::string root = TempRoot();
  auto nh = NodeHost::Create(GoodHost(root));
  ASSERT_TRUE(nh.ok()) << nh.status().ToString();
  for (const RequestResult& r : {(*nh)->SyncPropose(99, "x=1", std::chrono::seconds(1)),
                                 (*nh)->SyncRead(99, "x", std::chrono::seconds(1))}) {
    EXPECT_EQ(r.code, RequestCode::kRejected);
    EXPECT_TRUE(r.data.empty()) << r.data;
    EXPECT_NE(r.error.find("shard 99"), std::string::npos) << r.error;
  }
  (*nh)->Close();
  std::filesystem::remove_all(root);
}

// StartMode::kRestart (issue 18: `initial` no longer has three meanings):
// refused with NotFound when nothing is stored for the replica, with
// InvalidArgument when members are given, and a restart once stored.
TEST(EngineConfig, StartModeRestartNeedsStoredStateAndNoMembers) {
  const std::string root = TempRoot();
  auto nh = NodeHost::Create(GoodHost(root));
  ASSERT_TRUE(nh.ok()) << nh.status().ToString();
  auto kv = [](uint64_t, uint64_t) { return std::make_unique<testing::KvStateMachine>(); };
  const Status missing = (*nh)->StartReplica(GoodShard(), {}, StartMode::kRestart, kv);
  EXPECT_EQ(missing.code(), StatusCode::kNotFound) << missing.ToString();
  const Status with_members =
      (*nh)->StartReplica(GoodShard(), {{1, (*nh)->raft_address()}}, StartMode::kRestart, kv);
  EXPECT_EQ(with_members.code(), StatusCode::kInvalidArgument) << with_members.ToString();
  ASSERT_TRUE(
      (*nh)
          ->StartReplica(GoodShard(), {{1, (*nh)->raft_address()}}, StartMode::kNewShard, kv)
          .ok());
  ASSERT_TRUE((*nh)->StopReplica(1).ok());
  const Status restarted = (*nh)->StartReplica(GoodShard(), {}, StartMode::kRestart, kv);
  EXPECT_TRUE(restarted.ok()) << restarted.ToString();
  (*nh)->Close();
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace flotilla
