#include "transport/inproc_transport.h"

#include <algorithm>

#include "transport/snapshot_chunker.h"
#include "transport/snapshot_receiver.h"

namespace flotilla::transport {

// A snapshot read into memory: the chunk sequence a SnapshotReceiver takes.
struct InProcNetwork::SnapshotPacket {
  struct Chunk {
    std::string file_name;
    std::string data;
    ChunkData view;  // file_name and data point into this Chunk's strings
  };
  std::vector<Chunk> chunks;
};

InProcNetwork::InProcNetwork(size_t max_pending_per_link)
    : max_pending_per_link_(max_pending_per_link) {}

void InProcNetwork::SetFaults(const InProcFaults& faults) {
  std::lock_guard lock(mu_);
  faults_ = faults;
}

void InProcNetwork::PartitionOneWay(const std::string& from, const std::string& to) {
  std::lock_guard lock(mu_);
  cut_.emplace(from, to);
}

void InProcNetwork::Partition(const std::string& a, const std::string& b) {
  std::lock_guard lock(mu_);
  cut_.emplace(a, b);
  cut_.emplace(b, a);
}

void InProcNetwork::Isolate(const std::string& a) {
  std::lock_guard lock(mu_);
  isolated_.insert(a);
}

void InProcNetwork::Heal(const std::string& a, const std::string& b) {
  std::lock_guard lock(mu_);
  if (b.empty()) {
    isolated_.erase(a);
    return;
  }
  cut_.erase({a, b});
  cut_.erase({b, a});
}

void InProcNetwork::HealAll() {
  std::lock_guard lock(mu_);
  cut_.clear();
  isolated_.clear();
}

void InProcNetwork::AdvanceTime(uint64_t ms) {
  std::lock_guard lock(mu_);
  now_ms_ += ms;
}

uint64_t InProcNetwork::now_ms() const {
  std::lock_guard lock(mu_);
  return now_ms_;
}

size_t InProcNetwork::pending() const {
  std::lock_guard lock(mu_);
  return packets_.size();
}

InProcNetwork::Stats InProcNetwork::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

Status InProcNetwork::Attach(const std::string& address, InProcTransport* t) {
  std::lock_guard lock(mu_);
  if (!hosts_.emplace(address, t).second) {
    return Status::AlreadyExists("address " + address + " is taken on the in-process network");
  }
  return Status::Ok();
}

void InProcNetwork::Detach(const std::string& address) {
  std::lock_guard lock(mu_);
  hosts_.erase(address);
}

bool InProcNetwork::Enqueue(Packet&& p) {
  std::lock_guard lock(mu_);
  size_t& n = link_pending_[{p.from, p.to}];
  if (n >= max_pending_per_link_) {
    ++stats_.rejected;
    return false;
  }
  ++n;
  ++stats_.sent;
  packets_.push_back(std::move(p));
  return true;
}

bool InProcNetwork::Blocked(const std::string& from, const std::string& to) const {
  return isolated_.contains(from) || isolated_.contains(to) || cut_.contains({from, to});
}

bool InProcNetwork::Draw(std::mt19937_64& rng, double probability) {
  if (probability <= 0) return false;
  // 53 random bits as a double in [0, 1): the same on every platform, unlike
  // std::uniform_real_distribution.
  double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
  return u < probability;
}

bool InProcNetwork::DeliverOne(std::mt19937_64& rng) {
  Packet p;
  Fate fate = Fate::kDeliver;
  InProcTransport* from = nullptr;
  InProcTransport* to = nullptr;
  {
    std::lock_guard lock(mu_);
    // Delays are drawn here rather than in Send(), so that every random
    // choice comes from the caller's generator, in queue order.
    std::vector<size_t> ready;
    for (size_t i = 0; i < packets_.size(); ++i) {
      Packet& q = packets_[i];
      if (!q.delay_drawn) {
        q.delay_drawn = true;
        q.deliver_at_ms =
            now_ms_ + (faults_.max_delay_ms == 0 ? 0 : rng() % (faults_.max_delay_ms + 1));
      }
      if (q.deliver_at_ms <= now_ms_) ready.push_back(i);
    }
    if (ready.empty()) return false;
    size_t pick = ready.front();
    if (ready.size() > 1 && Draw(rng, faults_.reorder_probability)) {
      pick = ready[rng() % ready.size()];
    }
    p = std::move(packets_[pick]);
    packets_.erase(packets_.begin() + static_cast<std::ptrdiff_t>(pick));
    --link_pending_[{p.from, p.to}];

    auto f = hosts_.find(p.from);
    auto t = hosts_.find(p.to);
    from = f == hosts_.end() ? nullptr : f->second;
    to = t == hosts_.end() ? nullptr : t->second;
    if (to == nullptr || Blocked(p.from, p.to)) {
      fate = Fate::kCut;
      ++stats_.partitioned;
    } else if (Draw(rng, faults_.drop_probability)) {
      fate = Fate::kDrop;
      ++stats_.dropped;
    } else {
      ++stats_.delivered;
      if (p.snapshot != nullptr && Draw(rng, faults_.snapshot_cut_probability)) {
        p.cut_after_chunks = rng() % std::max<size_t>(1, p.snapshot->chunks.size());
        ++stats_.snapshots_cut;
      }
      if (Draw(rng, faults_.duplicate_probability) &&
          (faults_.duplicate_forwarded_proposals ||
           p.message.type != raft::MessageType::kPropose)) {
        Packet copy = p;
        copy.duplicate = true;
        copy.delay_drawn = false;
        ++link_pending_[{copy.from, copy.to}];
        ++stats_.duplicated;
        packets_.push_back(std::move(copy));
      }
    }
  }
  Execute(p, fate, from, to);
  return true;
}

void InProcNetwork::Execute(Packet& p, Fate fate, InProcTransport* from, InProcTransport* to) {
  const bool is_snapshot = p.snapshot != nullptr;
  if (fate == Fate::kDeliver) {
    if (is_snapshot) {
      to->ReceiveSnapshot(*p.snapshot, p.message, p.from, from, !p.duplicate, p.cut_after_chunks);
    } else {
      std::vector<raft::Message> batch;
      batch.push_back(std::move(p.message));
      to->handler_->HandleBatch(std::move(batch), p.from);
    }
    return;
  }
  // A lost snapshot always fails at the sender, as a broken stream would. A
  // lost message is reported only when a partition cut it: random loss is
  // silent, as on a real network.
  if (from == nullptr || p.duplicate) return;
  if (is_snapshot) {
    from->handler_->HandleSnapshotStatus(p.message.shard_id, p.message.to, true);
  } else if (fate == Fate::kCut) {
    from->handler_->HandleUnreachable(p.message.shard_id, p.message.to);
  }
}

size_t InProcNetwork::DeliverAll(std::mt19937_64& rng, size_t max_deliveries) {
  size_t n = 0;
  while (n < max_deliveries && DeliverOne(rng)) ++n;
  return n;
}

InProcTransport::InProcTransport(InProcNetwork* network, TransportConfig config, Registry* registry,
                                 Handler* handler)
    : network_(network), config_(std::move(config)), registry_(registry), handler_(handler) {}

InProcTransport::~InProcTransport() { Stop(); }

Status InProcTransport::Start() {
  if (running_.load()) return Status::Ok();
  FLOTILLA_RETURN_IF_ERROR(network_->Attach(config_.listen_address, this));
  running_.store(true);
  return Status::Ok();
}

void InProcTransport::Stop() {
  if (!running_.exchange(false)) return;
  network_->Detach(config_.listen_address);
}

bool InProcTransport::Send(raft::Message&& m) {
  if (!running_.load(std::memory_order_relaxed)) return false;
  if (m.type == raft::MessageType::kInstallSnapshot) return false;
  std::optional<std::string> to = registry_->Resolve(m.shard_id, m.to);
  if (!to) return false;
  InProcNetwork::Packet p;
  p.from = config_.listen_address;
  p.to = std::move(*to);
  p.message = std::move(m);
  return network_->Enqueue(std::move(p));
}

void InProcTransport::SendBatch(std::vector<raft::Message>& messages,
                                std::vector<DroppedTarget>* dropped) {
  const size_t first_dropped = dropped ? dropped->size() : 0;
  for (raft::Message& m : messages) {
    DroppedTarget target{m.shard_id, m.to};
    if (!Send(std::move(m)) && dropped != nullptr &&
        std::find(dropped->begin() + static_cast<std::ptrdiff_t>(first_dropped), dropped->end(),
                  target) == dropped->end()) {
      dropped->push_back(target);
    }
  }
  messages.clear();
}

Status InProcTransport::SendSnapshot(SnapshotJob job) {
  if (!running_.load()) return Status::Terminated("transport stopped");
  if (job.install.type != raft::MessageType::kInstallSnapshot || job.source == nullptr) {
    return Status::InvalidArgument("snapshot job needs an InstallSnapshot message and a source");
  }
  std::optional<std::string> to = registry_->Resolve(job.install.shard_id, job.install.to);
  if (!to) {
    return Status::NotFound("no address for shard " + std::to_string(job.install.shard_id) +
                            " replica " + std::to_string(job.install.to));
  }
  auto packet = std::make_shared<InProcNetwork::SnapshotPacket>();
  SnapshotChunker chunker(job.source.get(), config_.snapshot_chunk_bytes);
  ChunkData c;
  for (;;) {
    Result<bool> more = chunker.Next(&c);
    if (!more.ok()) return more.status();
    if (!*more) break;
    packet->chunks.push_back({std::string(c.file_name), std::string(c.data), c});
  }
  // The views must point at the strings in their final place in the vector.
  for (auto& chunk : packet->chunks) {
    chunk.view.file_name = chunk.file_name;
    chunk.view.data = chunk.data;
  }
  InProcNetwork::Packet p;
  p.from = config_.listen_address;
  p.to = std::move(*to);
  p.message = std::move(job.install);
  p.snapshot = std::move(packet);
  if (!network_->Enqueue(std::move(p))) return Status::Busy("in-process link queue is full");
  return Status::Ok();
}

void InProcTransport::ReceiveSnapshot(const InProcNetwork::SnapshotPacket& s,
                                      const raft::Message& install,
                                      const std::string& source_address, InProcTransport* sender,
                                      bool report_status, size_t cut_after_chunks) {
  SnapshotReceiver rx(config_.snapshot_dir, SnapshotReceiverLimits{config_.max_snapshot_bytes,
                                                                   config_.max_snapshot_files});
  // As the gRPC transport does at a stream's first chunk (wire_receive.cc):
  // the engine refuses a sender that cannot be the shard's leader before
  // anything is written.
  Status st = handler_->AdmitSnapshot(install, source_address);
  if (st.ok()) st = rx.Begin(install);
  for (size_t i = 0; st.ok() && i < s.chunks.size(); ++i) {
    if (i == cut_after_chunks) st = Status::Unavailable("snapshot stream cut (simulated)");
    if (st.ok()) st = rx.Add(s.chunks[i].view);
  }
  std::string path;
  if (st.ok() && !rx.complete()) st = Status::Corruption("snapshot ended early");
  if (st.ok()) {
    Result<std::string> r = rx.Finish();
    st = r.status();
    if (r.ok()) path = std::move(r).value();
  }
  if (st.ok()) handler_->HandleSnapshot(install, std::move(path));
  if (report_status && sender != nullptr) {
    sender->handler_->HandleSnapshotStatus(install.shard_id, install.to, !st.ok());
  }
}

}  // namespace flotilla::transport
