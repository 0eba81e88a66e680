// Peer: drives one Raft replica and collects its outputs into Updates.
//
// Usage, one thread per replica (see docs/raft-core.md):
//
//   peer.Tick(); peer.Step(msg); peer.Propose(...);   // any number of inputs
//   if (peer.HasUpdate()) {
//     Update u; peer.GetUpdate(&u);
//     send(u.messages);                       // may go before persisting
//     persist(u.snapshot, u.entries_to_save, u.hard_state);  // one durable write
//     reader.Append(u.entries_to_save) ...    // make them readable
//     send(u.messages_after_persist);
//     apply(u.snapshot, u.committed_entries); serve(u.ready_reads);
//     peer.Advance(u);
//   }
//
// Nothing may be called on the Peer between GetUpdate and Advance.
// Not thread-safe.
#pragma once

#include "engine/raft/raft.h"

namespace flotilla::raft {

class Peer {
 public:
  Peer(const Config& config, LogReader* reader, const HardState& hs, const Membership& initial,
       const std::map<ReplicaId, std::string>& contexts = {});

  void Tick() { raft_.Tick(); }
  void Step(Message m) { raft_.Step(std::move(m)); }
  ProposeResult Propose(std::vector<Entry>* entries) { return raft_.Propose(entries); }
  ProposeResult ProposeConfChange(const ConfChange& cc, uint64_t key) {
    return raft_.ProposeConfChange(cc, key);
  }
  ProposeResult ReadIndex(uint64_t ctx) { return raft_.ReadIndex(ctx); }
  void TransferLeader(ReplicaId target) { raft_.TransferLeader(target); }
  void Campaign() { raft_.Campaign(); }
  void ReportUnreachable(ReplicaId id) { raft_.ReportUnreachable(id); }
  void ReportSnapshotStatus(ReplicaId id, bool failed) { raft_.ReportSnapshotStatus(id, failed); }
  void ReportApplied(Index index) { raft_.ReportApplied(index); }

  bool HasUpdate() const;
  // Moves every pending output into `u` (cleared first; capacity reused).
  // REQUIRES: the previous Update was advanced.
  void GetUpdate(Update* u);
  // REQUIRES: `u` is the last Update from GetUpdate, and it was persisted.
  void Advance(const Update& u);

  Raft& raft() { return raft_; }
  const Raft& raft() const { return raft_; }

 private:
  Raft raft_;
  HardState prev_hs_;
  SoftState prev_ss_;
  bool outstanding_ = false;
};

}  // namespace flotilla::raft
