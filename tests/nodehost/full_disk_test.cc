// Issue 15, "Full disk": three nodehost daemons whose data directories share
// a small tmpfs the test mounts. The disk is filled under them: no daemon
// aborts, writes are refused with a clear error, /healthz and the metrics
// say why; once space is freed writes resume without a restart, and nothing
// acknowledged is lost.
#include <gtest/gtest.h>
#include <sys/statvfs.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/nodehost/prom_text.h"
#include "tests/nodehost/test_cluster.h"
#include "tests/tmpfs_mount.h"
#include "tools/nodehost/client.h"

namespace flotilla::nodehost {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kDiskBytes = 64 << 20;
constexpr uint64_t kReserveBytes = 8 << 20;

// GET `url`: the HTTP status code and the body.
std::pair<int, std::string> HttpGet(const std::string& url) {
  std::string out;
  FILE* p = ::popen(("curl -s -w '\\n%{http_code}' " + url).c_str(), "r");
  if (p == nullptr) return {0, ""};
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  ::pclose(p);
  const size_t nl = out.rfind('\n');
  if (nl == std::string::npos) return {0, out};
  return {std::atoi(out.c_str() + nl + 1), out.substr(0, nl)};
}

uint64_t FreeBytes(const std::string& dir) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return 0;
  return uint64_t{st.f_bavail} * st.f_frsize;
}

// Polls `pred` every 50 ms up to `limit`.
template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return pred();
}

class FullDiskTest : public ::testing::Test {
 protected:
  // One shard; the reserve measured every 100 ms.
  static testing::TestCluster::Options Options() {
    testing::TestCluster::Options o;
    o.shards = 1;
    o.min_free_bytes = kReserveBytes;
    o.storage_check_interval_ms = 100;
    return o;
  }
  std::unique_ptr<Client> MakeClient() {
    ClientOptions o;
    o.endpoints = SplitList(cluster_->endpoints());
    o.timeout = 2s;
    std::string error;
    std::unique_ptr<Client> c = Client::Create(o, &error);
    EXPECT_NE(c, nullptr) << error;
    return c;
  }
  bool Healthy(int node, int code) {
    return HttpGet("http://" + cluster_->metrics_address(node) + "/healthz").first == code;
  }
  // The leader's replica id of `shard`, from `shard -o json`.
  uint64_t LeaderOf(uint64_t shard) const {
    const testing::CliResult r = cluster_->Cli({"-o", "json", "shard", std::to_string(shard)});
    const nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
    if (j.is_discarded()) return 0;
    for (const nlohmann::json& rep : j["replicas"])
      if (rep["role"] == "leader") return rep["replica"].get<uint64_t>();
    return 0;
  }
  bool AllHealthy(int code) {
    for (int i = 1; i <= 3; ++i) {
      if (HttpGet("http://" + cluster_->metrics_address(i) + "/healthz").first != code) {
        return false;
      }
    }
    return true;
  }
  void ExpectAllAlive() {
    for (int i = 1; i <= 3; ++i) {
      EXPECT_TRUE(cluster_->Running(i)) << "node " << i << " died:\n" << cluster_->log_of(i);
    }
  }

  std::unique_ptr<testing::TestCluster> cluster_;
};

TEST_F(FullDiskTest, WritesAreRefusedAndResumeWithoutARestart) {
  flotilla::testing::TmpfsMount disk(kDiskBytes);
  FLOTILLA_SKIP_OR_FAIL_FULL_DISK(disk);
  testing::TestCluster::Options o = Options();
  o.data_root = disk.path();
  cluster_ = std::make_unique<testing::TestCluster>(o);
  ASSERT_TRUE(cluster_->Start());
  std::unique_ptr<Client> client = MakeClient();
  ASSERT_NE(client, nullptr);

  std::map<std::string, std::string> acknowledged;
  const std::string value(4 << 10, 'v');
  for (int i = 0; i < 50; ++i) {
    PutResponse r;
    const std::string key = "before-" + std::to_string(i);
    const CallInfo c = client->Put(key, value + key, &r);
    ASSERT_TRUE(c.ok()) << c.status.error_message();
    acknowledged[key] = value + key;
  }
  ASSERT_TRUE(AllHealthy(200));

  // Fill the disk to the last byte: below the reserve, and below what
  // RocksDB needs to write anything.
  const std::string filler = disk.path() + "/filler";
  flotilla::testing::TmpfsMount::Fill(filler);
  EXPECT_LT(FreeBytes(disk.path()), 1u << 20);
  ASSERT_TRUE(WaitFor([&] { return AllHealthy(503); }, 5s)) << "/healthz still says ok";
  const auto [code, body] = HttpGet("http://" + cluster_->metrics_address(1) + "/healthz");
  EXPECT_NE(body.find("storage: no_space"), std::string::npos) << body;
  EXPECT_NE(body.find("below the reserve"), std::string::npos) << body;
  const auto [rcode, rbody] = HttpGet("http://" + cluster_->metrics_address(1) + "/readyz");
  EXPECT_EQ(rcode, 503);
  EXPECT_NE(rbody.find("storage: no_space"), std::string::npos) << rbody;
  testing::PromParse metrics = testing::ParsePrometheusText(
      HttpGet("http://" + cluster_->metrics_address(1) + "/metrics").second);
  EXPECT_TRUE(metrics.ok()) << metrics.error;
  EXPECT_EQ(metrics.Sum("flotilla_storage_low"), 1.0);

  // Writes are refused, with the reason, however often they are tried.
  for (int i = 0; i < 20; ++i) {
    PutResponse r;
    const CallInfo c = client->Put("during-" + std::to_string(i), value, &r);
    ASSERT_FALSE(c.ok()) << "a write was acknowledged on a full disk";
    EXPECT_EQ(c.status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_NE(c.status.error_message().find("storage low"), std::string::npos)
        << c.status.error_message();
  }
  // Reads of acknowledged data still work.
  GetResponse g;
  ASSERT_TRUE(client->Get("before-7", false, &g).ok());
  EXPECT_EQ(g.value(), acknowledged["before-7"]);
  ExpectAllAlive();

  // Space is freed: writes resume by themselves.
  std::filesystem::remove(filler);
  ASSERT_TRUE(WaitFor([&] { return AllHealthy(200); }, 5s)) << "/healthz did not recover";
  for (int i = 0; i < 50; ++i) {
    PutResponse r;
    const std::string key = "after-" + std::to_string(i);
    CallInfo c;
    ASSERT_TRUE(WaitFor([&] { return (c = client->Put(key, value + key, &r)).ok(); }, 10s))
        << c.status.error_message();
    acknowledged[key] = value + key;
  }
  for (const auto& [key, v] : acknowledged) {
    GetResponse r;
    const CallInfo c = client->Get(key, false, &r);
    ASSERT_TRUE(c.ok()) << key << ": " << c.status.error_message();
    EXPECT_TRUE(r.found()) << key;
    EXPECT_EQ(r.value(), v) << key;
  }
  ExpectAllAlive();
  for (int i = 1; i <= 3; ++i) EXPECT_EQ(cluster_->StopNode(i), 0) << "node " << i;
}

// A full disk on one daemon costs that daemon its writes, not the shard: the
// leader whose disk fills hands leadership to a follower, the others go on
// committing, and the full one catches up once space is freed.
TEST_F(FullDiskTest, OneFullDiskCostsThatNodeNotTheShard) {
  flotilla::testing::TmpfsMount disk(kDiskBytes);
  FLOTILLA_SKIP_OR_FAIL_FULL_DISK(disk);
  testing::TestCluster::Options o = Options();
  o.node_data_root[3] = disk.path();
  cluster_ = std::make_unique<testing::TestCluster>(o);
  ASSERT_TRUE(cluster_->Start());
  std::unique_ptr<Client> client = MakeClient();
  ASSERT_NE(client, nullptr);
  // Node 3, whose disk will fill, leads.
  const testing::CliResult moved =
      cluster_->Cli({"--token-file", cluster_->token_file(), "transfer-leader", "1", "3"});
  ASSERT_EQ(moved.exit_code, 0) << moved.err;
  ASSERT_TRUE(WaitFor([&] { return LeaderOf(1) == 3; }, 5s));

  std::map<std::string, std::string> acknowledged;
  auto put = [&](const std::string& key, std::chrono::milliseconds patience) {
    PutResponse r;
    CallInfo c;
    const bool ok = WaitFor([&] { return (c = client->Put(key, "v-" + key, &r)).ok(); }, patience);
    if (ok) acknowledged[key] = "v-" + key;
    return ok ? std::string() : c.status.error_message();
  };
  for (int i = 0; i < 20; ++i) ASSERT_EQ(put("before-" + std::to_string(i), 5s), "");

  // Below the reserve, not yet exhausted: what a disk filling up looks like
  // at the first measurement that finds it below.
  const uint64_t free_now = FreeBytes(disk.path());
  ASSERT_GT(free_now, kReserveBytes);
  flotilla::testing::TmpfsMount::Fill(disk.path() + "/filler", free_now - kReserveBytes * 3 / 4);
  ASSERT_TRUE(WaitFor([&] { return Healthy(3, 503); }, 5s));
  // The shard goes on: within a few election timeouts a write succeeds, and
  // node 3 no longer leads.
  ASSERT_EQ(put("during-0", 10s), "") << "the shard stopped taking writes";
  EXPECT_NE(LeaderOf(1), 3u);
  for (int i = 1; i < 20; ++i) ASSERT_EQ(put("during-" + std::to_string(i), 5s), "");
  EXPECT_TRUE(Healthy(1, 200));
  EXPECT_TRUE(Healthy(2, 200));
  ExpectAllAlive();

  // Space is freed: node 3 takes writes again and catches up.
  std::filesystem::remove(disk.path() + "/filler");
  ASSERT_TRUE(WaitFor([&] { return AllHealthy(200); }, 5s));
  ClientOptions only3;
  only3.endpoints = {cluster_->client_address(3)};
  only3.timeout = 2s;
  std::string error;
  std::unique_ptr<Client> node3 = Client::Create(only3, &error);
  ASSERT_NE(node3, nullptr) << error;
  EXPECT_TRUE(WaitFor(
      [&] {
        GetResponse r;
        return node3->Get("during-19", /*stale=*/true, &r).ok() && r.found() &&
               r.value() == "v-during-19";
      },
      10s))
      << "node 3 did not catch up";
  for (const auto& [key, v] : acknowledged) {
    GetResponse r;
    const CallInfo c = client->Get(key, false, &r);
    ASSERT_TRUE(c.ok()) << key << ": " << c.status.error_message();
    EXPECT_EQ(r.value(), v) << key;
  }
  ExpectAllAlive();
}

}  // namespace
}  // namespace flotilla::nodehost
