// The operator's toolkit against three daemons (docs/operations.md).
//
// Backup and restore: `snapshot export` writes one
// shard's data, read linearizably from the replica of the daemon named, to a
// checksummed archive; the cluster is destroyed; `snapshot restore` writes
// the archive into a new cluster, where every key reads back equal. A
// flipped bit in the archive is refused before anything is written.
//
// `nodehost check consistency`: a hash entry proposed through Raft makes
// every replica hash its state at that index; they agree, until one
// replica's key-value store is changed behind its back (its daemon stopped,
// a value rewritten through RocksDB, the daemon started again): then that
// replica, and only it, is named.
//
// `nodehost check perf --load`: a few seconds of closed-loop puts, reported
// with the thresholds (never asserting a speed), its keys deleted after.
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
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

#define EXPECT_EXIT_CODE(result, code)                                 \
  EXPECT_EQ((result).exit_code, (code)) << "stdout:\n"                 \
                                        << (result).out << "stderr:\n" \
                                        << (result).err

CliResult Admin(const TestCluster& c, std::vector<std::string> args) {
  args.insert(args.begin(), {"--token-file", c.token_file()});
  return c.Cli(args);
}

std::unique_ptr<Client> ClientOf(const TestCluster& c) {
  ClientOptions o;
  o.endpoints = SplitList(c.endpoints());
  std::string error;
  return Client::Create(std::move(o), &error);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

TEST(BackupRestore, ExportOneShardRestoreIntoANewClusterEveryKeyEqualAndAFlippedBitRefused) {
  TestCluster::Options o;
  o.shards = 2;
  const std::string backup_dir = ::testing::TempDir() + "/backup-" + std::to_string(getpid());
  std::filesystem::create_directories(backup_dir);
  const std::string archive = backup_dir + "/shard1.fka";
  constexpr int kKeys = 200;
  std::map<std::string, std::string> shard1;  // what shard 1 acknowledged
  uint64_t last_index = 0;
  {
    TestCluster old_cluster(o);
    ASSERT_TRUE(old_cluster.Start());
    std::unique_ptr<Client> c = ClientOf(old_cluster);
    ASSERT_NE(c, nullptr);
    for (int i = 0; i < kKeys; ++i) {
      const std::string key = "key" + std::to_string(i);
      const std::string value = "value-" + std::to_string(i * 7919);
      PutResponse res;
      ASSERT_TRUE(c->Put(key, value, &res).ok()) << key;
      if (res.shard() != 1) continue;
      shard1[key] = value;
      last_index = std::max(last_index, res.index());
    }
    ASSERT_GT(shard1.size(), 20u);
    ASSERT_LT(shard1.size(), static_cast<size_t>(kKeys));
    // From node 2's replica, whatever its role: it holds every acknowledged
    // write (the export is a linearizable read).
    const CliResult r = Admin(old_cluster, {"-o", "json", "snapshot", "export", "--shard", "1",
                                            "--node", "2", "--out", archive});
    EXPECT_EXIT_CODE(r, kExitOk);
    const json j = json::parse(r.out, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << r.out;
    EXPECT_EQ(j["node"], 2);
    EXPECT_EQ(j["shard"], 1);
    EXPECT_EQ(j["keys"], shard1.size());
    EXPECT_GE(j["applied_index"].get<uint64_t>(), last_index);
    EXPECT_EQ(j["members"].size(), 3u) << j.dump();
  }  // the old cluster and its data are gone
  TestCluster fresh(o);
  ASSERT_TRUE(fresh.Start());
  CliResult v = Admin(fresh, {"snapshot", "verify", archive});
  EXPECT_EXIT_CODE(v, kExitOk);
  EXPECT_NE(v.out.find(": OK: shard 1, " + std::to_string(shard1.size()) + " keys"),
            std::string::npos)
      << v.out;

  // One flipped bit, in the middle of the data: refused, and nothing is
  // written.
  const std::string good = ReadFile(archive);
  std::string flipped = good;
  flipped[flipped.size() / 2] ^= 0x10;
  const std::string bad_archive = backup_dir + "/flipped.fka";
  WriteFile(bad_archive, flipped);
  v = Admin(fresh, {"snapshot", "verify", bad_archive});
  EXPECT_EXIT_CODE(v, kExitDamaged);
  CliResult r = Admin(fresh, {"snapshot", "restore", "--in", bad_archive});
  EXPECT_EXIT_CODE(r, kExitDamaged);
  EXPECT_NE(r.err.find("refused: the archive is damaged: checksum mismatch"), std::string::npos)
      << r.err;
  EXPECT_EQ(fresh.Cli({"get", shard1.begin()->first}).exit_code, kExitKeyNotFound);

  r = Admin(fresh, {"snapshot", "restore", "--in", archive});
  EXPECT_EXIT_CODE(r, kExitOk);
  EXPECT_NE(r.out.find("restored " + std::to_string(shard1.size()) + " keys of shard 1"),
            std::string::npos)
      << r.out;
  std::unique_ptr<Client> c = ClientOf(fresh);
  for (const auto& [key, value] : shard1) {
    GetResponse got;
    ASSERT_TRUE(c->Get(key, /*stale=*/false, &got).ok()) << key;
    EXPECT_TRUE(got.found()) << key;
    EXPECT_EQ(got.value(), value) << key;
  }
  // Only shard 1 was exported: shard 2's keys are not there.
  for (int i = 0; i < kKeys; ++i) {
    const std::string key = "key" + std::to_string(i);
    if (shard1.count(key) != 0) continue;
    EXPECT_EQ(fresh.Cli({"get", key}).exit_code, kExitKeyNotFound) << key;
    break;
  }
  // A second restore would write over a cluster that holds keys.
  r = Admin(fresh, {"snapshot", "restore", "--in", archive});
  EXPECT_EXIT_CODE(r, kExitRejected);
  EXPECT_NE(r.err.find("already holds keys"), std::string::npos) << r.err;
  std::filesystem::remove_all(backup_dir);
}

// Rewrites `key`'s value in a stopped daemon's key-value store of a shard.
void TamperOffline(const std::string& kv_dir, const std::string& key) {
  rocksdb::Options options;
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(options, kv_dir, &raw).ok()) << kv_dir;
  std::unique_ptr<rocksdb::DB> db(raw);
  std::string value;
  ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), "d" + key, &value).ok()) << key;
  rocksdb::WriteOptions sync;
  sync.sync = true;
  ASSERT_TRUE(db->Put(sync, "d" + key, value + "-tampered").ok());
  ASSERT_TRUE(db->Close().ok());
}

TEST(ConsistencyCheck, ReplicasAgreeThenTheOneAlteredBehindItsBackIsNamed) {
  TestCluster::Options o;
  o.shards = 2;
  TestCluster cluster(o);
  ASSERT_TRUE(cluster.Start());
  std::string shard1_key;
  for (int i = 0; i < 40; ++i) {
    const CliResult put = cluster.Cli({"-o", "json", "put", "k" + std::to_string(i), "v"});
    ASSERT_EQ(put.exit_code, 0) << put.err;
    if (shard1_key.empty() && json::parse(put.out)["shard"] == 1)
      shard1_key = "k" + std::to_string(i);
  }
  ASSERT_FALSE(shard1_key.empty());
  CliResult r = Admin(cluster, {"check", "consistency"});
  EXPECT_EXIT_CODE(r, kExitOk);
  EXPECT_NE(r.out.find(": 3 replicas agree"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("MISMATCH"), std::string::npos) << r.out;

  ASSERT_EQ(cluster.StopNode(3), 0);
  TamperOffline(cluster.dir() + "/node3/kv/shard-1-replica-3", shard1_key);
  ASSERT_TRUE(cluster.StartNode(3));
  ASSERT_TRUE(cluster.WaitReady(30s));

  r = Admin(cluster, {"-o", "json", "check", "consistency", "--shard", "1"});
  EXPECT_EXIT_CODE(r, kExitCheckFailed);
  const json j = json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  ASSERT_EQ(j["shards"].size(), 1u);
  const json& s = j["shards"][0];
  EXPECT_EQ(s["result"], "mismatch");
  ASSERT_EQ(s["replicas"].size(), 3u) << s.dump();
  for (const json& rep : s["replicas"])
    EXPECT_EQ(rep["result"], rep["replica"] == 3 ? "MISMATCH" : "match") << s.dump();
  EXPECT_NE(
      s["summary"].get<std::string>().find("replica 3 (node 3) differs from the 2 that agree"),
      std::string::npos)
      << s.dump();
  // The table names it too; shard 2, untouched, still agrees.
  r = Admin(cluster, {"check", "consistency"});
  EXPECT_EXIT_CODE(r, kExitCheckFailed);
  EXPECT_NE(r.out.find("shard 1 at index"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("MISMATCH: replica 3 (node 3)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(": 3 replicas agree"), std::string::npos) << r.out;
}

// A witness has no state machine: it is left out, not reported unchecked.
TEST(ConsistencyCheck, AWitnessIsLeftOut) {
  TestCluster::Options o;
  o.shards = 1;
  o.spare_nodes = 1;  // node 4, the witness
  TestCluster cluster(o);
  ASSERT_TRUE(cluster.Start());
  ASSERT_EQ(cluster.Cli({"put", "k", "v"}).exit_code, 0);
  ASSERT_TRUE(cluster.StartNode(4, {1}));
  const std::string all = cluster.endpoints() + "," + cluster.client_address(4);
  CliResult r = Admin(cluster, {"--endpoints", all, "add-witness", "1", "4"});
  ASSERT_EQ(r.exit_code, kExitOk) << r.err;
  bool knows_leader = false;
  for (int i = 0; i < 100 && !knows_leader; ++i) {
    const json j = json::parse(
        cluster.Cli({"--endpoints", cluster.client_address(4), "-o", "json", "shards"}).out,
        nullptr, false);
    knows_leader = !j.is_discarded() && !j["replicas"].empty() &&
                   j["replicas"][0]["role"] == "witness" && j["replicas"][0]["leader"] != 0;
    if (!knows_leader) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(knows_leader) << "node 4 never became a witness that knows the leader";
  r = Admin(cluster, {"--endpoints", all, "check", "consistency", "--shard", "1"});
  EXPECT_EXIT_CODE(r, kExitOk);
  EXPECT_NE(r.out.find(": 3 replicas agree"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("not checked"), std::string::npos) << r.out;
}

TEST(CheckPerfLoad, PutsToTheDaemonsReportsRateAndP99AndCleansUp) {
  TestCluster::Options o;
  o.shards = 2;
  TestCluster cluster(o);
  ASSERT_TRUE(cluster.Start());
  // Bounds no machine misses: PASS, with the figures.
  CliResult r =
      cluster.Cli({"-o", "json", "check", "perf", "--load", "--load-seconds", "1", "--load-clients",
                   "4", "--min-puts-per-second", "0", "--max-put-p99-ms", "600000"});
  EXPECT_EXIT_CODE(r, kExitOk);
  json j = json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["result"], "PASS");
  EXPECT_FALSE(j.contains("disk")) << "--load alone measures no disk";
  EXPECT_GT(j["load"]["puts"].get<uint64_t>(), 0u);
  EXPECT_GT(j["load"]["puts_per_second"].get<double>(), 0);
  EXPECT_LE(j["load"]["put_p50_ms"].get<double>(), j["load"]["put_p99_ms"].get<double>());
  EXPECT_EQ(j["load"]["keys_left"], 0);
  // Its keys are gone afterwards.
  CliResult scan = cluster.Cli({"-o", "json", "scan", "__nodehost_check_perf/"});
  EXPECT_EQ(json::parse(scan.out, nullptr, false)["kvs"].size(), 0u) << scan.out;
  // Bounds no machine meets: FAIL with both reasons, and the disk measured
  // too when a directory is given.
  r = cluster.Cli({"check", "perf", "--load", "--load-seconds", "0.5", "--dir", cluster.dir(),
                   "--seconds", "0.2", "--max-fsync-p99-ms", "600000", "--min-puts-per-second",
                   "1e12", "--max-put-p99-ms", "0"});
  EXPECT_EXIT_CODE(r, kExitCheckFailed);
  EXPECT_NE(r.out.find("disk " + cluster.dir() + ": "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("puts/s, p50 "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("puts/s is below 1000000000000; put p99 "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ms is above 0.00 ms"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace flotilla::nodehost
