// The logging hook (include/flotilla/logging.h): an embedder's sink gets the
// engine's lines at and above its level, and nothing once it is removed.
#include "flotilla/logging.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "engine/node_host_impl.h"
#include "logdb/memory_logdb.h"
#include "tests/engine/kv_state_machine.h"
#include "transport/inproc_transport.h"

namespace flotilla::engine {
namespace {

struct Captured {
  std::mutex mu;
  std::vector<std::pair<LogLevel, std::string>> lines;
  bool Has(LogLevel level, const std::string& part) {
    std::lock_guard<std::mutex> l(mu);
    for (const auto& [lv, text] : lines)
      if (lv == level && text.find(part) != std::string::npos) return true;
    return false;
  }
  LogSink Sink() {
    return [this](LogLevel level, std::string_view line) {
      std::lock_guard<std::mutex> l(mu);
      lines.emplace_back(level, std::string(line));
    };
  }
  size_t size() {
    std::lock_guard<std::mutex> l(mu);
    return lines.size();
  }
};

// Starts and stops replica 1 of shard `shard` on a NodeHost without
// threads, which logs "shard S replica 1: started (new)" at info.
void StartAndStopAReplica(uint64_t shard) {
  std::random_device rd;
  const std::string root =
      (std::filesystem::temp_directory_path() / ("flotilla-logging-" + std::to_string(rd())))
          .string();
  transport::InProcNetwork net;
  NodeHostConfig c;
  c.data_dir = root;
  c.raft_address = "host1";
  NodeHostDeps d;
  d.logdb = logdb::NewMemoryLogDB();
  d.start_threads = false;
  d.make_transport = [&](transport::Registry* reg, transport::Handler* h) {
    transport::TransportConfig tc;
    tc.listen_address = "host1";
    tc.snapshot_dir = root + "/snapshots-in";
    return std::make_unique<transport::InProcTransport>(&net, tc, reg, h);
  };
  {
    NodeHostImpl nh(c, std::move(d));
    ASSERT_TRUE(nh.Init().ok());
    ShardConfig sc;
    sc.shard_id = shard;
    sc.replica_id = 1;
    ASSERT_TRUE(nh.StartReplica(sc, {{1, "host1"}}, StartMode::kNewShard, [](uint64_t, uint64_t) {
                    return std::make_unique<testing::KvStateMachine>();
                  }).ok());
    nh.Close();
  }
  std::filesystem::remove_all(root);
}

TEST(Logging, TheEmbeddersSinkGetsTheEnginesLinesAtItsLevel) {
  Captured info;
  SetLogSink(info.Sink(), LogLevel::kInfo);
  StartAndStopAReplica(41);
  EXPECT_TRUE(info.Has(LogLevel::kInfo, "shard 41 replica 1: started (new)"));

  // At kWarning the same info line is not passed on (nor formatted).
  Captured warnings;
  SetLogSink(warnings.Sink(), LogLevel::kWarning);
  StartAndStopAReplica(42);
  EXPECT_FALSE(warnings.Has(LogLevel::kInfo, "shard 42 replica 1: started"));
  EXPECT_FALSE(info.Has(LogLevel::kInfo, "shard 42"));  // the old sink is out

  // A null sink restores spdlog's default logger: neither sink hears more.
  SetLogSink(nullptr);
  const size_t before = info.size() + warnings.size();
  StartAndStopAReplica(43);
  EXPECT_EQ(info.size() + warnings.size(), before);
}

TEST(Logging, LevelsHaveNames) {
  EXPECT_EQ(LogLevelName(LogLevel::kDebug), "debug");
  EXPECT_EQ(LogLevelName(LogLevel::kWarning), "warning");
  EXPECT_EQ(LogLevelName(LogLevel::kCritical), "critical");
}

}  // namespace
}  // namespace flotilla::engine
