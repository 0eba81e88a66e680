#include "transport/batch_streams.h"

#include <algorithm>

namespace flotilla::transport {
namespace {

// True when `bytes` more would exceed `max` over `held`. A batch that
// arrives while nothing is held always fits: one message up to the largest
// accepted gRPC message must pass.
bool Exceeds(uint64_t held, uint64_t bytes, uint64_t max) {
  return held > 0 && (held >= max || bytes > max - held);
}

}  // namespace

Result<std::unique_ptr<BatchStreamBudget::Stream>> BatchStreamBudget::Open(std::string_view peer,
                                                                           StreamRefusal* why) {
  std::lock_guard lock(mu_);
  if (streams_ >= limits_.max_streams) {
    ++stats_.refused_streams;
    *why = StreamRefusal::kBatchStreams;
    return Status::Busy("all peers together hold " + std::to_string(streams_) +
                        " Batches streams already (batch_streams.max_streams)");
  }
  Peer& p = peers_[std::string(peer)];
  if (p.streams >= limits_.max_streams_per_peer) {
    ++stats_.refused_streams;
    *why = StreamRefusal::kPeerBatchStreams;
    return Status::Busy("this peer holds " + std::to_string(p.streams) +
                        " Batches streams already (batch_streams.max_streams_per_peer)");
  }
  ++p.streams;
  ++streams_;
  return std::unique_ptr<Stream>(new Stream(this, std::string(peer)));
}

BatchStreamBudget::Stats BatchStreamBudget::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

BatchStreamBudget::Stream::~Stream() {
  std::lock_guard lock(owner_->mu_);
  --owner_->streams_;
  auto it = owner_->peers_.find(peer_);
  if (it != owner_->peers_.end() && --it->second.streams == 0) owner_->peers_.erase(it);
}

Status BatchStreamBudget::Stream::Take(uint64_t bytes, StreamRefusal* why) {
  std::lock_guard lock(owner_->mu_);
  Peer& p = owner_->peers_[peer_];
  const BatchStreamLimits& l = owner_->limits_;
  if (Exceeds(p.inflight_bytes, bytes, l.max_inflight_bytes_per_peer)) {
    ++owner_->stats_.refused_batches;
    *why = StreamRefusal::kPeerInflightBytes;
    return Status::Busy("this peer's batches in flight hold " + std::to_string(p.inflight_bytes) +
                        " bytes; " + std::to_string(bytes) + " more exceed " +
                        std::to_string(l.max_inflight_bytes_per_peer) +
                        " (batch_streams.max_inflight_bytes_per_peer)");
  }
  if (Exceeds(owner_->inflight_bytes_, bytes, l.max_inflight_bytes)) {
    ++owner_->stats_.refused_batches;
    *why = StreamRefusal::kBatchInflightBytes;
    return Status::Busy(
        "all peers' batches in flight hold " + std::to_string(owner_->inflight_bytes_) +
        " bytes; " + std::to_string(bytes) + " more exceed " +
        std::to_string(l.max_inflight_bytes) + " (batch_streams.max_inflight_bytes)");
  }
  p.inflight_bytes += bytes;
  owner_->inflight_bytes_ += bytes;
  return Status::Ok();
}

void BatchStreamBudget::Stream::Release(uint64_t bytes) {
  std::lock_guard lock(owner_->mu_);
  Peer& p = owner_->peers_[peer_];
  p.inflight_bytes -= std::min(bytes, p.inflight_bytes);
  owner_->inflight_bytes_ -= std::min(bytes, owner_->inflight_bytes_);
}

}  // namespace flotilla::transport
