#include "transport/batch_streams.h"

#include <algorithm>

namespace flotilla::transport {

Result<std::unique_ptr<BatchStreamBudget::Stream>> BatchStreamBudget::Open(std::string_view peer) {
  std::lock_guard lock(mu_);
  Peer& p = peers_[std::string(peer)];
  if (p.streams >= limits_.max_streams_per_peer) {
    ++stats_.refused_streams;
    return Status::Busy("this peer holds " + std::to_string(p.streams) +
                        " Batches streams already (batch_streams.max_streams_per_peer)");
  }
  ++p.streams;
  return std::unique_ptr<Stream>(new Stream(this, std::string(peer)));
}

BatchStreamBudget::Stats BatchStreamBudget::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

BatchStreamBudget::Stream::~Stream() {
  std::lock_guard lock(owner_->mu_);
  auto it = owner_->peers_.find(peer_);
  if (it != owner_->peers_.end() && --it->second.streams == 0) owner_->peers_.erase(it);
}

Status BatchStreamBudget::Stream::Take(uint64_t bytes) {
  std::lock_guard lock(owner_->mu_);
  Peer& p = owner_->peers_[peer_];
  const uint64_t max = owner_->limits_.max_inflight_bytes_per_peer;
  if (p.inflight_bytes > 0 && (p.inflight_bytes >= max || bytes > max - p.inflight_bytes)) {
    ++owner_->stats_.refused_batches;
    return Status::Busy("this peer's batches in flight hold " + std::to_string(p.inflight_bytes) +
                        " bytes; " + std::to_string(bytes) + " more exceed " + std::to_string(max) +
                        " (batch_streams.max_inflight_bytes_per_peer)");
  }
  p.inflight_bytes += bytes;
  return Status::Ok();
}

void BatchStreamBudget::Stream::Release(uint64_t bytes) {
  std::lock_guard lock(owner_->mu_);
  Peer& p = owner_->peers_[peer_];
  p.inflight_bytes -= std::min(bytes, p.inflight_bytes);
}

}  // namespace flotilla::transport
