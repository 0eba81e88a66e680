#include "engine/replica.h"

#include <algorithm>

namespace flotilla::engine {

namespace {
// Senders whose address a replica records from the messages themselves: the
// members of a shard, with room for a few replaced ones.
constexpr size_t kMaxSendersSeen = 16;
}  // namespace

bool Replica::PushMessage(raft::Message&& m, size_t max_len, const std::string& source) {
  std::lock_guard<std::mutex> l(mu_);
  if (inbound_.size() >= max_len) return false;
  if (!source.empty() && senders_seen_.size() < kMaxSendersSeen &&
      std::find(senders_seen_.begin(), senders_seen_.end(), m.from) == senders_seen_.end()) {
    senders_seen_.push_back(m.from);
    learned_.emplace_back(m.from, source);
  }
  inbound_.push_back(std::move(m));
  return true;
}

void Replica::ForgetSender(raft::ReplicaId sender) {
  std::lock_guard<std::mutex> l(mu_);
  std::erase(senders_seen_, sender);
}

bool Replica::PushProposal(raft::Entry&& e, std::shared_ptr<internal::RequestState> state,
                           size_t max_len, uint64_t max_bytes) {
  std::lock_guard<std::mutex> l(mu_);
  if (proposals_.size() >= max_len) return false;
  if (!proposals_.empty() && proposal_bytes_ + e.cmd.size() > max_bytes) return false;
  proposal_bytes_ += e.cmd.size();
  proposals_.push_back(std::move(e));
  proposal_states_.push_back(std::move(state));
  return true;
}

bool Replica::PushRead(uint64_t ctx, size_t max_len) {
  std::lock_guard<std::mutex> l(mu_);
  if (reads_.size() >= max_len) return false;
  reads_.push_back(ctx);
  return true;
}

void Replica::PushConfChange(ConfRequest&& c) {
  std::lock_guard<std::mutex> l(mu_);
  confs_.push_back(std::move(c));
}

void Replica::PushTransfer(uint64_t target) {
  std::lock_guard<std::mutex> l(mu_);
  transfers_.push_back(target);
}

void Replica::PushUnreachable(raft::ReplicaId to) {
  std::lock_guard<std::mutex> l(mu_);
  unreachable_.push_back(to);
}

void Replica::PushSnapshotStatus(raft::ReplicaId to, bool failed_send) {
  std::lock_guard<std::mutex> l(mu_);
  reports_.emplace_back(to, failed_send);
}

void Replica::PushSnapshotTaken(const raft::SnapshotMeta& meta) {
  std::lock_guard<std::mutex> l(mu_);
  taken_.push_back(meta);
}

void Replica::TakeInbound() {
  inbound_scratch.clear();
  proposal_scratch.clear();
  proposal_state_scratch.clear();
  read_scratch.clear();
  conf_scratch.clear();
  transfer_scratch.clear();
  report_scratch.clear();
  unreachable_scratch.clear();
  taken_scratch.clear();
  learned_scratch.clear();
  std::lock_guard<std::mutex> l(mu_);
  inbound_.swap(inbound_scratch);
  proposals_.swap(proposal_scratch);
  proposal_states_.swap(proposal_state_scratch);
  proposal_bytes_ = 0;
  reads_.swap(read_scratch);
  confs_.swap(conf_scratch);
  transfers_.swap(transfer_scratch);
  reports_.swap(report_scratch);
  unreachable_.swap(unreachable_scratch);
  taken_.swap(taken_scratch);
  learned_.swap(learned_scratch);
}

bool Replica::AddPending(uint64_t key, std::shared_ptr<internal::RequestState> s) {
  std::lock_guard<std::mutex> l(pending_mu_);
  if (pending_closed_) return false;
  pending_.emplace(key, std::move(s));
  return true;
}

bool Replica::AddPendingRead(uint64_t ctx, std::shared_ptr<internal::RequestState> s) {
  std::lock_guard<std::mutex> l(pending_mu_);
  if (pending_closed_) return false;
  pending_reads_.emplace(ctx, std::move(s));
  return true;
}

std::shared_ptr<internal::RequestState> Replica::TakePending(uint64_t key) {
  std::lock_guard<std::mutex> l(pending_mu_);
  auto it = pending_.find(key);
  if (it == pending_.end()) return nullptr;
  auto s = std::move(it->second);
  pending_.erase(it);
  return s;
}

std::shared_ptr<internal::RequestState> Replica::TakePendingRead(uint64_t ctx) {
  std::lock_guard<std::mutex> l(pending_mu_);
  auto it = pending_reads_.find(ctx);
  if (it == pending_reads_.end()) return nullptr;
  auto s = std::move(it->second);
  pending_reads_.erase(it);
  return s;
}

void Replica::SweepExpired(internal::RequestState::Clock::time_point now) {
  // Completed after pending_mu_ is released: a completion callback may call
  // back into the NodeHost (propose again, read), which takes pending_mu_.
  std::vector<std::shared_ptr<internal::RequestState>> expired;
  {
    std::lock_guard<std::mutex> l(pending_mu_);
    for (auto* map : {&pending_, &pending_reads_}) {
      for (auto it = map->begin(); it != map->end();) {
        if (it->second->deadline() < now) {
          expired.push_back(std::move(it->second));
          it = map->erase(it);
        } else {
          ++it;
        }
      }
    }
  }
  for (auto& s : expired) s->Complete(RequestCode::kTimeout);
}

void Replica::FailAllPending(RequestCode code) {
  // Taken out under pending_mu_ and completed after it is released, for the
  // reason SweepExpired gives.
  std::unordered_map<uint64_t, std::shared_ptr<internal::RequestState>> pending;
  std::unordered_map<uint64_t, std::shared_ptr<internal::RequestState>> reads;
  {
    std::lock_guard<std::mutex> l(pending_mu_);
    pending_closed_ = true;
    pending.swap(pending_);
    reads.swap(pending_reads_);
  }
  for (auto& [k, s] : pending) s->Complete(code);
  for (auto& [k, s] : reads) s->Complete(code);
}

void Replica::PushApply(ApplyTask&& t) {
  std::lock_guard<std::mutex> l(apply_mu_);
  apply_queue_.push_back(std::move(t));
}

size_t Replica::QueueDepth() {
  std::lock_guard<std::mutex> l(mu_);
  return proposals_.size() + reads_.size();
}

size_t Replica::ApplyDepth() {
  std::lock_guard<std::mutex> l(apply_mu_);
  return apply_queue_.size();
}

void Replica::PushSnapshotRequest(uint64_t key) {
  std::lock_guard<std::mutex> l(apply_mu_);
  snapshot_requests_.push_back(key);
}

void Replica::TakeSnapshotRequests(std::vector<uint64_t>* out) {
  out->clear();
  std::lock_guard<std::mutex> l(apply_mu_);
  out->swap(snapshot_requests_);
}

void Replica::PushStreamRequest(raft::Message&& install) {
  std::lock_guard<std::mutex> l(apply_mu_);
  stream_requests_.push_back(std::move(install));
}

void Replica::TakeStreamRequests(std::vector<raft::Message>* out) {
  out->clear();
  std::lock_guard<std::mutex> l(apply_mu_);
  out->swap(stream_requests_);
}

void Replica::PublishMembership() {
  std::lock_guard<std::mutex> l(view_mu_);
  membership_view_ = sm_membership;
}

raft::Membership Replica::MembershipView() {
  std::lock_guard<std::mutex> l(view_mu_);
  return membership_view_;
}

bool Replica::TakeApply(std::deque<ApplyTask>* out) {
  std::lock_guard<std::mutex> l(apply_mu_);
  if (apply_queue_.empty()) return false;
  out->swap(apply_queue_);
  return true;
}

}  // namespace flotilla::engine
