// The in-process transport: the Transport contract over an InProcNetwork
// shared by several NodeHosts in one process, for tests and the
// deterministic simulator.
//
// Nothing is delivered on a thread of its own. Send() only queues a packet in
// the network; the test or simulator delivers packets by calling
// DeliverOne()/DeliverAll(), and every random choice (drop, duplicate,
// reorder, delay) is drawn from the generator it passes in. So one seed and
// one calling thread give one exact run.
//
// Snapshots: SendSnapshot() reads the whole snapshot from its source at once
// and queues it as one packet; delivering that packet writes it into the
// receiver's snapshot_dir through the same SnapshotReceiver as the gRPC
// transport, then calls the receiver's HandleSnapshot and the sender's
// HandleSnapshotStatus.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "transport/config.h"
#include "transport/transport.h"

namespace flotilla::transport {

class InProcTransport;

// Faults applied to every packet; probabilities in [0, 1].
struct InProcFaults {
  double drop_probability = 0;       // the packet is lost without a trace
  double duplicate_probability = 0;  // the packet is delivered, and queued again
  double reorder_probability = 0;    // a delivery takes a random ready packet, not the oldest
  uint64_t max_delay_ms = 0;         // each packet waits 0..max_delay_ms of network time
  // A delivered snapshot's stream breaks after a random number of its
  // chunks: the receiver drops what it has and the sender hears "failed".
  double snapshot_cut_probability = 0;
  // Whether proposals a follower forwards to its leader (kPropose) may be
  // duplicated too. A duplicate is appended, and applied, twice: plain
  // proposals are at-least-once on a network that duplicates (sessions make
  // them exactly-once). TCP streams never duplicate a message.
  bool duplicate_forwarded_proposals = true;
};

// Thread-safety: thread-safe, except that a transport must not be started or
// stopped while another thread is inside DeliverOne()/DeliverAll(). Handlers
// are called on the thread that calls DeliverOne()/DeliverAll(), with no
// network lock held, so they may Send() again.
class InProcNetwork {
 public:
  struct Stats {
    uint64_t sent = 0;
    uint64_t delivered = 0;
    uint64_t dropped = 0;  // by drop_probability
    uint64_t duplicated = 0;
    uint64_t partitioned = 0;    // lost to a partition or a stopped receiver
    uint64_t rejected = 0;       // Send() refused: the link's queue was full
    uint64_t snapshots_cut = 0;  // snapshot streams broken by snapshot_cut_probability
  };

  // At most `max_pending_per_link` packets wait on one (from, to) link.
  explicit InProcNetwork(size_t max_pending_per_link = 8192);
  InProcNetwork(const InProcNetwork&) = delete;
  InProcNetwork& operator=(const InProcNetwork&) = delete;

  void SetFaults(const InProcFaults& faults);

  // Packets from `from` to `to` are lost (the sender is told the target is
  // unreachable); the other direction still works.
  void PartitionOneWay(const std::string& from, const std::string& to);
  // Both directions between a and b are cut.
  void Partition(const std::string& a, const std::string& b);
  // Every packet from or to `a` is cut.
  void Isolate(const std::string& a);
  // Undo Partition/PartitionOneWay between a and b (both directions), or
  // Isolate(a) when b is empty.
  void Heal(const std::string& a, const std::string& b = "");
  void HealAll();

  // The network's clock, used only for delays.
  void AdvanceTime(uint64_t ms);
  uint64_t now_ms() const;

  // Delivers (or drops, per the faults) one packet whose delay has passed.
  // Returns false when no packet was ready.
  bool DeliverOne(std::mt19937_64& rng);
  // DeliverOne until nothing is ready or `max_deliveries` were made; returns
  // how many were made. Duplicates can keep a network busy, hence the bound.
  size_t DeliverAll(std::mt19937_64& rng, size_t max_deliveries = 1000000);

  size_t pending() const;
  Stats stats() const;

 private:
  friend class InProcTransport;
  struct SnapshotPacket;
  struct Packet {
    std::string from;
    std::string to;
    bool delay_drawn = false;
    bool duplicate = false;
    uint64_t deliver_at_ms = 0;
    size_t cut_after_chunks = SIZE_MAX;  // a snapshot stream breaks after this many chunks
    raft::Message message;               // a Raft message, or the InstallSnapshot of `snapshot`
    std::shared_ptr<const SnapshotPacket> snapshot;
  };
  enum class Fate { kDeliver, kDrop, kCut };

  Status Attach(const std::string& address, InProcTransport* t);
  void Detach(const std::string& address);
  bool Enqueue(Packet&& p);

  bool Blocked(const std::string& from, const std::string& to) const;  // REQUIRES: mu_ held
  bool Draw(std::mt19937_64& rng, double probability);                 // REQUIRES: mu_ held
  void Execute(Packet& p, Fate fate, InProcTransport* from, InProcTransport* to);

  const size_t max_pending_per_link_;
  mutable std::mutex mu_;
  InProcFaults faults_;                                                 // guarded by mu_
  std::deque<Packet> packets_;                                          // guarded by mu_
  std::map<std::pair<std::string, std::string>, size_t> link_pending_;  // guarded by mu_
  std::set<std::pair<std::string, std::string>> cut_;                   // guarded by mu_
  std::set<std::string> isolated_;                                      // guarded by mu_
  std::map<std::string, InProcTransport*> hosts_;                       // guarded by mu_
  uint64_t now_ms_ = 0;                                                 // guarded by mu_
  Stats stats_;                                                         // guarded by mu_
};

// Thread-safety: as Transport.
class InProcTransport final : public Transport {
 public:
  // config.listen_address is this NodeHost's name on `network`; config.
  // snapshot_dir receives snapshots. All pointers must outlive the transport.
  InProcTransport(InProcNetwork* network, TransportConfig config, Registry* registry,
                  Handler* handler);
  ~InProcTransport() override;

  Status Start() override;
  void Stop() override;
  std::string address() const override { return config_.listen_address; }
  bool Send(raft::Message&& m) override;
  void SendBatch(std::vector<raft::Message>& messages,
                 std::vector<DroppedTarget>* dropped) override;
  Status SendSnapshot(SnapshotJob job) override;

 private:
  friend class InProcNetwork;
  void ReceiveSnapshot(const InProcNetwork::SnapshotPacket& s, const raft::Message& install,
                       const std::string& source_address, InProcTransport* sender,
                       bool report_status, size_t cut_after_chunks);

  InProcNetwork* const network_;
  const TransportConfig config_;
  Registry* const registry_;
  Handler* const handler_;
  std::atomic<bool> running_{false};
};

}  // namespace flotilla::transport
