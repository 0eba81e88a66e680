// A short example of embedding Flotilla: one process, three NodeHosts on
// loopback (in a real deployment each runs in its own process on its own
// machine), one shard with three replicas, and a custom state machine that
// keeps a counter.
//
//   build/tools/flotilla_embed_example
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "flotilla/node_host.h"

namespace {

// The user's state machine: "add N" adds N to a counter; a lookup returns it.
class Counter final : public flotilla::StateMachine {
 public:
  flotilla::Status Update(std::span<flotilla::SMEntry> entries) override {
    for (flotilla::SMEntry& e : entries) {
      if (e.cmd.rfind("add ", 0) == 0) total_ += std::stoll(std::string(e.cmd.substr(4)));
      e.result = static_cast<uint64_t>(total_);  // returned to the proposer
    }
    return flotilla::Status::Ok();
  }
  flotilla::Result<std::string> Lookup(std::string_view) override { return std::to_string(total_); }
  flotilla::Status SaveSnapshot(flotilla::SnapshotWriter* w) override {
    return w->Write(std::to_string(total_));
  }
  flotilla::Status RecoverFromSnapshot(flotilla::SnapshotReader* r) override {
    std::string all, chunk;
    do {
      FLOTILLA_RETURN_IF_ERROR(r->Read(4096, &chunk));
      all += chunk;
    } while (!chunk.empty());
    total_ = all.empty() ? 0 : std::stoll(all);
    return flotilla::Status::Ok();
  }

 private:
  int64_t total_ = 0;
};

}  // namespace

int main() {
  using namespace std::chrono_literals;
  const std::string root = (std::filesystem::temp_directory_path() / "flotilla-example").string();
  std::filesystem::remove_all(root);

  // 1. One NodeHost per process; here three, on loopback ports the OS picks.
  std::vector<std::unique_ptr<flotilla::NodeHost>> hosts;
  flotilla::Members members;
  for (uint64_t i = 1; i <= 3; ++i) {
    flotilla::NodeHostConfig cfg;
    cfg.data_dir = root + "/host" + std::to_string(i);
    cfg.raft_address = "127.0.0.1:0";
    cfg.rtt_ms = 10;
    auto nh = flotilla::NodeHost::Create(cfg);
    if (!nh.ok()) {
      std::fprintf(stderr, "NodeHost: %s\n", nh.status().ToString().c_str());
      return 1;
    }
    members[i] = (*nh)->raft_address();
    hosts.push_back(std::move(nh).value());
  }

  // 2. Start replica i of shard 1 on host i, each with its own Counter.
  for (uint64_t i = 1; i <= 3; ++i) {
    flotilla::ShardConfig sc;
    sc.shard_id = 1;
    sc.replica_id = i;
    sc.snapshot_entries = 1000;
    flotilla::Status s =
        hosts[i - 1]->StartReplica(sc, members, flotilla::StartMode::kNewShard,
                                   [](uint64_t, uint64_t) { return std::make_unique<Counter>(); });
    if (!s.ok()) {
      std::fprintf(stderr, "StartReplica: %s\n", s.ToString().c_str());
      return 1;
    }
  }

  // 3. Propose through any host (followers forward to the leader); retry
  //    while the shard has no leader yet.
  int64_t expected = 0;
  for (int i = 1; i <= 10; ++i) {
    flotilla::RequestResult r;
    do {
      r = hosts[static_cast<size_t>(i % 3)]->SyncPropose(1, "add " + std::to_string(i), 5s);
      if (!r.ok()) std::this_thread::sleep_for(50ms);
    } while (!r.ok());
    expected += i;
    std::printf("add %d -> counter %llu\n", i, static_cast<unsigned long long>(r.value));
  }

  // 4. A linearizable read on another replica sees every acknowledged write.
  flotilla::RequestResult read;
  do {
    read = hosts[2]->SyncRead(1, "", 5s);
  } while (read.code == flotilla::RequestCode::kDropped);
  std::printf("linearizable read on replica 3: %s (expected %lld)\n", read.data.c_str(),
              static_cast<long long>(expected));

  for (auto& h : hosts) h->Close();
  std::filesystem::remove_all(root);
  return read.data == std::to_string(expected) ? 0 : 1;
}
