// Leader balance: each daemon spreads the leaders of the shards it hosts
// evenly over the daemons, so that no daemon does most of the work (issue
// 22 saw 6/1/1 leaders of 8 shards over three daemons after restarts).
//
// Every [raft] balance_interval_ms a daemon counts, over the shards it
// hosts, how many each node leads (every replica knows its shard's leader).
// When it leads at least two more than a live voter of one of the shards it
// leads, it hands that shard to that voter (NodeHost::TransferLeader): one
// transfer per daemon and round, so the daemons converge to counts within
// one of each other without racing each other. A voter is live while the
// transport's connection to its raft address is up; a voter that did not
// take a transfer is left alone for a while. [raft] balance_leaders = false
// turns it off.
//
// Thread-safety: PeerLiveness is called by the engine's threads and read by
// the balancer's (a mutex). LeaderBalancer owns one thread; Start and Stop
// from one thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "flotilla/events.h"
#include "flotilla/node_host.h"
#include "tools/nodehost/config.h"

namespace flotilla::nodehost {

// Forwards every event to `next` and remembers which peers' connections are
// up (ConnectionUp without a later ConnectionDown).
class PeerLiveness final : public EventListener {
 public:
  explicit PeerLiveness(std::shared_ptr<EventListener> next) : next_(std::move(next)) {}
  bool Up(const std::string& raft_address) const;

  void LeaderChanged(uint64_t shard, uint64_t replica, uint64_t leader, uint64_t term) override {
    next_->LeaderChanged(shard, replica, leader, term);
  }
  void ReplicaStarted(uint64_t shard, uint64_t replica) override {
    next_->ReplicaStarted(shard, replica);
  }
  void ReplicaStopped(uint64_t shard, uint64_t replica) override {
    next_->ReplicaStopped(shard, replica);
  }
  void SnapshotSent(uint64_t shard, uint64_t to, bool failed) override {
    next_->SnapshotSent(shard, to, failed);
  }
  void SnapshotReceived(uint64_t shard, uint64_t replica, uint64_t index) override {
    next_->SnapshotReceived(shard, replica, index);
  }
  void ConnectionUp(const std::string& address) override;
  void ConnectionDown(const std::string& address) override;

 private:
  std::shared_ptr<EventListener> next_;
  mutable std::mutex mu_;
  std::map<std::string, bool, std::less<>> up_;  // GUARDED_BY(mu_)
};

class LeaderBalancer {
 public:
  LeaderBalancer(NodeHost* nh, const DaemonConfig* config, const PeerLiveness* live)
      : nh_(nh), c_(config), live_(live) {}
  ~LeaderBalancer() { Stop(); }
  LeaderBalancer(const LeaderBalancer&) = delete;
  LeaderBalancer& operator=(const LeaderBalancer&) = delete;

  void Start();
  void Stop();
  // One round: hands at most one shard over; returns it (0: none).
  uint64_t RunOnce();

 private:
  using Clock = std::chrono::steady_clock;
  struct Move {
    uint64_t shard = 0;
    uint64_t target = 0;
  };
  // Picks the shard this daemon leads and the live voter to hand it to.
  Move Choose(const std::map<uint64_t, int>& led, const std::vector<uint64_t>& mine);
  void CheckLastMove(const NodeHostInfo& info);

  NodeHost* nh_;
  const DaemonConfig* c_;
  const PeerLiveness* live_;
  Move last_;  // the last transfer asked for, until it is checked
  Clock::time_point last_at_;
  std::map<uint64_t, Clock::time_point> avoid_until_;  // node id -> time
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace flotilla::nodehost
