#include "tests/raft/core_sim.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include "engine/raft/conf_change.h"
#include "tests/raft/harness.h"

namespace flotilla::raft::testing {
namespace {

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t Uniform(uint64_t n) { return n == 0 ? 0 : Next() % n; }
  bool Chance(uint32_t per_mille) { return Uniform(1000) < per_mille; }

 private:
  uint64_t s_;
};

struct Violation {
  std::string what;
};

constexpr ReplicaId kNodes = 5;

// Checks the safety rules of Raft (Figure 3 of the paper) as the run goes.
class SafetyChecker {
 public:
  explicit SafetyChecker(Harness* h) : h_(h) {}

  // Election safety: at most one leader per term.
  void CheckElectionSafety() {
    for (auto& [id, n] : h_->nodes()) {
      if (!n.peer || !n.peer->raft().is_leader()) continue;
      const Term t = n.peer->raft().term();
      auto [it, inserted] = leaders_.emplace(t, id);
      if (!inserted && it->second != id) {
        Fail("election safety: term " + std::to_string(t) + " has leaders " +
             std::to_string(it->second) + " and " + std::to_string(id));
      }
      if (inserted) CheckLeaderCompleteness(id);
    }
  }

  // Leader append-only: while a replica leads a term, the entries it holds
  // are never overwritten or deleted.
  void CheckLeaderAppendOnly() {
    for (auto& [id, n] : h_->nodes()) {
      if (!n.peer || !n.peer->raft().is_leader()) continue;
      const RaftLog& log = n.peer->raft().log();
      auto key = std::make_pair(id, n.peer->raft().term());
      std::vector<Term>& seen = leader_logs_[key];
      const Index first = log.FirstIndex();
      for (Index i = std::max<Index>(first, 1); i < seen.size(); ++i) {
        Term t = 0;
        if (log.TermAt(i, &t) != LogStatus::kOk || t != seen[i]) {
          Fail("leader append-only: leader " + std::to_string(id) + " changed index " +
               std::to_string(i));
        }
      }
      seen.resize(log.LastIndex() + 1);
      for (Index i = std::max<Index>(first, 1); i <= log.LastIndex(); ++i) {
        Term t = 0;
        if (log.TermAt(i, &t) == LogStatus::kOk) seen[i] = t;
      }
    }
  }

  // Log matching: two persisted logs with an entry of the same index and
  // term are identical up to that index.
  void CheckLogMatching() {
    std::vector<Node*> nodes;
    for (auto& [id, n] : h_->nodes()) nodes.push_back(&n);
    for (size_t a = 0; a < nodes.size(); ++a) {
      for (size_t b = a + 1; b < nodes.size(); ++b) CheckPair(*nodes[a], *nodes[b]);
    }
  }

  // Leader completeness: an entry committed in a term holds in the logs of
  // the leaders of all higher terms. A leader is first seen only between
  // steps, possibly after newer terms committed more, so only entries known
  // to be committed in a term below the leader's are required of it.
  void CheckLeaderCompleteness(ReplicaId id) {
    const Raft& raft = h_->node(id).peer->raft();
    const RaftLog& log = raft.log();
    for (const auto& [index, e] : committed_) {
      if (index < log.FirstIndex()) continue;  // covered by its snapshot
      if (commit_term_bound_.at(index) >= raft.term()) continue;
      Term t = 0;
      if (log.TermAt(index, &t) != LogStatus::kOk || t != e.term) {
        Fail("leader completeness: leader " + std::to_string(id) + " lacks committed entry " +
             std::to_string(e.term) + "/" + std::to_string(index));
      }
    }
  }

  // State machine safety: no two replicas apply different entries at one index.
  // Witnesses hold entries stripped of their data; a replica may receive
  // them before it applied the change that made it a witness.
  void NoteWitnesses() {
    for (auto& [id, n] : h_->nodes()) {
      if (!n.peer) continue;
      for (ReplicaId w : n.peer->raft().membership().witnesses) ever_witness_.insert(w);
    }
  }

  void OnApply(ReplicaId id, const Entry& e) {
    NoteWitnesses();
    const bool witness = ever_witness_.count(id) != 0;
    auto it = committed_.find(e.index);
    if (it == committed_.end()) {
      if (!witness) {
        committed_.emplace(e.index, e);
        // The entry was committed in a term no later than the applier's.
        commit_term_bound_[e.index] = h_->node(id).peer->raft().term();
      }
      max_applied_ = std::max(max_applied_, e.index);
      return;
    }
    if (it->second.term != e.term || (!witness && it->second.cmd != e.cmd)) {
      Fail("state machine safety: replica " + std::to_string(id) + " applied " +
           Harness::Describe(e) + " where another applied " + Harness::Describe(it->second));
    }
    max_applied_ = std::max(max_applied_, e.index);
  }

  // ReadIndex safety: a read is served at an index covering every write
  // acknowledged (applied anywhere) before the read was issued.
  void OnReadIssued(uint64_t ctx) { read_floor_[ctx] = max_applied_; }
  void OnRead(ReplicaId id, const ReadState& rs) {
    auto it = read_floor_.find(rs.ctx);
    if (it == read_floor_.end()) return;
    if (rs.index < it->second) {
      Fail("read-index safety: read " + std::to_string(rs.ctx) + " on " + std::to_string(id) +
           " served at " + std::to_string(rs.index) + " below acknowledged " +
           std::to_string(it->second));
    }
  }

  bool failed() const { return !failure_.empty(); }
  const std::string& failure() const { return failure_; }
  size_t committed() const { return committed_.size(); }
  void Fail(const std::string& what) {
    if (failure_.empty()) failure_ = what;
  }

 private:
  void CheckPair(Node& a, Node& b) {
    const Index lo = std::max(a.log->FirstIndex(), b.log->FirstIndex());
    const Index hi = std::min(a.log->LastIndex(), b.log->LastIndex());
    if (lo > hi) return;
    std::vector<Entry> ea;
    std::vector<Entry> eb;
    if (a.log->Entries(lo, hi + 1, UINT64_MAX, &ea) != LogStatus::kOk) return;
    if (b.log->Entries(lo, hi + 1, UINT64_MAX, &eb) != LogStatus::kOk) return;
    // Find the highest index where the terms agree; everything below must be equal.
    size_t top = ea.size();
    while (top > 0 && ea[top - 1].term != eb[top - 1].term) --top;
    for (size_t i = 0; i < top; ++i) {
      const bool witness_pair =
          ea[i].type == EntryType::kMetadata || eb[i].type == EntryType::kMetadata;
      if (ea[i].term != eb[i].term || (!witness_pair && ea[i].cmd != eb[i].cmd)) {
        Fail("log matching: replicas " + std::to_string(a.id) + " and " + std::to_string(b.id) +
             " agree at " + std::to_string(lo + top - 1) + " but differ at " +
             std::to_string(lo + i));
        return;
      }
    }
  }

  Harness* h_;
  std::map<Term, ReplicaId> leaders_;
  std::map<std::pair<ReplicaId, Term>, std::vector<Term>> leader_logs_;
  std::map<Index, Entry> committed_;
  std::map<Index, Term> commit_term_bound_;
  Index max_applied_ = 0;
  std::map<uint64_t, Index> read_floor_;
  std::set<ReplicaId> ever_witness_;
  std::string failure_;
};

class CoreSim {
 public:
  CoreSim(uint64_t seed, const CoreSimOptions& opt)
      : opt_(opt), rng_(seed), h_(opt.verbose ? &trace_ : nullptr), checker_(&h_) {
    h_.set_verbose(opt.verbose);
    h_.set_auto_report_snapshots(true);
    Observer obs;
    obs.on_apply = [this](ReplicaId id, const Entry& e) { checker_.OnApply(id, e); };
    obs.on_read = [this](ReplicaId id, const ReadState& rs) { checker_.OnRead(id, rs); };
    h_.set_observer(std::move(obs));
    Config cfg;
    cfg.election_ticks = 3 + static_cast<uint32_t>(rng_.Uniform(6));
    cfg.heartbeat_ticks = 1 + static_cast<uint32_t>(rng_.Uniform(2));
    cfg.pre_vote = rng_.Chance(700);
    cfg.check_quorum = rng_.Chance(700);
    cfg.max_inflight_msgs = 1 + static_cast<uint32_t>(rng_.Uniform(8));
    cfg.max_msg_bytes = rng_.Chance(500) ? 200 : 1 << 20;
    cfg.max_uncommitted_bytes = rng_.Chance(200) ? 64 : 0;
    cfg.seed = seed;
    Membership initial;
    initial.voters = {1, 2, 3};
    for (ReplicaId id = 1; id <= kNodes; ++id) {
      h_.AddNode(id, cfg, id <= 3 ? initial : Membership{});
    }
  }

  CoreSimResult Run() {
    CoreSimResult r;
    for (r.steps = 0; r.steps < opt_.steps && !checker_.failed(); ++r.steps) {
      Step();
      Check();
    }
    if (!checker_.failed()) HealAndCheckProgress();
    r.ok = !checker_.failed();
    if (opt_.verbose) {
      for (ReplicaId id = 1; id <= kNodes; ++id) trace_ += h_.StatusLine(id) + "\n";
    }
    r.failure = checker_.failure();
    r.committed = checker_.committed();
    if (opt_.verbose) std::fputs(trace_.c_str(), stdout);
    return r;
  }

 private:
  ReplicaId AnyNode() { return 1 + rng_.Uniform(kNodes); }

  void Log(const std::string& s) {
    if (opt_.verbose) trace_ += "## " + s + "\n";
  }

  void Step() {
    const uint64_t dice = rng_.Uniform(1000);
    if (dice < 30) {
      const ReplicaId id = AnyNode();
      Log("tick " + std::to_string(id));
      h_.Tick(id);
    } else if (dice < 120) {
      // Time passes for everyone (the common case); single ticks above
      // model clock skew between replicas.
      Log("tick all");
      for (ReplicaId id = 1; id <= kNodes; ++id) h_.Tick(id);
    } else if (dice < 560) {
      DeliverRandom();
    } else if (dice < 820) {
      const ReplicaId id = AnyNode();
      Log("process " + std::to_string(id));
      h_.ProcessUpdate(id);
    } else if (dice < 900) {
      Propose();
    } else if (dice < 925) {
      ReadIndex();
    } else if (dice < 935) {
      ConfChangeRandom();
    } else if (dice < 942) {
      Transfer();
    } else if (dice < 952) {
      Partition();
    } else if (dice < 967) {
      Log("heal");
      h_.Heal();
    } else if (dice < 972) {
      const ReplicaId id = AnyNode();
      Log("crash " + std::to_string(id));
      if (rng_.Chance(500))
        h_.CrashDuringUpdate(id);
      else
        h_.Crash(id);
    } else if (dice < 990) {
      const ReplicaId id = AnyNode();
      Log("restart " + std::to_string(id));
      h_.Restart(id);
    } else {
      Compact();
    }
  }

  void DeliverRandom() {
    auto& q = h_.queue();
    if (q.empty()) return;
    // Mostly the oldest messages (an orderly network), sometimes any
    // (reordering).
    const size_t i =
        rng_.Chance(700) ? rng_.Uniform(std::min<size_t>(q.size(), 3)) : rng_.Uniform(q.size());
    const uint64_t fate = rng_.Uniform(100);
    if (fate < 8) {
      Log("drop " + Harness::Describe(q[i]));
      const Message m = q[i];
      q.erase(q.begin() + static_cast<std::ptrdiff_t>(i));
      if (m.type == MessageType::kInstallSnapshot) ReportSnapshot(m, true);
      return;
    }
    if (fate < 12) {
      Log("duplicate " + Harness::Describe(q[i]));
      q.push_back(q[i]);
    }
    Log("deliver " + Harness::Describe(q[i]));
    h_.DeliverAt(i);
  }

  void ReportSnapshot(const Message& m, bool failed) {
    Node& from = h_.node(m.from);
    if (from.peer) from.peer->ReportSnapshotStatus(m.to, failed);
  }

  void Propose() {
    const ReplicaId id = AnyNode();
    Node& n = h_.node(id);
    if (!n.peer) return;
    std::vector<Entry> ents(1 + rng_.Uniform(3));
    for (Entry& e : ents) e.cmd = "v" + std::to_string(++proposals_);
    Log("propose " + std::to_string(id));
    // A refused proposal (no leader, limits) is a normal outcome here.
    if (n.peer->Propose(&ents) != ProposeResult::kOk) return;
  }

  void ReadIndex() {
    const ReplicaId id = AnyNode();
    Node& n = h_.node(id);
    if (!n.peer) return;
    const uint64_t ctx = ++reads_;
    checker_.OnReadIssued(ctx);
    Log("read-index " + std::to_string(id) + " ctx=" + std::to_string(ctx));
    if (n.peer->ReadIndex(ctx) != ProposeResult::kOk) return;
  }

  void ConfChangeRandom() {
    const ReplicaId id = AnyNode();
    Node& n = h_.node(id);
    if (!n.peer) return;
    const Membership& m = n.peer->raft().membership();
    const ReplicaId target = AnyNode();
    ConfChange cc;
    const uint64_t kind = rng_.Uniform(10);
    if (m.IsJoint()) {
      if (m.auto_leave) return;  // the leader leaves by itself
      // explicit leave
    } else if (kind < 3) {
      cc.items.push_back({ConfChangeType::kAddVoter, target, ""});
    } else if (kind < 5) {
      cc.items.push_back({ConfChangeType::kAddNonVoting, target, ""});
    } else if (kind < 6) {
      // At most one witness, so that a quorum of full voters always remains.
      if (!m.witnesses.empty() || m.voters.size() < 3) return;
      cc.items.push_back({ConfChangeType::kAddWitness, target, ""});
    } else if (kind < 8) {
      if (m.voters.size() <= 3) return;  // keep the shard able to make progress
      cc.items.push_back({ConfChangeType::kRemove, target, ""});
    } else {
      // Two voters at once: a joint configuration.
      const ReplicaId other = AnyNode();
      if (other == target || m.voters.size() <= 3) return;
      cc.items.push_back({ConfChangeType::kAddVoter, target, ""});
      cc.items.push_back({ConfChangeType::kRemove, other, ""});
      if (Contains(m.witnesses, target) || Contains(m.witnesses, other)) return;
      cc.transition = rng_.Chance(500) ? ConfTransition::kJointExplicit : ConfTransition::kAuto;
    }
    Log("conf-change on " + std::to_string(id));
    if (n.peer->ProposeConfChange(cc, 0) != ProposeResult::kOk) return;
  }

  void Transfer() {
    const ReplicaId id = AnyNode();
    Node& n = h_.node(id);
    if (!n.peer) return;
    const ReplicaId target = AnyNode();
    Log("transfer " + std::to_string(id) + " -> " + std::to_string(target));
    n.peer->TransferLeader(target);
  }

  void Partition() {
    if (rng_.Chance(500)) {
      const ReplicaId id = AnyNode();
      Log("isolate " + std::to_string(id));
      h_.Isolate(id);
    } else {
      const ReplicaId a = AnyNode();
      const ReplicaId b = AnyNode();
      Log("cut " + std::to_string(a) + " -> " + std::to_string(b));
      h_.Cut(a, b);
    }
  }

  void Compact() {
    const ReplicaId id = AnyNode();
    Node& n = h_.node(id);
    if (!n.peer || n.sm.applied < 2) return;
    const Index keep = rng_.Uniform(4);
    const Index upto = n.sm.applied > keep ? n.sm.applied - keep : n.sm.applied;
    Log("compact " + std::to_string(id) + " to " + std::to_string(upto));
    h_.Compact(id, upto);
  }

  void Check() {
    checker_.CheckElectionSafety();
    checker_.CheckLeaderAppendOnly();
    checker_.CheckLogMatching();
  }

  // Once every fault heals, the shard must elect a leader and commit again:
  // a final entry, re-proposed to each new leader until it is applied by
  // every voter that holds data.
  void HealAndCheckProgress() {
    Log("heal all and check progress");
    h_.Heal();
    for (ReplicaId id = 1; id <= kNodes; ++id) h_.Restart(id);
    Term proposed_in = 0;
    for (int round = 0; round < 400; ++round) {
      for (ReplicaId id = 1; id <= kNodes; ++id) h_.Tick(id);
      h_.Stabilize();
      Check();
      if (checker_.failed()) return;
      for (auto& [id, n] : h_.nodes()) {
        Raft& r = n.peer->raft();
        if (!r.is_leader() || r.term() == proposed_in || r.lead_transferee() != kNoReplica)
          continue;
        std::vector<Entry> ents(1);
        ents[0].cmd = "final";
        if (n.peer->Propose(&ents) == ProposeResult::kOk) proposed_in = r.term();
      }
      if (AllVotersApplied("final")) return;
    }
    std::string states;
    for (ReplicaId id = 1; id <= kNodes; ++id) states += "\n    " + h_.StatusLine(id);
    Fail("liveness: the final entry was not applied by every voter after the faults healed" +
         states);
  }

  // The voters are those of the latest configuration (held by the replica
  // that applied the most): a removed replica is never told, and may go on
  // believing it is a voter.
  bool AllVotersApplied(const std::string& cmd) {
    ReplicaId latest = 1;
    for (auto& [id, n] : h_.nodes()) {
      if (n.sm.applied > h_.node(latest).sm.applied) latest = id;
    }
    const ProgressTracker& config = h_.node(latest).peer->raft().tracker();
    for (auto& [id, n] : h_.nodes()) {
      if (!config.IsVoter(id) || config.IsWitness(id)) continue;
      if (std::find(n.sm.cmds.begin(), n.sm.cmds.end(), cmd) == n.sm.cmds.end()) return false;
    }
    return true;
  }

  void Fail(const std::string& what) { checker_.Fail(what); }

  CoreSimOptions opt_;
  Rng rng_;
  std::string trace_;
  Harness h_;
  SafetyChecker checker_;
  uint64_t proposals_ = 0;
  uint64_t reads_ = 0;
};

}  // namespace

CoreSimResult RunCoreSim(uint64_t seed, const CoreSimOptions& options) {
  CoreSim sim(seed, options);
  return sim.Run();
}

}  // namespace flotilla::raft::testing
