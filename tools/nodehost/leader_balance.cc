#include "tools/nodehost/leader_balance.h"

#include <spdlog/spdlog.h>

namespace flotilla::nodehost {
namespace {

// A transfer not done within this many rounds failed; its target is then
// avoided for kAvoidRounds rounds.
constexpr int kTransferRounds = 2;
constexpr int kAvoidRounds = 6;

}  // namespace

bool PeerLiveness::Up(const std::string& raft_address) const {
  std::lock_guard<std::mutex> l(mu_);
  const auto it = up_.find(raft_address);
  return it != up_.end() && it->second;
}

void PeerLiveness::ConnectionUp(const std::string& address) {
  {
    std::lock_guard<std::mutex> l(mu_);
    up_[address] = true;
  }
  next_->ConnectionUp(address);
}

void PeerLiveness::ConnectionDown(const std::string& address) {
  {
    std::lock_guard<std::mutex> l(mu_);
    up_[address] = false;
  }
  next_->ConnectionDown(address);
}

void LeaderBalancer::Start() {
  thread_ = std::thread([this] {
    const auto interval = std::chrono::milliseconds(c_->balance_interval_ms);
    std::unique_lock<std::mutex> l(mu_);
    while (!cv_.wait_for(l, interval, [this] { return stop_; })) {
      l.unlock();
      RunOnce();
      l.lock();
    }
  });
}

void LeaderBalancer::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LeaderBalancer::CheckLastMove(const NodeHostInfo& info) {
  if (last_.shard == 0) return;
  const auto interval = std::chrono::milliseconds(c_->balance_interval_ms);
  for (const ReplicaInfo& r : info.replicas) {
    if (r.shard_id != last_.shard) continue;
    if (r.leader_id == last_.target) {
      last_ = {};
      return;
    }
  }
  if (Clock::now() - last_at_ < kTransferRounds * interval) return;
  spdlog::info("nodehost: leader balance: node {} did not take shard {}; avoiding it for a while",
               last_.target, last_.shard);
  avoid_until_[last_.target] = Clock::now() + kAvoidRounds * interval;
  last_ = {};
}

LeaderBalancer::Move LeaderBalancer::Choose(const std::map<uint64_t, int>& led,
                                            const std::vector<uint64_t>& mine) {
  const auto count = [&led](uint64_t node) {
    const auto it = led.find(node);
    return it == led.end() ? 0 : it->second;
  };
  const int own = count(c_->node_id);
  Move best;
  int best_count = own - 1;  // a target must lead at least two fewer
  for (uint64_t shard : mine) {
    Result<ShardMembership> m = nh_->GetMembership(shard);
    if (!m.ok()) continue;
    for (const auto& [node, address] : m->voters) {
      if (node == c_->node_id || !live_->Up(address)) continue;
      const auto avoid = avoid_until_.find(node);
      if (avoid != avoid_until_.end() && Clock::now() < avoid->second) continue;
      if (count(node) < best_count) {
        best = {shard, node};
        best_count = count(node);
      }
    }
  }
  return best;
}

uint64_t LeaderBalancer::RunOnce() {
  const NodeHostInfo info = nh_->GetInfo();
  CheckLastMove(info);
  if (last_.shard != 0) return 0;  // one transfer at a time
  std::map<uint64_t, int> led;     // node id -> shards it leads, of those hosted here
  std::vector<uint64_t> mine;
  for (const ReplicaInfo& r : info.replicas) {
    if (r.leader_id != 0) ++led[r.leader_id];
    if (r.role == ReplicaRole::kLeader) mine.push_back(r.shard_id);
  }
  const Move move = Choose(led, mine);
  if (move.shard == 0) return 0;
  const Status s = nh_->TransferLeader(move.shard, move.target);
  if (!s.ok()) {
    spdlog::info("nodehost: leader balance: shard {} to node {}: {}", move.shard, move.target,
                 s.ToString());
    return 0;
  }
  spdlog::info("nodehost: leader balance: handing shard {} to node {} (leaders here: {})",
               move.shard, move.target, led[c_->node_id]);
  last_ = move;
  last_at_ = Clock::now();
  return move.shard;
}

}  // namespace flotilla::nodehost
