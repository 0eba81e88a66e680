// `nodehost logdb`, the offline inspector, against the data directory of a
// real daemon: it refuses while the daemon runs; list, dump, verify and
// snapshot in both formats once it is stopped; verify and snapshot exit
// non-zero and name the record or file after one bit is flipped in it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "logdb/format.h"
#include "logdb/kv_logdb.h"
#include "logdb/rocks_logdb.h"
#include "tests/logdb/test_util.h"
#include "tests/nodehost/test_cluster.h"
#include "tools/nodehost/cli.h"
#include "tools/nodehost/client.h"

namespace flotilla::nodehost {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::CliResult;
using testing::TestCluster;
using namespace std::chrono_literals;

#define EXPECT_EXIT_CODE(result, code)                                 \
  EXPECT_EQ((result).exit_code, (code)) << "stdout:\n"                 \
                                        << (result).out << "stderr:\n" \
                                        << (result).err

json Json(const CliResult& r) {
  json j = json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << r.out << r.err;
  return j;
}

class LogdbToolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TestCluster::Options o;
    o.snapshot_entries = 10;
    o.compaction_overhead = 1000;  // the log keeps its first entries (conf changes)
    cluster_ = std::make_unique<TestCluster>(o);
    ASSERT_TRUE(cluster_->Start()) << cluster_->log_of(1);
    ClientOptions co;
    co.endpoints = {cluster_->client_address(1), cluster_->client_address(2),
                    cluster_->client_address(3)};
    std::string error;
    std::unique_ptr<Client> c = Client::Create(co, &error);
    ASSERT_NE(c, nullptr) << error;
    for (int i = 0; i < 120; ++i) {
      PutResponse res;
      ASSERT_TRUE(c->Put("key" + std::to_string(i), "value" + std::to_string(i), &res).ok());
    }
  }
  std::string data_dir() const { return cluster_->dir() + "/node1"; }
  CliResult Logdb(std::vector<std::string> args) const {
    args.insert(args.begin(), {"logdb", "--data-dir", data_dir()});
    return cluster_->Cli(args);
  }
  // The first replica `list -o json` shows, with its last index.
  json FirstReplica() const {
    const json j = Json(Logdb({"-o", "json", "list"}));
    EXPECT_FALSE(j["replicas"].empty());
    return j["replicas"].empty() ? json::object() : j["replicas"][0];
  }

  std::unique_ptr<TestCluster> cluster_;
};

// Flips one bit of entry `index` of a replica through the KvStore under the
// LogDB, so that RocksDB's own checksums still pass and only ours can tell.
void FlipEntryBit(const std::string& data_dir, uint64_t shard, uint64_t replica, uint64_t index) {
  logdb::RocksOptions o;
  o.dir = data_dir + "/nodehost/logdb";  // the daemon's NodeHost lives under nodehost/
  auto db = logdb::OpenRocksLogDB(o);
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  auto* kv = dynamic_cast<logdb::KvLogDB*>(db->get());
  ASSERT_NE(kv, nullptr);
  std::string key;
  size_t offset = 0;
  size_t size = 0;
  ASSERT_TRUE(kv->LocateEntryForTesting(shard, replica, index, &key, &offset, &size).ok());
  ASSERT_TRUE(logdb::testing::FlipStoredBit(kv->store_for_testing(), key, (offset + size) * 8 - 6));
}

// Flips one bit of the hard state record of a replica, as above.
void FlipHardStateBit(const std::string& data_dir, uint64_t shard, uint64_t replica) {
  logdb::RocksOptions o;
  o.dir = data_dir + "/nodehost/logdb";
  auto db = logdb::OpenRocksLogDB(o);
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  auto* kv = dynamic_cast<logdb::KvLogDB*>(db->get());
  ASSERT_NE(kv, nullptr);
  std::string key;
  logdb::format::RecordKey(logdb::format::RecordType::kHardState, shard, replica, &key);
  ASSERT_TRUE(logdb::testing::FlipStoredBit(kv->store_for_testing(), key, 8 * 9 + 3));
}

TEST_F(LogdbToolTest, RefusesWhileTheDaemonHoldsTheDirectory) {
  const CliResult r = Logdb({"list"});
  EXPECT_EXIT_CODE(r, kExitUnavailable);
  EXPECT_NE(r.err.find("is in use by process"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("stop the daemon first"), std::string::npos) << r.err;
  EXPECT_EXIT_CODE(Logdb({"verify"}), kExitUnavailable);
}

TEST_F(LogdbToolTest, ListDumpVerifyAndSnapshotOfAStoppedDaemon) {
  ASSERT_EQ(cluster_->StopNode(1), 0);
  CliResult r = Logdb({"list"});
  EXPECT_EXIT_CODE(r, kExitOk);
  EXPECT_NE(r.out.find("SHARD  REPLICA  TERM"), std::string::npos) << r.out;
  const json list = Json(Logdb({"-o", "json", "list"}));
  ASSERT_EQ(list["replicas"].size(), 4u) << list.dump();
  for (const json& rep : list["replicas"]) {
    EXPECT_GT(rep["last_index"].get<uint64_t>(), 0u);
    EXPECT_GT(rep["term"].get<uint64_t>(), 0u);
    EXPECT_TRUE(rep.contains("bootstrap"));
  }
  // --config takes data_dir (and wal_dir) from the daemon's own config.
  r = cluster_->Cli({"logdb", "--config", cluster_->dir() + "/node1.toml", "list"});
  EXPECT_EXIT_CODE(r, kExitOk);
  EXPECT_NE(r.out.find("SHARD  REPLICA  TERM"), std::string::npos) << r.out;
  const json first = FirstReplica();
  const std::string shard = std::to_string(first["shard"].get<uint64_t>());
  const std::string replica = std::to_string(first["replica"].get<uint64_t>());

  r = Logdb({"dump", "--shard", shard, "--replica", replica});
  EXPECT_EXIT_CODE(r, kExitOk);
  EXPECT_NE(r.out.find("INDEX  TERM  TYPE"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("put key"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("conf-change"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("add-voter"), std::string::npos) << r.out;
  const json dump = Json(Logdb(
      {"-o", "json", "dump", "--shard", shard, "--replica", replica, "--from", "2", "--to", "4"}));
  ASSERT_EQ(dump["entries"].size(), 3u) << dump.dump();
  EXPECT_EQ(dump["entries"][0]["index"], 2u);
  EXPECT_TRUE(dump["entries"][0].contains("command"));

  r = Logdb({"verify"});
  EXPECT_EXIT_CODE(r, kExitOk);
  EXPECT_NE(r.out.find("every checksum matches"), std::string::npos) << r.out;
  const json verify = Json(Logdb({"-o", "json", "verify"}));
  EXPECT_TRUE(verify["ok"].get<bool>());
  EXPECT_GT(verify["entries"].get<uint64_t>(), 100u);
  EXPECT_GT(verify["snapshots"].get<uint64_t>(), 0u);

  r = Logdb({"snapshot"});
  EXPECT_EXIT_CODE(r, kExitOk);
  EXPECT_NE(r.out.find("sessions"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  ok"), std::string::npos) << r.out;
  const json snaps = Json(Logdb({"-o", "json", "snapshot"}));
  ASSERT_FALSE(snaps["snapshots"].empty()) << snaps.dump();
  EXPECT_EQ(snaps["snapshots"][0]["checksums"], "present");
}

TEST_F(LogdbToolTest, VerifyNamesAFlippedBitInAnEntry) {
  ASSERT_EQ(cluster_->StopNode(1), 0);
  const json first = FirstReplica();
  const uint64_t shard = first["shard"].get<uint64_t>();
  const uint64_t replica = first["replica"].get<uint64_t>();
  const uint64_t index = first["first_index"].get<uint64_t>() + 1;
  FlipEntryBit(data_dir(), shard, replica, index);
  const std::string where = "shard " + std::to_string(shard) + " replica " +
                            std::to_string(replica) + " index " + std::to_string(index) +
                            ": entry checksum mismatch";
  CliResult r = Logdb({"verify"});
  EXPECT_EXIT_CODE(r, kExitDamaged);
  EXPECT_NE(r.out.find("damaged: " + where), std::string::npos) << r.out;
  const json verify = Json(Logdb({"-o", "json", "verify"}));
  EXPECT_FALSE(verify["ok"].get<bool>());
  ASSERT_EQ(verify["problems"].size(), 1u) << verify.dump();
  // dump shows the entries before the damaged one, then names it.
  r = Logdb({"dump", "--shard", std::to_string(shard), "--replica", std::to_string(replica)});
  EXPECT_EXIT_CODE(r, kExitDamaged);
  EXPECT_NE(r.err.find(where), std::string::npos) << r.err;
}

// Issue 15: a damaged record in the middle of the LogDB's write-ahead log.
// RocksDB refuses it (docs/logdb.md, "Damage RocksDB finds"); verify says so,
// naming the file, which RocksDB's own status does not.
TEST_F(LogdbToolTest, VerifyNamesADamagedWriteAheadLogRecord) {
  ASSERT_EQ(cluster_->StopNode(1), 0);
  fs::path wal;
  for (const auto& e : fs::directory_iterator(data_dir() + "/nodehost/logdb")) {
    if (e.path().extension() == ".log" && (wal.empty() || e.file_size() > fs::file_size(wal))) {
      wal = e.path();
    }
  }
  ASSERT_FALSE(wal.empty());
  ASSERT_GT(fs::file_size(wal), 4096u);
  std::string bytes;
  {
    std::ifstream in(wal, std::ios::binary);
    std::ostringstream all;
    all << in.rdbuf();
    bytes = all.str();
  }
  bytes[bytes.size() / 2] ^= 0x08;
  std::ofstream(wal, std::ios::binary | std::ios::trunc) << bytes;
  const CliResult r = Logdb({"verify"});
  EXPECT_EXIT_CODE(r, kExitDamaged);
  EXPECT_NE(r.err.find(wal.filename().string()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("write-ahead log"), std::string::npos) << r.err;
}

TEST_F(LogdbToolTest, VerifyAndSnapshotNameAFlippedBitInASnapshotFile) {
  ASSERT_EQ(cluster_->StopNode(1), 0);
  const json snaps = Json(Logdb({"-o", "json", "snapshot"}));
  ASSERT_FALSE(snaps["snapshots"].empty()) << snaps.dump();
  const std::string dir = snaps["snapshots"][0]["dir"].get<std::string>();
  const fs::path file = fs::path(dir) / "sessions";
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream all;
    all << in.rdbuf();
    bytes = all.str();
  }
  ASSERT_FALSE(bytes.empty());
  bytes[bytes.size() / 2] ^= 0x01;
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
  CliResult r = Logdb({"verify"});
  EXPECT_EXIT_CODE(r, kExitDamaged);
  EXPECT_NE(r.out.find("snapshot " + dir + ": file sessions: checksum mismatch"), std::string::npos)
      << r.out;
  r = Logdb({"snapshot"});
  EXPECT_EXIT_CODE(r, kExitDamaged);
  EXPECT_NE(r.out.find("checksum mismatch"), std::string::npos) << r.out;
}

TEST_F(LogdbToolTest, ListAndVerifyNameAFlippedBitInAHardState) {
  ASSERT_EQ(cluster_->StopNode(1), 0);
  const json first = FirstReplica();
  const uint64_t shard = first["shard"].get<uint64_t>();
  const uint64_t replica = first["replica"].get<uint64_t>();
  FlipHardStateBit(data_dir(), shard, replica);
  const std::string where = "shard " + std::to_string(shard) + " replica " +
                            std::to_string(replica) + ": hard state checksum mismatch";
  CliResult r = Logdb({"verify"});
  EXPECT_EXIT_CODE(r, kExitDamaged);
  EXPECT_NE(r.out.find("damaged: " + where), std::string::npos) << r.out;
  r = Logdb({"list"});
  EXPECT_EXIT_CODE(r, kExitDamaged);
  EXPECT_NE(r.out.find("damaged: " + where), std::string::npos) << r.out;
  // The other replicas are still listed.
  const json list = Json(Logdb({"-o", "json", "list"}));
  ASSERT_EQ(list["replicas"].size(), 4u) << list.dump();
  EXPECT_TRUE(list["replicas"][0].contains("error"));
  EXPECT_GT(list["replicas"][1]["last_index"].get<uint64_t>(), 0u);
}

}  // namespace
}  // namespace flotilla::nodehost
