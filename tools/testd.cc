// flotilla_testd: a small NodeHost daemon for multi-process tests. It hosts
// replicas of shards 1..S of a key-value state machine and answers one
// command per line on stdin, one answer per line on stdout:
//
//   put SHARD KEY VALUE   -> ok INDEX | err CODE
//   get SHARD KEY         -> val VALUE | err CODE      (linearizable read)
//   quit
//
// Usage: flotilla_testd --id N --dir DIR --members 1=host:port,2=host:port,...
//                       [--shards S] [--rtt-ms R]
// It prints "ready ADDRESS" once its NodeHost listens.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "flotilla/node_host.h"

namespace {

class Kv final : public flotilla::StateMachine {
 public:
  flotilla::Status Update(std::span<flotilla::SMEntry> entries) override {
    for (flotilla::SMEntry& e : entries) {
      const auto sp = e.cmd.find(' ');
      if (sp != std::string_view::npos)
        kv_[std::string(e.cmd.substr(0, sp))] = std::string(e.cmd.substr(sp + 1));
      e.result = e.index;
    }
    return flotilla::Status::Ok();
  }
  flotilla::Result<std::string> Lookup(std::string_view key) override {
    auto it = kv_.find(std::string(key));
    return it == kv_.end() ? std::string() : it->second;
  }
  flotilla::Status SaveSnapshot(flotilla::SnapshotWriter* w) override {
    std::string out;
    for (const auto& [k, v] : kv_) out += k + " " + v + "\n";
    return w->Write(out);
  }
  flotilla::Status RecoverFromSnapshot(flotilla::SnapshotReader* r) override {
    kv_.clear();
    std::string all, chunk;
    do {
      FLOTILLA_RETURN_IF_ERROR(r->Read(1 << 20, &chunk));
      all += chunk;
    } while (!chunk.empty());
    std::istringstream in(all);
    std::string k, v;
    while (in >> k >> v) kv_[k] = v;
    return flotilla::Status::Ok();
  }

 private:
  std::map<std::string, std::string> kv_;
};

}  // namespace

int main(int argc, char** argv) {
  uint64_t id = 0;
  uint64_t shards = 1;
  uint64_t rtt_ms = 10;
  std::string dir;
  flotilla::Members members;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const std::string v = argv[i + 1];
    if (k == "--id")
      id = std::stoull(v);
    else if (k == "--dir")
      dir = v;
    else if (k == "--shards")
      shards = std::stoull(v);
    else if (k == "--rtt-ms")
      rtt_ms = std::stoull(v);
    else if (k == "--members") {
      std::stringstream ss(v);
      std::string item;
      while (std::getline(ss, item, ',')) {
        const auto eq = item.find('=');
        members[std::stoull(item.substr(0, eq))] = item.substr(eq + 1);
      }
    }
  }
  if (id == 0 || dir.empty() || members.count(id) == 0) {
    std::fprintf(stderr, "usage: %s --id N --dir DIR --members 1=h:p,2=h:p,3=h:p [--shards S]\n",
                 argv[0]);
    return 2;
  }
  // stdout carries the answers; logs go to stderr.
  spdlog::set_default_logger(spdlog::stderr_color_mt("testd"));
  spdlog::set_level(spdlog::level::warn);
  flotilla::NodeHostConfig cfg;
  cfg.data_dir = dir;
  cfg.raft_address = members.at(id);
  cfg.rtt_ms = rtt_ms;
  cfg.step_workers = 1;
  cfg.apply_workers = 1;
  auto nh = flotilla::NodeHost::Create(cfg);
  if (!nh.ok()) {
    std::fprintf(stderr, "testd: %s\n", nh.status().ToString().c_str());
    return 1;
  }
  for (uint64_t s = 1; s <= shards; ++s) {
    flotilla::ShardConfig sc;
    sc.shard_id = s;
    sc.replica_id = id;
    sc.snapshot_entries = 200;
    sc.compaction_overhead = 50;
    flotilla::Status st =
        (*nh)->StartReplica(sc, members, flotilla::StartMode::kNewShard,
                            [](uint64_t, uint64_t) { return std::make_unique<Kv>(); });
    if (!st.ok()) {
      std::fprintf(stderr, "testd: start shard %llu: %s\n", static_cast<unsigned long long>(s),
                   st.ToString().c_str());
      return 1;
    }
  }
  std::printf("ready %s\n", (*nh)->raft_address().c_str());
  std::fflush(stdout);
  std::string line;
  const auto timeout = std::chrono::seconds(5);
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string cmd;
    uint64_t shard = 0;
    std::string key, value;
    in >> cmd >> shard >> key >> value;
    if (cmd == "quit") break;
    flotilla::RequestResult r;
    if (cmd == "put") {
      r = (*nh)->SyncPropose(shard, key + " " + value, timeout);
      if (r.ok()) std::printf("ok %llu\n", static_cast<unsigned long long>(r.value));
    } else if (cmd == "get") {
      r = (*nh)->SyncRead(shard, key, timeout);
      if (r.ok()) std::printf("val %s\n", r.data.c_str());
    } else {
      std::printf("err unknown-command\n");
      std::fflush(stdout);
      continue;
    }
    if (!r.ok()) std::printf("err %s\n", std::string(flotilla::RequestCodeName(r.code)).c_str());
    std::fflush(stdout);
  }
  (*nh)->Close();
  return 0;
}
