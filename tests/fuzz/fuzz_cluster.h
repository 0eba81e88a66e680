// The live cluster the fuzzer attacks: three NodeHosts with the in-memory
// LogDB on the in-process network, driven on the fuzzer's thread (no
// engine threads), with two shards of three replicas each. Every random
// choice comes from fixed seeds, so one input always gives one run and a
// crash replays exactly.
//
// A Tap sits between each host's transport and its NodeHost: it records the
// genuine messages and snapshot streams the hosts exchange, which the fuzz
// program may replay later (a delayed or duplicated packet, which Raft must
// tolerate) or mutate.
//
// Not thread-safe: one thread drives it.
#pragma once

#include <cstdio>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/node_host_impl.h"
#include "logdb/memory_logdb.h"
#include "tests/engine/kv_state_machine.h"
#include "tests/sim/sim_disk.h"
#include "transport/inproc_transport.h"

namespace flotilla::fuzz {

inline constexpr int kHosts = 3;
inline constexpr uint64_t kShards = 2;
// How many genuine messages and snapshot streams are kept for replay.
inline constexpr size_t kMaxCaptured = 256;
inline constexpr size_t kMaxCapturedSnapshots = 8;

struct CapturedMessage {
  int to_host = 0;
  std::string source;
  raft::Message message;
};

// A snapshot stream as it arrived: its install message and its files.
struct CapturedSnapshot {
  int to_host = 0;
  raft::Message install;
  std::map<std::string, std::string> files;
};

// What the hosts exchange, in the order it was delivered: the latest
// kMaxCaptured messages (the first ones with keep_first), and the first
// kMaxCapturedSnapshots streams.
struct Capture {
  bool enabled = true;
  bool keep_first = false;
  std::deque<CapturedMessage> messages;
  std::vector<CapturedSnapshot> snapshots;
};

// Forwards everything to the NodeHost, recording it on the way.
class Tap final : public transport::Handler {
 public:
  Tap(int host, Capture* capture) : host_(host), capture_(capture) {}
  void set_target(engine::NodeHostImpl* target) { target_ = target; }

  void HandleBatch(std::vector<raft::Message>&& messages,
                   const std::string& source_address) override {
    if (capture_->enabled) {
      for (const raft::Message& m : messages) {
        if (capture_->messages.size() >= kMaxCaptured) {
          if (capture_->keep_first) break;
          capture_->messages.pop_front();
        }
        capture_->messages.push_back({host_, source_address, m});
      }
    }
    target_->HandleBatch(std::move(messages), source_address);
  }
  void HandleUnreachable(raft::ShardId shard, raft::ReplicaId replica) override {
    target_->HandleUnreachable(shard, replica);
  }
  Status AdmitSnapshot(const raft::Message& install, const std::string& source) override {
    return target_->AdmitSnapshot(install, source);
  }
  void HandleSnapshot(raft::Message install, std::string path) override {
    if (capture_->enabled && capture_->snapshots.size() < kMaxCapturedSnapshots) {
      CapturedSnapshot s{host_, install, {}};
      std::error_code ec;
      for (const auto& f : std::filesystem::directory_iterator(path, ec)) {
        s.files[f.path().filename().string()] = ReadFile(f.path().string());
      }
      capture_->snapshots.push_back(std::move(s));
    }
    target_->HandleSnapshot(std::move(install), std::move(path));
  }
  void HandleSnapshotStatus(raft::ShardId shard, raft::ReplicaId replica, bool failed) override {
    target_->HandleSnapshotStatus(shard, replica, failed);
  }
  void HandleConnectionUp(const std::string& address) override {
    target_->HandleConnectionUp(address);
  }
  void HandleConnectionDown(const std::string& address) override {
    target_->HandleConnectionDown(address);
  }

 private:
  static std::string ReadFile(const std::string& path) {
    std::string out;
    if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
      char buf[4096];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
      std::fclose(f);
    }
    return out;
  }

  const int host_;
  Capture* const capture_;
  engine::NodeHostImpl* target_ = nullptr;
};

class FuzzCluster {
 public:
  // `root` is an empty directory the cluster owns.
  explicit FuzzCluster(const std::string& root) : root_(root), rng_(0x5eed) {
    // Shard 1 snapshots and compacts often, so that lagging replicas are
    // caught up by snapshot streams; shard 2 quiesces when idle.
    shards_[0].snapshot_entries = 8;
    shards_[0].compaction_overhead = 2;
    shards_[1].quiesce_after_election_timeouts = 2;
    for (int i = 1; i <= kHosts; ++i) {
      mems_.push_back(logdb::NewMemoryLogDB());
      taps_.push_back(std::make_unique<Tap>(i, &capture_));
      hosts_.emplace_back();
      StartHost(i);
    }
  }
  ~FuzzCluster() {
    for (auto& h : hosts_) h->Close();
  }

  static std::string Name(int i) { return "host" + std::to_string(i); }
  engine::NodeHostImpl& host(int i) { return *hosts_[static_cast<size_t>(i - 1)]; }
  Tap& tap(int i) { return *taps_[static_cast<size_t>(i - 1)]; }
  transport::InProcNetwork& net() { return net_; }
  Capture& capture() { return capture_; }
  // Replicas that failed to start again after a Restart, and why.
  const std::vector<std::string>& start_failures() const { return start_failures_; }
  const std::string& root() const { return root_; }
  // Where host i's transport writes received snapshot streams.
  std::string snapshot_dir(int i) const { return root_ + "/h" + std::to_string(i) + "/in"; }

  // One round: a tick when `tick`, then a pass and apply round of every
  // host, then every message delivered.
  void Step(bool tick) {
    if (tick) {
      for (auto& h : hosts_) h->AdvanceTick();
    }
    for (auto& h : hosts_) h->RunOnce();
    net_.DeliverAll(rng_);
  }
  // Host i crashes and starts again from what its LogDB and its snapshot
  // directories hold (every pass's writes were synced).
  void Restart(int i) {
    host(i).Close();
    hosts_[static_cast<size_t>(i - 1)].reset();
    mems_[static_cast<size_t>(i - 1)]->Restart();
    StartHost(i);
  }
  // Steps (a tick every fourth) until `done` holds; false after `max_steps`.
  template <typename Done>
  bool DriveUntil(Done done, int max_steps) {
    for (int step = 0; step < max_steps; ++step) {
      if (done()) return true;
      Step(step % 4 == 0);
    }
    return done();
  }

 private:
  void StartHost(int i) {
    NodeHostConfig c;
    c.data_dir = root_ + "/h" + std::to_string(i);
    c.raft_address = Name(i);
    c.step_workers = 1;
    c.apply_workers = 1;
    engine::NodeHostDeps d;
    d.logdb = std::make_unique<sim::SimDisk>(mems_[static_cast<size_t>(i - 1)].get());
    d.start_threads = false;
    d.seed = 1000 + static_cast<uint64_t>(i);
    Tap* tap = taps_[static_cast<size_t>(i - 1)].get();
    const std::string snapdir = snapshot_dir(i);
    d.make_transport = [this, name = c.raft_address, snapdir, tap](transport::Registry* reg,
                                                                   transport::Handler*) {
      transport::TransportConfig tc;
      tc.listen_address = name;
      tc.snapshot_dir = snapdir;
      return std::make_unique<transport::InProcTransport>(&net_, tc, reg, tap);
    };
    auto& nh = hosts_[static_cast<size_t>(i - 1)];
    nh = std::make_unique<engine::NodeHostImpl>(c, std::move(d));
    tap->set_target(nh.get());
    if (!nh->Init().ok()) std::abort();
    Members members;
    for (int m = 1; m <= kHosts; ++m) members[static_cast<uint64_t>(m)] = Name(m);
    for (uint64_t shard = 1; shard <= kShards; ++shard) {
      ShardConfig sc = shards_[shard - 1];
      sc.shard_id = shard;
      sc.replica_id = static_cast<uint64_t>(i);
      Status s = nh->StartReplica(sc, members, StartMode::kNewShard, [](uint64_t, uint64_t) {
        return std::make_unique<testing::KvStateMachine>();
      });
      // A replica that cannot start again is missing from the checks.
      if (!s.ok())
        start_failures_.push_back(Name(i) + ": shard " + std::to_string(shard) + ": " +
                                  s.ToString());
    }
  }

  const std::string root_;
  transport::InProcNetwork net_;
  std::mt19937_64 rng_;
  Capture capture_;
  std::vector<std::string> start_failures_;
  ShardConfig shards_[kShards];
  std::vector<std::unique_ptr<logdb::MemoryLogDB>> mems_;  // outlive their hosts
  std::vector<std::unique_ptr<Tap>> taps_;
  std::vector<std::unique_ptr<engine::NodeHostImpl>> hosts_;
};

}  // namespace flotilla::fuzz
