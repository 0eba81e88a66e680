#include "tests/raft/harness.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "engine/raft/conf_change.h"

namespace flotilla::raft::testing {
namespace {

std::string Ids(const std::vector<ReplicaId>& ids) {
  std::string s;
  for (ReplicaId id : ids) {
    if (!s.empty()) s += ",";
    s += std::to_string(id);
  }
  return s;
}

std::string DescribeMembership(const Membership& m) {
  std::string s = "voters=(" + Ids(m.voters) + ")";
  if (m.IsJoint()) s += "&&(" + Ids(m.voters_outgoing) + ")";
  if (!m.non_voting.empty()) s += " non-voting=(" + Ids(m.non_voting) + ")";
  if (!m.non_voting_next.empty()) s += " non-voting-next=(" + Ids(m.non_voting_next) + ")";
  if (!m.witnesses.empty()) s += " witnesses=(" + Ids(m.witnesses) + ")";
  if (m.auto_leave) s += " autoleave";
  return s;
}

std::string DescribeConfChange(const std::string& cmd) {
  ConfChange cc;
  if (!DecodeConfChange(cmd, &cc)) return "<bad conf change>";
  if (cc.IsLeaveJoint()) return "leave-joint";
  std::string s;
  if (cc.transition == ConfTransition::kJointImplicit) s += "joint ";
  if (cc.transition == ConfTransition::kJointExplicit) s += "joint-explicit ";
  for (size_t i = 0; i < cc.items.size(); ++i) {
    if (i > 0) s += " ";
    switch (cc.items[i].type) {
      case ConfChangeType::kAddVoter:
        s += "v";
        break;
      case ConfChangeType::kAddNonVoting:
        s += "l";
        break;
      case ConfChangeType::kAddWitness:
        s += "w";
        break;
      case ConfChangeType::kRemove:
        s += "r";
        break;
    }
    s += std::to_string(cc.items[i].replica);
  }
  return s;
}

}  // namespace

std::string Harness::Describe(const Entry& e) {
  std::string s = std::to_string(e.term) + "/" + std::to_string(e.index);
  switch (e.type) {
    case EntryType::kNormal:
      s += " \"" + e.cmd + "\"";
      break;
    case EntryType::kConfChange:
      s += " conf(" + DescribeConfChange(e.cmd.str()) + ")";
      break;
    case EntryType::kMetadata:
      s += " meta";
      break;
  }
  return s;
}

std::string Harness::Describe(const Message& m) {
  std::ostringstream o;
  o << m.from << "->" << m.to << " " << MessageTypeName(m.type) << " term=" << m.term;
  switch (m.type) {
    case MessageType::kReplicate:
      o << " log=" << m.log_term << "/" << m.log_index << " commit=" << m.commit;
      if (!m.entries.empty()) {
        o << " entries=[";
        for (size_t i = 0; i < m.entries.size(); ++i)
          o << (i ? ", " : "") << Describe(m.entries[i]);
        o << "]";
      }
      break;
    case MessageType::kReplicateResp:
      o << " index=" << m.log_index;
      if (m.reject) o << " reject hint=" << m.hint_term << "/" << m.hint;
      break;
    case MessageType::kRequestVote:
    case MessageType::kRequestPreVote:
      o << " last=" << m.log_term << "/" << m.log_index;
      if (m.ctx == kRemovalProbe) {
        o << " removal-probe";
      } else if (m.ctx != 0) {
        o << " transfer";
      }
      break;
    case MessageType::kRequestVoteResp:
    case MessageType::kRequestPreVoteResp:
      o << (m.reject ? " reject" : " grant");
      if (m.ctx == kRemovedNotice) o << " removed";
      if (m.ctx == kRemovedNotice && m.log_index != 0) o << " at=" << m.log_index;
      break;
    case MessageType::kHeartbeat:
      o << " commit=" << m.commit;
      if (m.ctx != 0) o << " round=" << m.ctx;
      break;
    case MessageType::kHeartbeatResp:
      if (m.ctx != 0) o << " round=" << m.ctx;
      break;
    case MessageType::kInstallSnapshot:
      o << " snapshot=" << m.snapshot.term << "/" << m.snapshot.index << " "
        << DescribeMembership(m.snapshot.membership);
      break;
    case MessageType::kReadIndex:
      o << " ctx=" << m.ctx;
      break;
    case MessageType::kReadIndexResp:
      o << " ctx=" << m.ctx << " index=" << m.log_index;
      break;
    case MessageType::kLeaderTransfer:
      o << " target=" << m.hint;
      break;
    case MessageType::kPropose:
      o << " entries=[";
      for (size_t i = 0; i < m.entries.size(); ++i) o << (i ? ", " : "") << Describe(m.entries[i]);
      o << "]";
      break;
    default:
      break;
  }
  return o.str();
}

std::string Harness::StatusLine(ReplicaId id) {
  Node& n = nodes_.at(id);
  if (!n.peer) return std::to_string(id) + ": crashed";
  const Raft& r = n.peer->raft();
  std::ostringstream o;
  o << id << ": " << RoleName(r.role()) << " term=" << r.term() << " vote=" << r.vote()
    << " leader=" << r.leader() << " commit=" << r.log().committed()
    << " applied=" << r.log().applied() << " last=" << r.log().LastIndex() << " "
    << DescribeMembership(r.membership());
  if (r.quiesced()) o << " quiesced";
  if (r.told_removed()) o << " told-removed";
  if (r.lead_transferee() != kNoReplica) o << " transferee=" << r.lead_transferee();
  return o.str();
}

std::string Harness::LogLine(ReplicaId id) {
  Node& n = nodes_.at(id);
  std::vector<Entry> ents;
  const Index first = n.log->FirstIndex();
  const Index last = n.log->LastIndex();
  std::string s = std::to_string(id) + ": first=" + std::to_string(first);
  if (first <= last && n.log->Entries(first, last + 1, UINT64_MAX, &ents) == LogStatus::kOk) {
    for (const Entry& e : ents) s += " " + Describe(e);
  }
  return s;
}

void Harness::Print(const std::string& s) {
  if (out_ != nullptr && verbose_) {
    out_->append(s);
    out_->push_back('\n');
  }
}

void Harness::AddNode(ReplicaId id, const Config& cfg, const Membership& initial) {
  Node n;
  n.id = id;
  n.cfg = cfg;
  n.cfg.replica_id = id;
  n.initial = initial;
  n.log = std::make_unique<MemoryLog>();
  n.peer = std::make_unique<Peer>(n.cfg, n.log.get(), HardState{}, initial);
  nodes_.emplace(id, std::move(n));
  // Persist the bootstrap entries at once, as a NodeHost does when it starts
  // a replica, so that scenarios begin from a started shard.
  const bool verbose = verbose_;
  verbose_ = false;
  ProcessUpdate(id);
  verbose_ = verbose;
}

void Harness::AddNodeWithLog(ReplicaId id, const Config& cfg, const std::vector<Entry>& entries,
                             const HardState& hs) {
  Node n;
  n.id = id;
  n.cfg = cfg;
  n.cfg.replica_id = id;
  n.log = std::make_unique<MemoryLog>();
  n.log->Append(entries);
  n.log->set_hard_state(hs);
  n.peer = std::make_unique<Peer>(n.cfg, n.log.get(), hs, Membership{});
  nodes_.emplace(id, std::move(n));
}

void Harness::Enqueue(std::vector<Message>* msgs) {
  for (Message& m : *msgs) {
    Print("  " + Describe(m));
    queue_.push_back(std::move(m));
  }
  msgs->clear();
}

void Harness::Apply(Node& n, const Update& u) {
  if (u.snapshot) {
    auto it = n.snapshots.find(u.snapshot->index);
    if (it == n.snapshots.end()) {
      std::fprintf(stderr, "harness: node %llu has no data for snapshot %llu\n",
                   static_cast<unsigned long long>(n.id),
                   static_cast<unsigned long long>(u.snapshot->index));
      std::abort();
    }
    n.sm = it->second;
  }
  for (const Entry& e : u.committed_entries) {
    if (e.index <= n.sm.applied) continue;  // already in the restored state
    if (e.type == EntryType::kNormal) n.sm.cmds.push_back(e.cmd.str());
    n.sm.applied = e.index;
    if (observer_.on_apply) observer_.on_apply(n.id, e);
  }
  n.peer->ReportApplied(n.sm.applied);
  for (const ReadState& rs : u.ready_reads) {
    n.reads.push_back(rs);
    if (observer_.on_read) observer_.on_read(n.id, rs);
  }
}

bool Harness::ProcessUpdate(ReplicaId id) {
  Node& n = nodes_.at(id);
  if (!n.peer || !n.peer->HasUpdate()) return false;
  Update u;
  n.peer->GetUpdate(&u);
  if (observer_.on_update) observer_.on_update(id, u);
  Print("> " + std::to_string(id) + " handling Update");
  if (u.soft_state) {
    Print("  Lead:" + std::to_string(u.soft_state->leader) + " " +
          std::string(RoleName(u.soft_state->role)));
  }
  if (u.hard_state) {
    Print("  HardState term=" + std::to_string(u.hard_state->term) + " vote=" +
          std::to_string(u.hard_state->vote) + " commit=" + std::to_string(u.hard_state->commit));
  }
  if (u.snapshot)
    Print("  Snapshot " + std::to_string(u.snapshot->term) + "/" +
          std::to_string(u.snapshot->index));
  for (const Entry& e : u.entries_to_save) Print("  Entry " + Describe(e));
  for (const Entry& e : u.committed_entries) Print("  Committed " + Describe(e));
  std::vector<Message> before = std::move(u.messages);
  std::vector<Message> after = std::move(u.messages_after_persist);
  Enqueue(&before);
  // Persist: snapshot, entries and hard state together.
  if (u.snapshot) {
    n.log->ApplySnapshot(*u.snapshot);
    n.snapshots[u.snapshot->index] = snapshot_data_.at(u.snapshot->index);
  }
  n.log->Append(u.entries_to_save);
  if (u.hard_state) n.log->set_hard_state(*u.hard_state);
  if (!after.empty()) Print("  (after persist)");
  Enqueue(&after);
  Apply(n, u);
  for (const ReadState& rs : u.ready_reads) {
    Print("  Read ctx=" + std::to_string(rs.ctx) + " index=" + std::to_string(rs.index));
  }
  for (uint64_t ctx : u.dropped_reads) Print("  Read dropped ctx=" + std::to_string(ctx));
  n.peer->Advance(u);
  return true;
}

void Harness::CrashDuringUpdate(ReplicaId id) {
  Node& n = nodes_.at(id);
  if (!n.peer) return;
  if (n.peer->HasUpdate()) {
    Update u;
    n.peer->GetUpdate(&u);
    std::vector<Message> before = std::move(u.messages);
    Enqueue(&before);
  }
  Crash(id);
}

void Harness::DeliverOne(Message m) {
  auto it = nodes_.find(m.to);
  const bool lost = it == nodes_.end() || !it->second.peer || cut_.count({m.from, m.to}) != 0;
  if (auto_report_ && m.type == MessageType::kInstallSnapshot) {
    // Like a transport, tell the sender how its snapshot stream ended.
    auto from = nodes_.find(m.from);
    if (from != nodes_.end() && from->second.peer) {
      from->second.peer->ReportSnapshotStatus(m.to, lost);
    }
  }
  if (lost) return;
  Print("  " + Describe(m));
  it->second.peer->Step(std::move(m));
}

size_t Harness::Deliver(ReplicaId to) {
  std::deque<Message> keep;
  std::vector<Message> now;
  for (Message& m : queue_) {
    if (to == 0 || m.to == to) {
      now.push_back(std::move(m));
    } else {
      keep.push_back(std::move(m));
    }
  }
  queue_ = std::move(keep);
  if (!now.empty() && to != 0) Print("> " + std::to_string(to) + " receiving messages");
  for (Message& m : now) DeliverOne(std::move(m));
  return now.size();
}

void Harness::DeliverAt(size_t i) {
  Message m = std::move(queue_[i]);
  queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(i));
  DeliverOne(std::move(m));
}

void Harness::Stabilize(const std::vector<ReplicaId>& ids) {
  std::vector<ReplicaId> targets = ids;
  if (targets.empty()) {
    for (auto& [id, n] : nodes_) targets.push_back(id);
  }
  for (int round = 0; round < 1000; ++round) {
    bool progress = false;
    for (ReplicaId id : targets) progress |= ProcessUpdate(id);
    for (ReplicaId id : targets) {
      bool any = false;
      for (const Message& m : queue_) any |= m.to == id;
      if (any) progress |= Deliver(id) > 0;
    }
    if (!progress) return;
  }
  std::fprintf(stderr, "harness: stabilize did not converge\n");
  std::abort();
}

void Harness::Tick(ReplicaId id, int n) {
  Node& node = nodes_.at(id);
  for (int i = 0; i < n && node.peer; ++i) node.peer->Tick();
}

void Harness::Crash(ReplicaId id) {
  Node& n = nodes_.at(id);
  n.peer.reset();
  n.reads.clear();
  // Messages to a crashed node are lost with it; like a transport, tell the
  // senders of snapshots that their streams failed.
  std::deque<Message> keep;
  std::vector<Message> lost_snapshots;
  for (Message& m : queue_) {
    if (m.to != id) {
      keep.push_back(std::move(m));
    } else if (auto_report_ && m.type == MessageType::kInstallSnapshot) {
      lost_snapshots.push_back(std::move(m));
    }
  }
  queue_ = std::move(keep);
  for (const Message& m : lost_snapshots) {
    auto from = nodes_.find(m.from);
    if (from != nodes_.end() && from->second.peer)
      from->second.peer->ReportSnapshotStatus(m.to, true);
  }
}

void Harness::Restart(ReplicaId id) {
  Node& n = nodes_.at(id);
  if (n.peer) return;
  const SnapshotMeta snap = n.log->Snapshot();
  n.sm = snap.IsEmpty() ? AppliedState{} : n.snapshots.at(snap.index);
  Config cfg = n.cfg;
  cfg.applied = n.sm.applied;
  n.peer = std::make_unique<Peer>(cfg, n.log.get(), n.log->hard_state(), n.initial);
}

void Harness::Compact(ReplicaId id, Index index) {
  Node& n = nodes_.at(id);
  const Index applied = n.sm.applied;
  if (applied == 0 || index > applied) return;
  SnapshotMeta meta;
  meta.index = applied;
  if (n.log->TermAt(applied, &meta.term) != LogStatus::kOk) return;
  meta.membership = n.peer ? n.peer->raft().membership() : Membership{};
  n.snapshots[applied] = n.sm;
  // A witness holds no data, so its state says nothing about the snapshot.
  if (!meta.membership.witnesses.empty() && Contains(meta.membership.witnesses, id)) {
    if (snapshot_data_.count(applied) == 0) return;
  } else {
    snapshot_data_[applied] = n.sm;
  }
  n.log->SetSnapshot(meta);
  n.log->Compact(index);
}

void Harness::Isolate(ReplicaId id) {
  for (auto& [other, n] : nodes_) {
    if (other == id) continue;
    cut_.insert({id, other});
    cut_.insert({other, id});
  }
}

}  // namespace flotilla::raft::testing
