#include "tests/sim/simulator.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <bit>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <unordered_map>
#include <vector>

#include "engine/node_host_impl.h"
#include "engine/replica.h"
#include "engine/snapshot_files.h"
#include "flotilla/events.h"
#include "logdb/format.h"
#include "logdb/memory_logdb.h"
#include "tests/lincheck/lincheck.h"
#include "tests/logdb/test_util.h"
#include "tests/sim/sim_disk.h"
#include "tests/sim/sim_kv.h"
#include "transport/inproc_transport.h"

namespace flotilla::sim {
namespace {

using engine::NodeHostImpl;

constexpr uint64_t kTickMs = 10;                        // one tick (rtt) of virtual time
constexpr auto kEngineTimeout = std::chrono::hours(1);  // client timeouts are virtual
constexpr uint64_t kOpTimeoutMs = 300;                  // a client gives up (outcome unknown)
constexpr int kSessionAttempts = 3;                     // a session proposal is retried this often
constexpr uint64_t kMaxDownHosts = 2;
constexpr uint64_t kFaultEveryMs = 60;  // mean gap between fault events

// Raw generator output only: std::*_distribution differ between libraries.
double Unit(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }
bool Chance(std::mt19937_64& rng, double p) { return Unit(rng) < p; }
uint64_t Below(std::mt19937_64& rng, uint64_t n) { return n == 0 ? 0 : rng() % n; }

// A Session whose next proposal registers it, with a client id the
// simulation chose (NodeHost::RegisterSession would choose one from the
// host's random source, and the simulated clients' ids name them in traces).
Session RegistrationOf(uint64_t shard, uint64_t client) {
  return Session(shard, client, Session::kRegisterSeries, 0);
}

struct ReplicaSpec {
  uint64_t shard = 0;
  uint64_t replica = 0;
  bool join = false;
  Members members;
};

using Kind = NodeHost::MemberKind;

struct Host {
  int index = 0;
  std::string name;
  std::string dir;
  std::unique_ptr<logdb::MemoryLogDB> mem;  // the disk: survives crashes
  std::unique_ptr<NodeHostImpl> nh;         // null while crashed
  SimDisk* disk = nullptr;                  // owned by nh
  bool slow = false;
  uint64_t restart_at = 0;
  std::map<uint64_t, ReplicaSpec> replicas;  // by shard: what a restart starts again
  bool dead = false;     // down for good (campaign-cap seeds, from the liveness phase on)
  bool damaged = false;  // a stored entry of one of its replicas was damaged
  // The on-disk state machines' own disks, by (shard, replica): survive crashes.
  std::map<std::pair<uint64_t, uint64_t>, DiskKvStore> sm_disks;
};

// A membership change: add a replica (a new one on a host without one, or
// the promotion of a non-voting member), then remove one; either step may
// be absent. A move is an added voter and a removed old member.
struct Move {
  int phase = 0;  // 0 idle, 1 adding, 2 removing
  Kind kind = Kind::kVoter;
  bool promote = false;      // phase 1 promotes new_replica, a non-voting member, to voter
  uint64_t new_replica = 0;  // 0: nothing to add
  int target = -1;
  uint64_t old_replica = 0;  // 0: nothing to remove
  RequestHandle handle;
  bool waiting = false;
  uint64_t deadline = 0;
};

struct Shard {
  uint64_t id = 0;
  int sm_kind = 0;                                // 0 in-memory, 1 concurrent, 2 on-disk
  std::map<uint64_t, int> members;                // replica -> host: the simulator's confirmed view
  std::map<uint64_t, Kind> kinds;                 // replica -> kind (voter unless listed otherwise)
  std::vector<std::pair<uint64_t, int>> removed;  // removed replicas left running, and their hosts
  std::vector<std::string> keys;
  std::unordered_map<uint64_t, uint64_t> applied;    // index -> hash of the entry applied there
  std::unordered_map<uint64_t, uint64_t> cmd_index;  // entry hash -> index (unique values)
  std::map<uint64_t, uint64_t> leader_of_term;       // term -> replica
  std::set<uint64_t> flipped;                        // replicas with a flipped stored bit
  uint64_t next_generation = 1;
  Move move;
  int moves_left = 0;
  // The configuration before the last acknowledged change, until every
  // live member has applied that change (Simulator::OldConfigurationLive).
  std::map<uint64_t, int> prev_members;
  std::map<uint64_t, Kind> prev_kinds;
  // The liveness marker: a put proposed once faults healed.
  RequestHandle marker;
  bool marker_waiting = false;
  uint64_t marker_deadline = 0;
  uint64_t marker_index = 0;  // 0 until the marker is acknowledged
  uint64_t marker_seq = 0;
};

struct ClientOp {
  bool active = false;
  bool read = false;
  bool session = false;
  lincheck::Command command;
  std::string encoded;
  uint64_t history_id = 0;
  RequestHandle handle;
  uint64_t deadline = 0;
  int attempts = 0;
};

struct Client {
  uint64_t id = 0;
  uint64_t shard = 0;
  bool use_session = false;
  Session session;
  bool registered = false;
  RequestHandle registering;
  bool register_waiting = false;
  uint64_t register_deadline = 0;
  uint64_t next_at = 0;
  uint64_t seq = 0;
  ClientOp op;
  std::map<std::string, std::optional<std::string>> seen;  // last value seen per key
};

struct AckedWrite {
  uint64_t shard, index, hash;
};

class Simulator;

class Listener final : public EventListener {
 public:
  Listener(Simulator* sim, int host) : sim_(sim), host_(host) {}
  void LeaderChanged(uint64_t shard, uint64_t replica, uint64_t leader, uint64_t term) override;
  void SnapshotReceived(uint64_t, uint64_t, uint64_t) override;

 private:
  Simulator* sim_;
  int host_;
};

class Simulator final : public ApplyObserver {
 public:
  Simulator(uint64_t seed, const SimOptions& opt)
      : seed_(seed), opt_(opt), rng_(seed), net_rng_(seed ^ 0x5bd1e995c0ffee11ULL) {}
  ~Simulator() override;

  SimResult Run();

  // ApplyObserver.
  void OnApply(uint64_t shard, uint64_t replica, uint64_t index, std::string_view cmd) override;
  void OnOrderViolation(uint64_t shard, uint64_t replica, uint64_t from, uint64_t to) override;
  void OnLeader(uint64_t shard, uint64_t replica, uint64_t term);
  void OnSnapshotReceived() { ++result_.snapshots_received; }

 private:
  void Fail(const std::string& why);
  void Log(const std::string& what);
  void Trace(uint64_t a, uint64_t b = 0, uint64_t c = 0);
  void Setup();
  void StartHost(Host& h);
  void StartReplicaOn(Host& h, const ReplicaSpec& spec);
  void CrashHost(Host& h, const char* how);
  void Step(bool chaos);
  void MaybeFault();
  void Partition();
  size_t BusiestLeaderHost();
  void FlipBit();
  void TransferLeader();
  void BeginMove();
  void DriveMoves(bool chaos);
  void DriveClients(bool chaos);
  void StartOp(Client& c);
  void PollOp(Client& c);
  void DriveRegistration(Client& c);
  void FinishOp(Client& c, lincheck::Outcome outcome, const RequestResult* r);
  void SampleLeaders(Host& h);
  void BeginLiveness();
  bool LivenessDone();
  void FinalChecks();
  void DumpState();
  Host* UpHostOf(uint64_t shard, uint64_t* replica = nullptr);
  Host* RandomUpHost();
  bool Up(const Host& h) const { return h.nh != nullptr; }
  bool Area(uint32_t a) const { return (opt_.areas & a) != 0; }
  void ChooseSeedShape();
  void SetupShard(Shard& sh, int nhosts);
  std::unique_ptr<OnDiskStateMachine> NewDiskKv(Host& h, uint64_t shard, uint64_t replica);
  void RunPass(Host& h, bool chaos);
  void RecordVotes(Host& h);
  void CheckVotes(Host& h, bool chaos);
  bool PlanChange(Shard& s);
  void FinishRemoval(Shard& s);
  bool Required(const Shard& s) const;
  bool LiveMajority(const std::map<uint64_t, int>& members, const std::map<uint64_t, Kind>& kinds,
                    uint64_t without, uint64_t with, int with_host, Kind with_kind) const;
  bool OldConfigurationLive(Shard& s);
  bool MustProgress(Shard& s) { return Required(s) && OldConfigurationLive(s); }
  // Whether a shard must progress counts neither dead nor damaged hosts:
  // a repairing replica does not vote, so a shard whose other voters are
  // too few cannot elect the leader that would repair it.
  bool Excused(const Host& h) const { return h.dead || h.damaged; }
  // A member of a shard that must progress is excused from catching up when
  // its host is dead, or, unless replicas repair, damaged.
  bool ExcusedMember(const Shard& s, uint64_t rid, const Host& h) const {
    return h.dead || (!Area(kAreaRepair) && (h.damaged || s.flipped.contains(rid)));
  }
  bool DamageRecord(Host& h, uint64_t shard, uint64_t replica);
  static Kind KindOf(const Shard& s, uint64_t rid) {
    auto it = s.kinds.find(rid);
    return it == s.kinds.end() ? Kind::kVoter : it->second;
  }

  // Every third seed lets idle shards quiesce (after one election timeout),
  // and its clients pause for one second in every three (faults go on), so
  // quiet spells, faults and wake-ups meet quiesced replicas.
  bool Quiescing() const { return seed_ % 3 == 1; }
  bool QuietSpell() const { return Quiescing() && now_ % 3000 >= 2000; }

  const uint64_t seed_;
  const SimOptions opt_;
  std::mt19937_64 rng_;
  std::mt19937_64 net_rng_;
  transport::InProcNetwork net_;
  std::string root_;
  std::vector<Host> hosts_;
  std::map<uint64_t, Shard> shards_;
  std::vector<Client> clients_;
  lincheck::History history_;
  std::vector<AckedWrite> acked_;
  uint64_t now_ = 0;
  uint64_t trace_ = 1469598103934665603ULL;
  SimResult result_;
  uint64_t next_client_id_ = 1;
  // Drawn per seed (ChooseSeedShape).
  bool wide_ = false;         // five voters, witnesses, non-voting, repeated changes
  bool dead_seed_ = false;    // hosts dead for good in the liveness phase
  bool cap_seed_ = false;     // a binding campaign cap, many shards, dead hosts
  uint32_t cap_ = 64;         // NodeHostConfig::max_concurrent_campaigns
  double sm_commit_p_ = 0.5;  // an on-disk state machine commits after an update
  double vote_crash_p_ = 0;   // a host crashes right after a pass that granted a vote
  double split_crash_p_ = 0;  // a host crashes between its step pass and its apply round
  std::vector<std::pair<uint64_t, std::pair<uint64_t, uint64_t>>> votes_;  // shard, (term, vote)
};

void Listener::LeaderChanged(uint64_t shard, uint64_t replica, uint64_t leader, uint64_t term) {
  if (leader == replica) sim_->OnLeader(shard, replica, term);
  (void)host_;
}

void Listener::SnapshotReceived(uint64_t, uint64_t, uint64_t) { sim_->OnSnapshotReceived(); }

Simulator::~Simulator() {
  for (Host& h : hosts_) h.nh.reset();
  std::error_code ec;
  if (!root_.empty()) std::filesystem::remove_all(root_, ec);
}

void Simulator::Fail(const std::string& why) {
  if (!result_.ok) return;
  result_.ok = false;
  result_.failure = "at " + std::to_string(now_) + " ms: " + why;
  Log("FAIL " + why);
}

void Simulator::Log(const std::string& what) {
  if (opt_.verbose)
    std::printf("[%6llu ms] %s\n", static_cast<unsigned long long>(now_), what.c_str());
}

void Simulator::Trace(uint64_t a, uint64_t b, uint64_t c) {
  for (uint64_t v : {a, b, c}) trace_ = (trace_ ^ v) * 1099511628211ULL;
}

// ---------------------------------------------------------------------------
// Invariants fed by the engine.

void Simulator::OnApply(uint64_t shard, uint64_t replica, uint64_t index, std::string_view cmd) {
  Shard& s = shards_.at(shard);
  const uint64_t h = Fnv(cmd);
  Trace(shard * 1000 + replica, index, h);
  auto [it, fresh] = s.applied.emplace(index, h);
  if (!fresh && it->second != h) {
    Fail("shard " + std::to_string(shard) + " replica " + std::to_string(replica) +
         " applied a different entry at index " + std::to_string(index) + " (\"" +
         std::string(cmd) + "\") than another replica: committed logs diverged");
    return;
  }
  // Every write carries a unique value, so one command at two indexes is a
  // write applied twice.
  auto [ci, first] = s.cmd_index.emplace(h, index);
  if (!first && ci->second != index) {
    Fail("shard " + std::to_string(shard) + ": \"" + std::string(cmd) + "\" applied at index " +
         std::to_string(ci->second) + " and again at " + std::to_string(index) +
         " (not exactly once)");
  }
}

void Simulator::OnOrderViolation(uint64_t shard, uint64_t replica, uint64_t from, uint64_t to) {
  Fail("shard " + std::to_string(shard) + " replica " + std::to_string(replica) +
       " applied index " + std::to_string(to) + " after " + std::to_string(from));
}

void Simulator::OnLeader(uint64_t shard, uint64_t replica, uint64_t term) {
  Shard& s = shards_.at(shard);
  auto [it, fresh] = s.leader_of_term.emplace(term, replica);
  if (fresh) {
    ++result_.leader_changes;
    Trace(shard, replica, term);
  }
  if (!fresh && it->second != replica) {
    Fail("shard " + std::to_string(shard) + " has two leaders in term " + std::to_string(term) +
         ": replica " + std::to_string(replica) + " leads it, and replica " +
         std::to_string(it->second) + " led it or was followed as its leader");
  }
}

// A replica that follows a leader in term T names the one leader of T: a
// follower only ever learns its leader from that leader's messages of its
// own term.
void Simulator::SampleLeaders(Host& h) {
  for (const auto& [shard, spec] : h.replicas) {
    Result<ReplicaInfo> info = h.nh->GetReplicaInfo(shard);
    if (!info.ok()) continue;
    if (info->quiesced) ++result_.quiesced_samples;
    if (info->role == ReplicaRole::kLeader) {
      OnLeader(shard, info->replica_id, info->term);
    } else if (info->leader_id != 0 && info->leader_id != info->replica_id) {
      Shard& s = shards_.at(shard);
      auto [it, fresh] = s.leader_of_term.emplace(info->term, info->leader_id);
      if (!fresh && it->second != info->leader_id) {
        Fail("shard " + std::to_string(shard) + " replica " + std::to_string(info->replica_id) +
             " follows replica " + std::to_string(info->leader_id) + " in term " +
             std::to_string(info->term) + ", whose leader is replica " +
             std::to_string(it->second));
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Hosts.

// Which widened areas this seed uses, drawn before anything else.
void Simulator::ChooseSeedShape() {
  wide_ = Area(kAreaWideMembership) && opt_.faults && Chance(rng_, 0.5);
  cap_seed_ = Area(kAreaCampaignCap) && opt_.faults && Chance(rng_, 0.25);
  cap_ = cap_seed_ ? (Chance(rng_, 0.5) ? 2 : 4) : 64;
  sm_commit_p_ = 0.1 + Unit(rng_) * 0.8;
  if (Area(kAreaCrashPoints) && opt_.faults) {
    vote_crash_p_ = Chance(rng_, 0.5) ? 0.2 + Unit(rng_) * 0.6 : 0;
    split_crash_p_ = Chance(rng_, 0.5) ? Unit(rng_) * 0.01 : 0;
  }
  result_.cap = cap_;
  dead_seed_ = opt_.faults && (cap_seed_ ? Area(kAreaCapDeadHosts) && Chance(rng_, 0.7)
                                         : Area(kAreaDeadHosts) && Chance(rng_, 0.2));
}

void Simulator::Setup() {
  root_ = SimDataRoot(opt_, seed_, ::getpid());
  std::error_code ec;
  std::filesystem::remove_all(root_, ec);
  ChooseSeedShape();
  // Wide seeds have more hosts (so that a five-voter shard still has free
  // hosts to move to); campaign-cap seeds have five hosts and many shards.
  const int nhosts = cap_seed_ ? 5
                     : wide_   ? 5 + static_cast<int>(Below(rng_, 3))
                               : 3 + static_cast<int>(Below(rng_, 3));
  const int nshards =
      cap_seed_ ? 12 + static_cast<int>(Below(rng_, 13)) : 3 + static_cast<int>(Below(rng_, 6));
  result_.hosts = static_cast<uint64_t>(nhosts);
  result_.shards = static_cast<uint64_t>(nshards);
  hosts_.resize(static_cast<size_t>(nhosts));
  for (int i = 0; i < nhosts; ++i) {
    Host& h = hosts_[static_cast<size_t>(i)];
    h.index = i;
    h.name = "h" + std::to_string(i + 1);
    h.dir = root_ + "/" + h.name;
    h.mem = logdb::NewMemoryLogDB();
  }
  for (int s = 1; s <= nshards; ++s) {
    Shard& sh = shards_[static_cast<uint64_t>(s)];
    sh.id = static_cast<uint64_t>(s);
    SetupShard(sh, nhosts);
  }
  for (Host& h : hosts_) StartHost(h);
  Log("hosts=" + std::to_string(nhosts) + " shards=" + std::to_string(nshards) + " clients=" +
      std::to_string(clients_.size()) + " areas=" + AreaNames(opt_.areas) + (wide_ ? " wide" : "") +
      " cap=" + std::to_string(cap_) + " vote_crash=" + std::to_string(vote_crash_p_));
}

void Simulator::SetupShard(Shard& sh, int nhosts) {
  const int kinds = Area(kAreaOnDiskSM) ? 3 : Area(kAreaConcurrentSM) ? 2 : 1;
  sh.sm_kind = static_cast<int>(Below(rng_, static_cast<uint64_t>(kinds)));
  if (sh.sm_kind == 1 && !Area(kAreaConcurrentSM)) sh.sm_kind = 2;
  result_.concurrent_shards += sh.sm_kind == 1;
  result_.ondisk_shards += sh.sm_kind == 2;
  // Three replicas (five in half the shards of wide seeds) on distinct hosts
  // chosen by the seed; replica id = host + 1.
  std::vector<int> order(static_cast<size_t>(nhosts));
  for (int i = 0; i < nhosts; ++i) order[static_cast<size_t>(i)] = i;
  for (size_t i = order.size() - 1; i > 0; --i) std::swap(order[i], order[Below(rng_, i + 1)]);
  const int nreplicas = wide_ && Chance(rng_, 0.5) ? 5 : 3;
  Members members;
  for (int k = 0; k < nreplicas; ++k) {
    const int host = order[static_cast<size_t>(k)];
    sh.members[static_cast<uint64_t>(host + 1)] = host;
    members[static_cast<uint64_t>(host + 1)] = hosts_[static_cast<size_t>(host)].name;
  }
  for (const auto& [rid, host] : sh.members) {
    hosts_[static_cast<size_t>(host)].replicas[sh.id] = ReplicaSpec{sh.id, rid, false, members};
  }
  const int nkeys = 1 + static_cast<int>(Below(rng_, 3));
  for (int k = 0; k < nkeys; ++k)
    sh.keys.push_back("s" + std::to_string(sh.id) + "k" + std::to_string(k));
  sh.moves_left = !opt_.faults || nhosts <= 3 ? 0
                  : wide_                     ? 2 + static_cast<int>(Below(rng_, 4))
                                              : static_cast<int>(Below(rng_, 2));
  // Clients: two plain ones and, often, one with an exactly-once session
  // (one client in the many shards of campaign-cap seeds).
  const int nclients = cap_seed_ ? 1 : 2 + (Chance(rng_, 0.6) ? 1 : 0);
  for (int c = 0; c < nclients; ++c) {
    Client cl;
    cl.id = next_client_id_++;
    cl.shard = sh.id;
    cl.use_session = c == 2 || (cap_seed_ && Chance(rng_, 0.3));
    cl.next_at = Below(rng_, 100);
    clients_.push_back(std::move(cl));
  }
}

void Simulator::StartHost(Host& h) {
  NodeHostConfig c;
  c.data_dir = h.dir;
  c.raft_address = h.name;
  c.rtt_ms = kTickMs;
  c.step_workers = 1;
  c.apply_workers = 1;
  c.max_concurrent_campaigns = cap_;
  c.listener = std::make_shared<Listener>(this, h.index);
  engine::NodeHostDeps d;
  auto disk = std::make_unique<SimDisk>(h.mem.get());
  SimDisk* raw = disk.get();
  d.logdb = std::move(disk);
  d.start_threads = false;
  d.seed = rng_() | 1;
  transport::InProcNetwork* net = &net_;
  const std::string name = h.name;
  const std::string snapdir = h.dir + "/snapshots-in";
  d.make_transport = [net, name, snapdir](transport::Registry* reg, transport::Handler* handler) {
    transport::TransportConfig tc;
    tc.listen_address = name;
    tc.snapshot_dir = snapdir;
    tc.snapshot_chunk_bytes = 128;  // several chunks, so that a cut stream is cut mid-way
    return std::make_unique<transport::InProcTransport>(net, tc, reg, handler);
  };
  h.nh = std::make_unique<NodeHostImpl>(c, std::move(d));
  h.disk = raw;
  Status s = h.nh->Init();
  if (!s.ok()) {
    Fail("host " + h.name + " did not start: " + s.ToString());
    return;
  }
  for (const auto& [shard, spec] : h.replicas) StartReplicaOn(h, spec);
  if (opt_.address_book) {
    for (const auto& [id, sh] : shards_) {
      for (const auto& [rid, host] : sh.members) {
        h.nh->registry()->Add(id, rid, hosts_[static_cast<size_t>(host)].name);
      }
      if (sh.move.phase != 0) {
        h.nh->registry()->Add(id, sh.move.new_replica,
                              hosts_[static_cast<size_t>(sh.move.target)].name);
      }
    }
  }
}

void Simulator::StartReplicaOn(Host& h, const ReplicaSpec& spec) {
  ShardConfig sc;
  sc.shard_id = spec.shard;
  sc.replica_id = spec.replica;
  sc.snapshot_entries = 8 + (seed_ + spec.shard) % 24;
  sc.compaction_overhead = 2 + (seed_ + spec.shard) % 6;
  sc.quiesce_after_election_timeouts = Quiescing() ? 1 : 0;
  const int kind = shards_.at(spec.shard).sm_kind;
  const StartMode mode = spec.join ? StartMode::kJoin : StartMode::kNewShard;
  Status s = kind == 0   ? h.nh->StartReplica(sc, spec.members, mode,
                                              [this](uint64_t shard, uint64_t rid) {
                                              return std::make_unique<SimKv>(shard, rid, this);
                                            })
             : kind == 1 ? h.nh->StartConcurrentReplica(sc, spec.members, mode,
                                                        [this](uint64_t shard, uint64_t rid) {
                                                          return std::make_unique<SimConcurrentKv>(
                                                              shard, rid, this);
                                                        })
                         : h.nh->StartOnDiskReplica(sc, spec.members, mode,
                                                    [this, &h](uint64_t shard, uint64_t rid) {
                                                      return NewDiskKv(h, shard, rid);
                                                    });
  // A crash inside a write (SaveBootstrap) makes the start fail; the crash
  // is handled after the step. A replica whose stored log we damaged may be
  // refused with Corruption: detected, so it stays down.
  const bool damaged = shards_.at(spec.shard).flipped.contains(spec.replica);
  if (!s.ok() && s.code() == StatusCode::kCorruption && damaged) {
    Log("host " + h.name + " refuses damaged shard " + std::to_string(spec.shard) + " replica " +
        std::to_string(spec.replica) + ": " + s.ToString());
    ++result_.corruptions_detected;
    return;
  }
  if (!s.ok() && !(h.disk != nullptr && h.disk->crashed())) {
    Fail("host " + h.name + ": starting shard " + std::to_string(spec.shard) + " replica " +
         std::to_string(spec.replica) + " failed: " + s.ToString());
  }
}

// The state machine's own disk lives with the host's LogDB; it commits
// after an update with the seed's probability, so what survives a crash is
// anywhere between the LogDB's saved commit and the last entry applied.
std::unique_ptr<OnDiskStateMachine> Simulator::NewDiskKv(Host& h, uint64_t shard,
                                                         uint64_t replica) {
  DiskKvStore* store = &h.sm_disks[{shard, replica}];
  return std::make_unique<SimDiskKv>(shard, replica, this, store, [this] {
    const bool commit = Chance(rng_, sm_commit_p_);
    result_.sm_commits += commit;
    return commit;
  });
}

void Simulator::CrashHost(Host& h, const char* how) {
  Log("crash " + h.name + " (" + how + ")");
  Trace(0xc4a54, static_cast<uint64_t>(h.index), now_);
  ++result_.crashes;
  if (h.disk != nullptr && h.disk->torn()) ++result_.torn_writes;
  h.nh.reset();  // pending requests end as terminated: unknown to their clients
  h.disk = nullptr;
  h.mem->Restart();
  h.restart_at = now_ + 20 + Below(rng_, 400);
}

Host* Simulator::RandomUpHost() {
  std::vector<Host*> up;
  for (Host& h : hosts_) {
    if (Up(h)) up.push_back(&h);
  }
  return up.empty() ? nullptr : up[Below(rng_, up.size())];
}

// A random up host that runs a replica of `shard` the simulator knows as a
// member, not a witness.
Host* Simulator::UpHostOf(uint64_t shard, uint64_t* replica) {
  std::vector<std::pair<Host*, uint64_t>> up;
  const Shard& s = shards_.at(shard);
  for (const auto& [rid, host] : s.members) {
    Host& h = hosts_[static_cast<size_t>(host)];
    // A witness has no data to read and takes no proposals.
    if (Up(h) && KindOf(s, rid) != Kind::kWitness) up.emplace_back(&h, rid);
  }
  if (up.empty()) return nullptr;
  auto pick = up[Below(rng_, up.size())];
  if (replica != nullptr) *replica = pick.second;
  return pick.first;
}

// ---------------------------------------------------------------------------
// The schedule.

void Simulator::Step(bool chaos) {
  ++now_;
  ++result_.steps;
  net_.AdvanceTime(1);
  if (now_ % kTickMs == 0) {
    // A little clock jitter: a host now and then misses a tick.
    for (Host& h : hosts_) {
      if (Up(h) && !Chance(rng_, 0.03)) h.nh->AdvanceTick();
    }
  }
  if (chaos && opt_.faults && Chance(rng_, 1.0 / kFaultEveryMs)) MaybeFault();
  for (Host& h : hosts_) {
    if (!Up(h) && !h.dead && h.restart_at <= now_) {
      Log("restart " + h.name);
      Trace(0x5747, static_cast<uint64_t>(h.index), now_);
      StartHost(h);
    }
  }
  DriveClients(chaos);
  DriveMoves(chaos);
  // Which hosts run a pass now, in an order drawn from the seed. A slow
  // disk is a host whose passes (each ending in its fsync) come rarely.
  std::vector<size_t> order(hosts_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (size_t i = order.size() - 1; i > 0; --i) std::swap(order[i], order[Below(rng_, i + 1)]);
  for (size_t i : order) {
    Host& h = hosts_[i];
    if (!Up(h) || !Chance(rng_, h.slow ? 0.08 : 0.5)) continue;
    ++result_.passes;
    RunPass(h, chaos);
  }
  // Deliver a random share of what is in flight, so that the backlog (and
  // with it the latency) stays bounded however busy the hosts are.
  const uint64_t deliveries = Below(rng_, 4 * hosts_.size() + 1) + net_.pending() / 2;
  for (uint64_t i = 0; i < deliveries; ++i) {
    if (!net_.DeliverOne(net_rng_)) break;
  }
}

// One step worker pass and one apply round of host `h` (NodeHostImpl::
// RunOnce), with crashes at the points between: inside a write of the pass
// (SimDisk), between the pass and the apply round, and right after a pass
// in which a replica granted its vote (before anything else happens).
void Simulator::RunPass(Host& h, bool chaos) {
  const bool votes = vote_crash_p_ > 0 || Area(kAreaVoteDurable);
  if (votes) RecordVotes(h);
  h.nh->step_worker(0)->RunPass();
  // A replica that found damage while running starts again, repairing.
  if (!h.disk->crashed() && !h.disk->failed()) h.nh->RunPendingRepairs();
  const auto crashed = [&] {
    if (h.disk->crashed()) {
      CrashHost(h, h.disk->torn() ? "torn write" : "inside a write");
    } else if (h.disk->failed()) {
      ++result_.storage_restarts;
      CrashHost(h, "a write failed: the operator restarts it");
    }
    return !Up(h);
  };
  if (crashed()) return;
  uint64_t down = 0;
  for (Host& o : hosts_) down += Up(o) ? 0 : 1;
  if (chaos && down < kMaxDownHosts && split_crash_p_ > 0 && Chance(rng_, split_crash_p_)) {
    CrashHost(h, "between its step pass and its apply round");
    return;
  }
  h.nh->apply_worker(0)->RunOnce();
  if (crashed()) return;
  if (votes) CheckVotes(h, chaos);
  if (Up(h)) SampleLeaders(h);
}

// The term and vote of every replica of `h` before its pass.
void Simulator::RecordVotes(Host& h) {
  votes_.clear();
  for (const auto& [shard, spec] : h.replicas) {
    std::shared_ptr<engine::Replica> r = h.nh->Find(shard);
    if (r == nullptr || r->peer == nullptr) continue;
    votes_.push_back({shard, {r->peer->raft().term(), r->peer->raft().vote()}});
  }
}

// After a pass: a replica that granted a vote in it must have stored it
// (the vote went out with the pass's messages), and, with the seed's
// probability, the host crashes now, so that a vote lost with the crash
// lets the replica vote twice in one term.
void Simulator::CheckVotes(Host& h, bool chaos) {
  bool granted = false;
  for (const auto& [shard, before] : votes_) {
    std::shared_ptr<engine::Replica> r = h.nh->Find(shard);
    if (r == nullptr || r->peer == nullptr || r->stopped.load()) continue;
    const raft::Raft& raft = r->peer->raft();
    const std::pair<uint64_t, uint64_t> now{raft.term(), raft.vote()};
    if (now == before || now.second == 0 || now.second == r->replica_id) continue;
    granted = true;
    if (!Area(kAreaVoteDurable)) continue;
    Result<logdb::ReplicaState> st = h.mem->ReadState(shard, r->replica_id);
    if (st.ok() && (st->hard_state.term != now.first || st->hard_state.vote != now.second)) {
      Fail("host " + h.name + " shard " + std::to_string(shard) + " replica " +
           std::to_string(r->replica_id) + " granted its vote to " + std::to_string(now.second) +
           " in term " + std::to_string(now.first) + " without storing it (stored: term " +
           std::to_string(st->hard_state.term) + " vote " + std::to_string(st->hard_state.vote) +
           ")");
    }
  }
  uint64_t down = 0;
  for (Host& o : hosts_) down += Up(o) ? 0 : 1;
  if (chaos && granted && down < kMaxDownHosts && Chance(rng_, vote_crash_p_)) {
    ++result_.vote_crashes;
    CrashHost(h, "right after granting a vote");
  }
}

void Simulator::MaybeFault() {
  const uint64_t kind = Below(rng_, 100);
  if (kind < 15) {
    transport::InProcFaults f;
    f.drop_probability = Chance(rng_, 0.7) ? Unit(rng_) * 0.15 : 0;
    f.duplicate_probability = Chance(rng_, 0.5) ? Unit(rng_) * 0.1 : 0;
    f.reorder_probability = Chance(rng_, 0.5) ? Unit(rng_) * 0.5 : 0;
    // Now and then a long delay, so that a deposed leader's messages arrive
    // after a newer leader has been elected and has replicated.
    f.max_delay_ms =
        Chance(rng_, 0.5) ? (Chance(rng_, 0.3) ? Below(rng_, 300) : Below(rng_, 40)) : 0;
    f.snapshot_cut_probability = Chance(rng_, 0.5) ? Unit(rng_) * 0.7 : 0;
    f.duplicate_forwarded_proposals = false;  // see docs/simulation.md
    net_.SetFaults(f);
    Log("network: drop " + std::to_string(f.drop_probability) + " dup " +
        std::to_string(f.duplicate_probability) + " reorder " +
        std::to_string(f.reorder_probability) + " delay<=" + std::to_string(f.max_delay_ms) +
        " snapshot cut " + std::to_string(f.snapshot_cut_probability));
  } else if (kind < 35) {
    Partition();
  } else if (kind < 47) {
    net_.HealAll();
    Log("heal all");
  } else if (kind < 60) {
    uint64_t down = 0;
    for (Host& h : hosts_) down += Up(h) ? 0 : 1;
    Host* h = RandomUpHost();
    if (h == nullptr || down >= kMaxDownHosts || h->disk->armed() != CrashInWrite::kNone) return;
    const uint64_t how = Below(rng_, Area(kAreaCrashPoints) ? 4 : 3);
    if (how == 0) {
      CrashHost(*h, "between passes");
    } else {
      // The crash strikes inside the host's next write.
      h->disk->ArmCrash(how == 1   ? CrashInWrite::kBeforeWrite
                        : how == 2 ? CrashInWrite::kTornWrite
                                   : CrashInWrite::kAfterWrite);
      Log("arm crash inside the next write of " + h->name);
    }
  } else if (kind < 68) {
    FlipBit();
  } else if (kind < 76) {
    Host* h = RandomUpHost();
    if (h != nullptr) {
      h->slow = !h->slow;
      Log(h->name + (h->slow ? " gets a slow disk" : " gets a fast disk"));
    }
  } else if (kind < 88) {
    TransferLeader();
  } else {
    BeginMove();
  }
}

void Simulator::Partition() {
  ++result_.partitions;
  const size_t n = hosts_.size();
  const auto name = [&](size_t i) { return hosts_[i % n].name; };
  const uint64_t kind = Below(rng_, 5);
  const size_t a = Below(rng_, n);
  const size_t b = (a + 1 + Below(rng_, n - 1)) % n;
  if (kind == 0) {
    net_.Partition(name(a), name(b));
    Log("partition " + name(a) + " <-> " + name(b));
  } else if (kind == 1) {
    net_.PartitionOneWay(name(a), name(b));
    Log("partition one way " + name(a) + " -> " + name(b));
  } else if (kind == 2) {
    // Often the host that leads the most shards: its clients keep talking
    // to it (they are not behind the network), so a leader that does not
    // notice it was deposed shows in their history.
    const size_t victim = Chance(rng_, 0.6) ? BusiestLeaderHost() : a;
    net_.Isolate(name(victim));
    Log("isolate " + name(victim));
  } else if (kind == 3) {
    // A majorities ring: each host reaches only its two neighbours, so
    // every host sees a majority (of 5) but no two majorities agree.
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = i + 2; j < n; ++j) {
        if (i == 0 && j == n - 1) continue;
        net_.Partition(name(i), name(j));
      }
    }
    Log("majorities ring");
  } else {
    // Two sides: a random minority against the rest.
    std::vector<bool> side(n, false);
    for (size_t k = 0; k < (n - 1) / 2 + 1; ++k) side[Below(rng_, n)] = true;
    std::string desc;
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = i + 1; j < n; ++j) {
        if (side[i] != side[j]) net_.Partition(name(i), name(j));
      }
      if (side[i]) desc += " " + name(i);
    }
    Log("split {" + desc + " } from the rest");
  }
}

size_t Simulator::BusiestLeaderHost() {
  size_t best = 0;
  size_t best_count = 0;
  for (size_t i = 0; i < hosts_.size(); ++i) {
    if (!Up(hosts_[i])) continue;
    size_t count = 0;
    for (const ReplicaInfo& ri : hosts_[i].nh->GetInfo().replicas)
      count += ri.role == ReplicaRole::kLeader;
    if (count > best_count) {
      best = i;
      best_count = count;
    }
  }
  return best;
}

void Simulator::FlipBit() {
  // Damage stays on one host unless kAreaDamageAnywhere, and then on a
  // minority of the hosts. A Save that must rewrite a damaged record fails
  // for every shard of its pass, so a damaged host may stop at every restart
  // (docs/simulation.md, "Found" 5): a shard left without a majority of its
  // voters on undamaged hosts is excused from the liveness check (Required),
  // never from the safety checks.
  Host* h = nullptr;
  if (!Area(kAreaDamageAnywhere)) {
    for (Host& o : hosts_) {
      if (o.damaged) h = &o;
    }
  }
  if (h == nullptr) h = RandomUpHost();
  if (h == nullptr || !Up(*h) || h->replicas.empty()) return;
  if (!h->damaged) {
    size_t damaged = 1;
    for (const Host& o : hosts_) damaged += o.damaged ? 1 : 0;
    if (damaged * 2 >= hosts_.size()) return;
  }
  auto it = h->replicas.begin();
  std::advance(it, static_cast<long>(Below(rng_, h->replicas.size())));
  Shard& s = shards_.at(it->first);
  // At most one damaged replica per shard, so that a majority stays whole;
  // and none in a shard whose membership changes (docs/simulation.md,
  // "Found": the remaining voters may not know that a removal committed).
  if (!s.flipped.empty() && !s.flipped.contains(it->second.replica)) return;
  if (!Area(kAreaRepair) && (s.moves_left > 0 || s.next_generation > 1)) return;
  if (Area(kAreaRepair) && Chance(rng_, 0.4)) {
    if (DamageRecord(*h, it->first, it->second.replica)) {
      s.flipped.insert(it->second.replica);
      result_.damaged_hosts += !h->damaged;
      h->damaged = true;
      ++result_.bit_flips;
    }
    return;
  }
  Result<logdb::ReplicaState> st = h->mem->ReadState(it->first, it->second.replica);
  if (!st.ok() || st->last_index < st->first_index) return;
  const uint64_t index = st->first_index + Below(rng_, st->last_index - st->first_index + 1);
  if (h->mem->FlipEntryBit(it->first, it->second.replica, index, rng_())) {
    s.flipped.insert(it->second.replica);
    result_.damaged_hosts += !h->damaged;
    h->damaged = true;
    ++result_.bit_flips;
    Log("flip a bit of shard " + std::to_string(it->first) + " replica " +
        std::to_string(it->second.replica) + " index " + std::to_string(index) + " on " + h->name);
  }
}

// With repair: a bit of the hard state record, or of a file of the newest
// snapshot, of one replica (false when it has neither).
bool Simulator::DamageRecord(Host& h, uint64_t shard, uint64_t replica) {
  const std::string what = std::to_string(shard) + " replica " + std::to_string(replica);
  if (Chance(rng_, 0.5)) {
    std::string key;
    logdb::format::RecordKey(logdb::format::RecordType::kHardState, shard, replica, &key);
    if (!logdb::testing::FlipStoredBit(h.mem->store_for_testing(), key, 8 * 5 + Below(rng_, 64)))
      return false;
    ++result_.hard_state_flips;
    Log("flip a bit of the hard state of shard " + what + " on " + h.name);
    return true;
  }
  namespace fs = std::filesystem;
  const fs::path root = engine::SnapshotRoot(h.dir, shard, replica);
  std::error_code ec;
  fs::path newest;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    if (e.path().filename().string().rfind("snapshot-", 0) == 0 && e.path() > newest)
      newest = e.path();
  }
  for (const char* name : {engine::kSnapshotDataFile, engine::kSnapshotSessionsFile}) {
    const fs::path file = newest / name;
    if (newest.empty() || !fs::exists(file, ec) || fs::file_size(file, ec) == 0) continue;
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    const auto at = static_cast<std::streamoff>(Below(rng_, fs::file_size(file, ec)));
    char c = 0;
    f.seekg(at);
    f.get(c);
    f.seekp(at);
    f.put(static_cast<char>(c ^ 0x10));
    ++result_.snapshot_flips;
    Log("flip a bit of snapshot file " + file.string() + " of shard " + what + " on " + h.name);
    return true;
  }
  return false;
}

// Whether `s` must make progress in the liveness phase: its full voters on
// hosts neither dead nor damaged are a majority of its voters (witnesses
// included), in the configuration before and after a change in progress.
// Live witnesses do not count: a witness never leads, and a full voter
// behind it (entries committed by a leader now dead and the witness) cannot
// win its vote, rightly.
bool Simulator::LiveMajority(const std::map<uint64_t, int>& members,
                             const std::map<uint64_t, Kind>& kinds, uint64_t without, uint64_t with,
                             int with_host, Kind with_kind) const {
  size_t voters = 0;
  size_t live = 0;
  const auto count = [&](int host, Kind kind) {
    ++voters;
    live += Excused(hosts_[static_cast<size_t>(host)]) || kind == Kind::kWitness ? 0 : 1;
  };
  for (const auto& [rid, host] : members) {
    auto k = kinds.find(rid);
    const Kind kind = k == kinds.end() ? Kind::kVoter : k->second;
    if (rid != without && rid != with && kind != Kind::kNonVoting) count(host, kind);
  }
  if (with != 0) count(with_host, with_kind);
  return live * 2 > voters;
}

bool Simulator::Required(const Shard& s) const {
  const auto majority = [&](uint64_t without, uint64_t with, int with_host, Kind with_kind) {
    return LiveMajority(s.members, s.kinds, without, with, with_host, with_kind);
  };
  const Move& m = s.move;
  const Kind added = m.promote ? Kind::kVoter : m.kind;
  if (!majority(0, 0, -1, Kind::kVoter)) return false;
  if (m.phase == 1 && added != Kind::kNonVoting && !majority(0, m.new_replica, m.target, added)) {
    return false;
  }
  if (m.phase >= 1 && m.old_replica != 0) {
    const bool adds = m.phase == 1 && added != Kind::kNonVoting;
    if (!majority(m.old_replica, adds ? m.new_replica : 0, m.target, added)) return false;
  }
  return true;
}

// "Left alone" 6 of docs/simulation.md: a change takes effect on a replica
// when it applies the change, so a member that has not learned that the
// last acknowledged change committed still counts the configuration before
// it. If that configuration has lost its majority for good (a removed
// replica stopped by hand at the acknowledgement, and a host dead) and no
// live replica knows of the commit (its leader died with it), no one can
// tell them: Raft lets only a leader announce a commit, and no leader can
// be elected in either configuration. So the shard must make progress only
// while the configuration before the last change keeps a live majority, or
// once every live member has applied that change (then it is forgotten).
bool Simulator::OldConfigurationLive(Shard& s) {
  if (s.prev_members.empty()) return true;
  if (LiveMajority(s.prev_members, s.prev_kinds, 0, 0, -1, Kind::kVoter)) return true;
  for (const auto& [rid, host] : s.members) {
    Host& h = hosts_[static_cast<size_t>(host)];
    if (Excused(h)) continue;
    Result<ShardMembership> m =
        Up(h) ? h.nh->GetMembership(s.id) : Result<ShardMembership>(Status::NotFound("down"));
    if (!m.ok()) return false;
    std::set<uint64_t> applied;
    for (const Members* part : {&m->voters, &m->non_voting, &m->witnesses}) {
      for (const auto& [id, address] : *part) applied.insert(id);
    }
    std::set<uint64_t> confirmed;
    for (const auto& [id, at] : s.members) confirmed.insert(id);
    if (applied != confirmed) return false;
  }
  s.prev_members.clear();
  s.prev_kinds.clear();
  return true;
}

void Simulator::TransferLeader() {
  auto it = shards_.begin();
  std::advance(it, static_cast<long>(Below(rng_, shards_.size())));
  Shard& s = it->second;
  for (const auto& [rid, host] : s.members) {
    Host& h = hosts_[static_cast<size_t>(host)];
    if (!Up(h)) continue;
    Result<ReplicaInfo> info = h.nh->GetReplicaInfo(s.id);
    if (!info.ok() || info->role != ReplicaRole::kLeader) continue;
    auto t = s.members.begin();
    std::advance(t, static_cast<long>(Below(rng_, s.members.size())));
    if (t->first == rid) return;
    Status st = h.nh->TransferLeader(s.id, t->first);
    (void)st;  // a refused transfer is as good as a lost one
    ++result_.transfers;
    Log("transfer leadership of shard " + std::to_string(s.id) + " from " + std::to_string(rid) +
        " to " + std::to_string(t->first));
    return;
  }
}

// ---------------------------------------------------------------------------
// Membership: a replica moves to a host that has none of the shard (added as
// a voter, then an old member removed); wide seeds also add non-voting
// replicas and witnesses, promote non-voting ones and remove members. The
// simulator's view changes only once a change is acknowledged; a change
// whose outcome is unknown is proposed again (the same change twice is
// harmless), and a change in progress is finished once faults heal.

void Simulator::BeginMove() {
  auto it = shards_.begin();
  std::advance(it, static_cast<long>(Below(rng_, shards_.size())));
  Shard& s = it->second;
  if (s.moves_left <= 0 || s.move.phase != 0) return;
  if (!s.flipped.empty() && !Area(kAreaRepair)) return;
  if (!PlanChange(s)) return;
  --s.moves_left;
  ++result_.moves;
  Move& m = s.move;
  if (m.phase == 1 && !m.promote) {
    Host& target = hosts_[static_cast<size_t>(m.target)];
    Members book;
    for (const auto& [rid, host] : s.members) book[rid] = hosts_[static_cast<size_t>(host)].name;
    book[m.new_replica] = target.name;
    ReplicaSpec spec{s.id, m.new_replica, true, book};
    target.replicas[s.id] = spec;
    if (Up(target)) StartReplicaOn(target, spec);
    if (opt_.address_book) {
      for (Host& h : hosts_) {
        if (Up(h)) h.nh->registry()->Add(s.id, m.new_replica, target.name);
      }
    }
  }
  static constexpr const char* kKindName[] = {"voter", "non-voting", "witness"};
  Log("change shard " + std::to_string(s.id) + ": " +
      (m.new_replica == 0
           ? std::string()
           : std::string(m.promote ? "promote " : "add ") + kKindName[static_cast<int>(m.kind)] +
                 " " + std::to_string(m.new_replica) + " on " +
                 hosts_[static_cast<size_t>(m.target)].name + " ") +
      (m.old_replica == 0 ? "" : "remove " + std::to_string(m.old_replica)));
}

// Chooses the next change of `s` (false: none fits now). Every
// configuration keeps two full voters or more, more full voters than
// witnesses and three voters or more, at most five members, and replicas
// on distinct hosts.
bool Simulator::PlanChange(Shard& s) {
  std::vector<int> free;
  for (Host& h : hosts_) {
    if (h.replicas.contains(s.id) || (h.damaged && !Area(kAreaRepair))) continue;
    // A removed replica left running still holds the shard on its host.
    if (Up(h) && h.nh->GetReplicaInfo(s.id).ok()) continue;
    free.push_back(h.index);
  }
  int full = 0, witnesses = 0;
  std::vector<uint64_t> non_voting;
  for (const auto& [rid, host] : s.members) {
    const Kind k = KindOf(s, rid);
    full += k == Kind::kVoter;
    witnesses += k == Kind::kWitness;
    if (k == Kind::kNonVoting) non_voting.push_back(rid);
  }
  const auto removable = [&](uint64_t rid, int added_full) {
    const Kind k = KindOf(s, rid);
    if (k == Kind::kNonVoting) return true;
    const int f = full + added_full - (k == Kind::kVoter);
    const int w = witnesses - (k == Kind::kWitness);
    return f >= 2 && f > w && f + w >= 3;
  };
  auto pick = s.members.begin();
  std::advance(pick, static_cast<long>(Below(rng_, s.members.size())));
  const uint64_t choice = wide_ ? Below(rng_, 5) : 0;
  Move m;
  m.phase = 1;
  if (choice <= 2) {  // add a voter (and remove an old member), a non-voting replica or a witness
    if (free.empty() || (choice > 0 && s.members.size() >= 5)) return false;
    m.kind = choice == 0 ? Kind::kVoter : choice == 1 ? Kind::kNonVoting : Kind::kWitness;
    if (m.kind == Kind::kWitness && witnesses + 1 >= full) return false;
    m.target = free[Below(rng_, free.size())];
    m.new_replica = 10 * s.next_generation++ + static_cast<uint64_t>(m.target) + 1;
    if (choice == 0 && (s.members.size() >= 5 || Chance(rng_, 0.7)) && removable(pick->first, 1))
      m.old_replica = pick->first;
  } else if (choice == 3) {  // promote a non-voting replica
    if (non_voting.empty()) return false;
    m.promote = true;
    m.new_replica = non_voting[Below(rng_, non_voting.size())];
    m.target = s.members.at(m.new_replica);
  } else {  // remove a member
    if (!removable(pick->first, 0)) return false;
    m.phase = 2;
    m.old_replica = pick->first;
  }
  s.move = m;
  return true;
}

// The removal of `s.move.old_replica` was acknowledged. The replica is
// left running when kAreaRemovedLeftRunning (the engine stops it itself),
// and stopped by hand otherwise.
void Simulator::FinishRemoval(Shard& s) {
  const uint64_t old = s.move.old_replica;
  const int old_host = s.members.at(old);
  s.members.erase(old);
  s.kinds.erase(old);
  Host& h = hosts_[static_cast<size_t>(old_host)];
  h.replicas.erase(s.id);
  if (Area(kAreaRemovedLeftRunning)) {
    s.removed.emplace_back(old, old_host);
    ++result_.removed_left;
  } else if (Up(h)) {
    Status st = h.nh->StopReplica(s.id);
    (void)st;  // a replica that stopped by itself is already gone
  }
  s.move.phase = 0;
}

void Simulator::DriveMoves(bool chaos) {
  for (auto& [id, s] : shards_) {
    Move& m = s.move;
    if (m.phase == 0) continue;
    if (m.waiting) {
      if (m.handle.Done()) {
        const RequestResult r = m.handle.Wait();
        m.waiting = false;
        if (r.ok()) {
          Log("shard " + std::to_string(id) + (m.phase == 1 ? ": added " : ": removed ") +
              std::to_string(m.phase == 1 ? m.new_replica : m.old_replica));
          s.prev_members = s.members;
          s.prev_kinds = s.kinds;
          if (m.phase == 1) {
            s.members[m.new_replica] = m.target;
            s.kinds.erase(m.new_replica);
            if (!m.promote && m.kind != Kind::kVoter) s.kinds[m.new_replica] = m.kind;
            result_.witnesses += !m.promote && m.kind == Kind::kWitness;
            result_.non_voting += !m.promote && m.kind == Kind::kNonVoting;
            m.phase = m.old_replica != 0 ? 2 : 0;
          } else {
            FinishRemoval(s);
          }
        }
      } else if (now_ > m.deadline) {
        m.waiting = false;
      }
      continue;
    }
    if (!chaos && !Chance(rng_, 0.05)) continue;
    if (chaos && !Chance(rng_, 0.02)) continue;
    Host* h = UpHostOf(id);
    if (h == nullptr) continue;
    Result<RequestHandle> r =
        m.phase == 1
            ? h->nh->AddReplica(id, m.new_replica, hosts_[static_cast<size_t>(m.target)].name,
                                m.promote ? Kind::kVoter : m.kind, kEngineTimeout)
            : h->nh->RemoveReplica(id, m.old_replica, kEngineTimeout);
    if (!r.ok()) continue;
    m.handle = *r;
    m.waiting = true;
    m.deadline = now_ + kOpTimeoutMs;
  }
}

// ---------------------------------------------------------------------------
// Clients.

void Simulator::DriveClients(bool chaos) {
  for (Client& c : clients_) {
    if (c.op.active) {
      PollOp(c);
      continue;
    }
    if (c.use_session && !c.registered) {
      if (chaos || c.register_waiting) DriveRegistration(c);
      continue;
    }
    if (chaos && now_ >= c.next_at && !QuietSpell()) StartOp(c);
  }
}

void Simulator::DriveRegistration(Client& c) {
  if (c.register_waiting) {
    if (c.registering.Done()) {
      c.register_waiting = false;
      if (c.registering.Wait().ok()) {
        c.registered = true;
        c.session = Session(c.shard, c.id);
        Log("client " + std::to_string(c.id) + " registered its session");
      }
    } else if (now_ > c.register_deadline) {
      c.register_waiting = false;  // perhaps registered: a new id is harmless
    }
    return;
  }
  if (now_ < c.next_at) return;
  Host* h = UpHostOf(c.shard);
  if (h == nullptr) return;
  c.id = next_client_id_++ * 1000003 + seed_ % 1000;  // a fresh id for every attempt
  Result<RequestHandle> r =
      h->nh->ProposeInSession(RegistrationOf(c.shard, c.id), "", kEngineTimeout);
  c.next_at = now_ + 20;
  if (!r.ok()) return;
  c.registering = *r;
  c.register_waiting = true;
  c.register_deadline = now_ + kOpTimeoutMs;
}

void Simulator::StartOp(Client& c) {
  Shard& s = shards_.at(c.shard);
  Host* h = UpHostOf(c.shard);
  if (h == nullptr) return;
  ClientOp& op = c.op;
  op = ClientOp{};
  const std::string& key = s.keys[Below(rng_, s.keys.size())];
  const std::string value = "c" + std::to_string(c.id) + "." + std::to_string(++c.seq);
  const uint64_t kind = Below(rng_, 100);
  op.session = c.use_session;
  if (kind < 35 && !c.use_session) {
    op.read = true;
    op.command = lincheck::Command::Get(key);
  } else if (kind < 70) {
    op.command = lincheck::Command::Put(key, value);
  } else {
    std::optional<std::string> expected;
    auto seen = c.seen.find(key);
    if (seen != c.seen.end() && Chance(rng_, 0.8)) expected = seen->second;
    op.command = lincheck::Command::Cas(key, expected, value);
  }
  if (!op.read) {
    KvCommand kc;
    kc.op = op.command.kind == lincheck::OpKind::kCas ? 'C' : 'P';
    kc.key = key;
    kc.expected = op.command.expected;
    kc.value = value;
    kc.session = op.session;
    op.encoded = kc.Encode();
  }
  op.history_id = history_.Invoke(c.id, op.command);
  op.active = true;
  op.attempts = 1;
  op.deadline = now_ + kOpTimeoutMs;
  ++result_.ops;
  Result<RequestHandle> r = op.read ? h->nh->Read(c.shard, key, kEngineTimeout)
                            : op.session
                                ? h->nh->ProposeInSession(c.session, op.encoded, kEngineTimeout)
                                : h->nh->Propose(c.shard, op.encoded, kEngineTimeout);
  if (!r.ok()) {
    Log("client " + std::to_string(c.id) + " refused: " + r.status().ToString());
    FinishOp(c, lincheck::Outcome::kFailed, nullptr);  // refused before it was queued
    return;
  }
  op.handle = *r;
}

void Simulator::PollOp(Client& c) {
  ClientOp& op = c.op;
  if (op.handle.Done()) {
    const RequestResult r = op.handle.Wait();
    switch (r.code) {
      case RequestCode::kCompleted:
        FinishOp(c, lincheck::Outcome::kOk, &r);
        return;
      case RequestCode::kAppliedResultUnknown:
        // Applied once before a restart; what it returned is lost, and a
        // cas's swap cannot be told: unknown to the checker.
        FinishOp(c, lincheck::Outcome::kUnknown, nullptr);
        return;
      case RequestCode::kDropped:
      case RequestCode::kRejected:
        // Refused by the core or the session registry: not applied, unless an
        // earlier attempt of a session proposal may still be.
        if (op.attempts == 1) {
          FinishOp(c, lincheck::Outcome::kFailed, nullptr);
          return;
        }
        break;
      default:
        break;  // terminated (a crash), timeout, aborted: unknown
    }
    if (!op.session || op.attempts >= kSessionAttempts) {
      FinishOp(c, lincheck::Outcome::kUnknown, nullptr);
      return;
    }
  } else if (now_ <= op.deadline) {
    return;
  } else if (!op.session || op.attempts >= kSessionAttempts) {
    FinishOp(c, lincheck::Outcome::kUnknown, nullptr);
    return;
  }
  // Retry a session proposal with the same series id, perhaps elsewhere.
  Host* h = UpHostOf(c.shard);
  ++op.attempts;
  op.deadline = now_ + kOpTimeoutMs;
  op.handle = RequestHandle();
  if (h == nullptr) return;
  Result<RequestHandle> r = h->nh->ProposeInSession(c.session, op.encoded, kEngineTimeout);
  if (r.ok()) op.handle = *r;
}

void Simulator::FinishOp(Client& c, lincheck::Outcome outcome, const RequestResult* r) {
  ClientOp& op = c.op;
  lincheck::Response resp;
  // A session retry of a write that an on-disk state machine applied
  // durably before a restart was answered from a registry that never saw
  // its result: completed, with value 0 (no real write is applied at index
  // 0). It is kAppliedResultUnknown now; kAreaSessionResults (on by
  // default) checks that no made-up result comes back.
  if (outcome == lincheck::Outcome::kOk && !op.read && op.session && (r->value >> 1) == 0 &&
      !Area(kAreaSessionResults)) {
    Log("client " + std::to_string(c.id) + ": a made-up session result, taken as unknown");
    outcome = lincheck::Outcome::kUnknown;
    r = nullptr;
  }
  if (outcome == lincheck::Outcome::kOk) {
    if (op.read) {
      const std::optional<std::string> v = r->data.size() > 0 && r->data[0] == '='
                                               ? std::optional<std::string>(r->data.substr(1))
                                               : std::nullopt;
      resp = lincheck::Response::Read(v);
      c.seen[op.command.key] = v;
    } else {
      const bool swapped = (r->value & 1) != 0;
      if (op.command.kind == lincheck::OpKind::kCas) resp = lincheck::Response::Swapped(swapped);
      if (swapped) c.seen[op.command.key] = op.command.value;
      acked_.push_back({c.shard, r->value >> 1, Fnv(op.encoded)});
    }
  }
  switch (outcome) {
    case lincheck::Outcome::kOk:
      ++result_.ops_ok;
      break;
    case lincheck::Outcome::kFailed:
      ++result_.ops_failed;
      break;
    case lincheck::Outcome::kUnknown:
      ++result_.ops_unknown;
      break;
  }
  history_.Complete(op.history_id, outcome, resp);
  Trace(c.id, static_cast<uint64_t>(outcome), r != nullptr ? r->value : 0);
  if (opt_.verbose) {
    Log("client " + std::to_string(c.id) + " " + op.encoded +
        (op.read ? "get " + op.command.key : "") + " -> " +
        std::string(lincheck::OutcomeName(outcome)) +
        (r != nullptr ? " " + r->data + " " + std::to_string(r->value) : ""));
  }
  if (op.session && outcome != lincheck::Outcome::kFailed) c.session.ProposalCompleted();
  op.active = false;
  op.handle = RequestHandle();
  c.next_at = now_ + Below(rng_, 30);
}

// ---------------------------------------------------------------------------
// Liveness and the final checks.

void Simulator::BeginLiveness() {
  Log("faults off: liveness phase");
  net_.HealAll();
  net_.SetFaults({});
  // Dead-host seeds lose one or two hosts for good: the shards with a
  // majority there can never elect, and must not keep the others from it.
  if (dead_seed_) {
    const uint64_t ndead = 1 + Below(rng_, 2);
    for (uint64_t k = 0; k < ndead; ++k) {
      Host& h = hosts_[Below(rng_, hosts_.size())];
      if (h.dead || hosts_.size() - result_.dead_hosts <= 3) continue;
      h.dead = true;
      ++result_.dead_hosts;
      Log(h.name + " is dead for good");
      if (Up(h)) CrashHost(h, "dead for good");
    }
  }
  for (Host& h : hosts_) {
    h.slow = false;
    if (!Up(h)) {
      h.restart_at = now_;
    } else {
      h.disk->ArmCrash(CrashInWrite::kNone);
    }
  }
}

bool Simulator::LivenessDone() {
  bool done = true;
  for (auto& [id, s] : shards_) {
    if (!MustProgress(s)) continue;
    if (Area(kAreaRemovedStops)) {
      // A removed replica left running stops itself.
      for (const auto& [rid, host] : s.removed) {
        Host& h = hosts_[static_cast<size_t>(host)];
        if (!Up(h)) continue;
        Result<ReplicaInfo> info = h.nh->GetReplicaInfo(id);
        if (info.ok() && info->replica_id == rid) done = false;
      }
    }
    if (s.move.phase != 0) {
      done = false;
      continue;
    }
    bool clients_busy = false;
    for (const Client& c : clients_) clients_busy |= c.shard == id && c.op.active;
    if (clients_busy) {
      done = false;
      continue;
    }
    if (s.marker_index == 0) {
      done = false;
      if (s.marker_waiting) {
        if (s.marker.Done()) {
          s.marker_waiting = false;
          const RequestResult r = s.marker.Wait();
          if (r.ok()) {
            s.marker_index = r.value >> 1;
            Log("shard " + std::to_string(id) + " progressed: marker at " +
                std::to_string(s.marker_index));
          }
        } else if (now_ > s.marker_deadline) {
          s.marker_waiting = false;
        }
      }
      if (!s.marker_waiting && s.marker_index == 0) {
        Host* h = UpHostOf(id);
        if (h == nullptr) continue;
        KvCommand kc;
        kc.key = "marker";
        kc.value = std::to_string(id) + "." + std::to_string(++s.marker_seq);
        Result<RequestHandle> r = h->nh->Propose(id, kc.Encode(), kEngineTimeout);
        if (r.ok()) {
          s.marker = *r;
          s.marker_waiting = true;
          s.marker_deadline = now_ + kOpTimeoutMs;
        }
      }
      continue;
    }
    // Every member (not a witness) off damaged and dead hosts has applied
    // the marker.
    for (const auto& [rid, host] : s.members) {
      Host& h = hosts_[static_cast<size_t>(host)];
      if (ExcusedMember(s, rid, h) || KindOf(s, rid) == Kind::kWitness) continue;
      if (!Up(h)) {
        done = false;  // restarting after a storage failure
        continue;
      }
      Result<ReplicaInfo> info = h.nh->GetReplicaInfo(id);
      if (!info.ok() || info->applied_index < s.marker_index) done = false;
    }
  }
  return done;
}

void Simulator::FinalChecks() {
  for (auto& [id, s] : shards_) {
    std::map<uint64_t, std::pair<std::string, uint64_t>> state_at;  // applied -> (state, replica)
    for (const auto& [rid, host] : s.members) {
      Host& h = hosts_[static_cast<size_t>(host)];
      const bool witness = KindOf(s, rid) == Kind::kWitness;
      Result<std::string> st = Up(h) ? h.nh->StaleRead(id, witness ? kSizeQuery : kStateQuery)
                                     : Result<std::string>(Status::NotFound("down"));
      if (!st.ok()) {
        if (!ExcusedMember(s, rid, h) && MustProgress(s))
          Fail("shard " + std::to_string(id) + " replica " + std::to_string(rid) + " is gone");
        continue;
      }
      if (witness) {
        if (Area(kAreaWitnessNoData) && *st != "0") {
          Fail("shard " + std::to_string(id) + ": witness " + std::to_string(rid) + " holds " +
               *st + " keys of state-machine data");
        }
        continue;
      }
      const uint64_t at = std::stoull(st->substr(st->find('@') + 1));
      auto [it, fresh] = state_at.emplace(at, std::make_pair(*st, rid));
      if (!fresh && it->second.first != *st) {
        Fail("shard " + std::to_string(id) + ": replicas " + std::to_string(it->second.second) +
             " and " + std::to_string(rid) + " differ at applied index " + std::to_string(at));
      }
    }
  }
  for (const AckedWrite& w : acked_) {
    const Shard& s = shards_.at(w.shard);
    auto it = s.applied.find(w.index);
    if (it == s.applied.end() || it->second != w.hash) {
      Fail("shard " + std::to_string(w.shard) + ": an acknowledged write at index " +
           std::to_string(w.index) + " was lost");
      return;
    }
  }
  lincheck::CheckOptions co;
  co.max_states_per_key = uint64_t{1} << 18;
  co.max_duration = std::chrono::seconds(30);
  const lincheck::CheckResult cr = lincheck::Check(history_.Operations(), co);
  if (cr.verdict == lincheck::Verdict::kViolation ||
      cr.verdict == lincheck::Verdict::kInvalidHistory) {
    Fail("history not linearizable: " + cr.explanation);
  } else if (cr.verdict == lincheck::Verdict::kUnknown) {
    result_.check_undecided = 1;
    Log("linearizability undecided within the bounds: " + cr.explanation);
  }
}

void Simulator::DumpState() {
  const transport::InProcNetwork::Stats ns = net_.stats();
  std::printf("network: pending %zu sent %llu delivered %llu dropped %llu cut %llu rejected %llu\n",
              net_.pending(), static_cast<unsigned long long>(ns.sent),
              static_cast<unsigned long long>(ns.delivered),
              static_cast<unsigned long long>(ns.dropped),
              static_cast<unsigned long long>(ns.partitioned),
              static_cast<unsigned long long>(ns.rejected));
  for (Host& h : hosts_) {
    if (!Up(h)) {
      std::printf("%s: down\n", h.name.c_str());
      continue;
    }
    for (const ReplicaInfo& ri : h.nh->GetInfo().replicas) {
      std::printf(
          "%s: shard %llu replica %llu %s term %llu leader %llu commit %llu applied %llu%s\n",
          h.name.c_str(), static_cast<unsigned long long>(ri.shard_id),
          static_cast<unsigned long long>(ri.replica_id),
          std::string(ReplicaRoleName(ri.role)).c_str(), static_cast<unsigned long long>(ri.term),
          static_cast<unsigned long long>(ri.leader_id),
          static_cast<unsigned long long>(ri.commit_index),
          static_cast<unsigned long long>(ri.applied_index), ri.quiesced ? " quiesced" : "");
    }
  }
}

SimResult Simulator::Run() {
  Setup();
  const uint64_t chaos_end = opt_.chaos_ms;
  while (result_.ok && now_ < chaos_end) Step(true);
  BeginLiveness();
  const uint64_t end = chaos_end + opt_.liveness_ms;
  bool live = false;
  while (result_.ok && now_ < end) {
    Step(false);
    if (now_ % 5 == 0 && LivenessDone()) {
      live = true;
      break;
    }
  }
  if (result_.ok && !live) {
    std::string which;
    std::string running;
    for (auto& [id, s] : shards_) {
      if (MustProgress(s) && (s.marker_index == 0 || s.move.phase != 0))
        which += " " + std::to_string(id);
      for (const auto& [rid, host] : s.removed) {
        Host& h = hosts_[static_cast<size_t>(host)];
        Result<ReplicaInfo> info =
            Up(h) ? h.nh->GetReplicaInfo(id) : Result<ReplicaInfo>(Status::NotFound("down"));
        if (Area(kAreaRemovedStops) && info.ok() && info->replica_id == rid)
          running += " " + std::to_string(id) + "/" + std::to_string(rid);
      }
    }
    Fail("no progress within " + std::to_string(opt_.liveness_ms) +
         " ms after faults healed (shards without a marker or with a move pending:" + which +
         (running.empty() ? "" : "; removed replicas still running (shard/replica):" + running) +
         "; otherwise a member lags)");
  }
  if (!result_.ok && opt_.verbose) DumpState();
  if (result_.ok) FinalChecks();
  const transport::InProcNetwork::Stats ns = net_.stats();
  result_.packets_delivered = ns.delivered;
  result_.packets_dropped = ns.dropped + ns.partitioned;
  result_.packets_duplicated = ns.duplicated;
  result_.snapshots_cut = ns.snapshots_cut;
  Trace(ns.delivered, ns.dropped, ns.duplicated);
  result_.trace_hash = trace_;
  return result_;
}

}  // namespace

std::string SimResult::Summary() const {
  std::string out;
  const auto add = [&](const char* name, uint64_t v) {
    out += (out.empty() ? "" : " ") + std::string(name) + "=" + std::to_string(v);
  };
  add("hosts", hosts);
  add("shards", shards);
  add("steps", steps);
  add("passes", passes);
  add("ops", ops);
  add("ok", ops_ok);
  add("failed", ops_failed);
  add("unknown", ops_unknown);
  add("crashes", crashes);
  add("torn", torn_writes);
  add("partitions", partitions);
  add("flips", bit_flips);
  add("hs_flips", hard_state_flips);
  add("snap_flips", snapshot_flips);
  add("corrupt_refused", corruptions_detected);
  add("storage_restarts", storage_restarts);
  add("moves", moves);
  add("transfers", transfers);
  add("leaders", leader_changes);
  add("snapshots", snapshots_received);
  add("cut", snapshots_cut);
  add("quiesced", quiesced_samples);
  add("cap", cap);
  add("concurrent_shards", concurrent_shards);
  add("ondisk_shards", ondisk_shards);
  add("sm_commits", sm_commits);
  add("witnesses", witnesses);
  add("non_voting", non_voting);
  add("removed_left", removed_left);
  add("dead", dead_hosts);
  add("damaged", damaged_hosts);
  add("vote_crashes", vote_crashes);
  add("delivered", packets_delivered);
  add("lost", packets_dropped);
  add("dup", packets_duplicated);
  add("undecided", check_undecided);
  char hash[32];
  std::snprintf(hash, sizeof(hash), "%016llx", static_cast<unsigned long long>(trace_hash));
  return out + " trace=" + hash;
}

namespace {

struct AreaName {
  uint32_t area;
  const char* name;
};
constexpr AreaName kAreaNames[] = {
    {kAreaConcurrentSM, "concurrent-sm"},     {kAreaOnDiskSM, "ondisk-sm"},
    {kAreaWideMembership, "wide-membership"}, {kAreaRemovedLeftRunning, "removed-left"},
    {kAreaDamageAnywhere, "damage-anywhere"}, {kAreaCampaignCap, "campaign-cap"},
    {kAreaCrashPoints, "crash-points"},       {kAreaVoteDurable, "vote-durable"},
    {kAreaWitnessNoData, "witness-no-data"},  {kAreaRemovedStops, "removed-stops"},
    {kAreaDeadHosts, "dead-hosts"},           {kAreaCapDeadHosts, "cap-dead-hosts"},
    {kAreaSessionResults, "session-results"}, {kAreaRepair, "repair"},
};

}  // namespace

// The areas that pass on main today: all but repair (docs/simulation.md,
// "Areas"; removed-stops since the leader tells the replicas it removes).
// repair joins them once its sweep of 10,000 seeds is clean: session 7's
// failed seeds 8069 and 8343 (docs/simulation.md, "Session 7").
uint32_t DefaultAreas() { return kAllAreas & ~kAreaRepair; }

bool ParseAreas(const std::string& text, uint32_t* out) {
  if (text == "all") {
    *out = kAllAreas;
    return true;
  }
  if (text == "default") {
    *out = DefaultAreas();
    return true;
  }
  uint32_t areas = 0;
  size_t pos = 0;
  while (text != "none" && pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string name = text.substr(pos, comma - pos);
    bool known = false;
    for (const AreaName& a : kAreaNames) {
      if (name == a.name) {
        areas |= a.area;
        known = true;
      }
    }
    if (!known) return false;
    pos = comma + 1;
  }
  *out = areas;
  return true;
}

std::string AreaNames(uint32_t areas) {
  std::string out;
  for (const AreaName& a : kAreaNames) {
    if ((areas & a.area) != 0) out += (out.empty() ? "" : ",") + std::string(a.name);
  }
  return out.empty() ? "none" : out;
}

std::string SimDataRoot(const SimOptions& options, uint64_t seed, long pid) {
  const std::string base = !options.root.empty() ? options.root
                           : std::filesystem::exists("/dev/shm")
                               ? std::string("/dev/shm")
                               : std::filesystem::temp_directory_path().string();
  return base + "/flotilla-sim-" + std::to_string(pid) + "-" + std::to_string(seed);
}

SimResult RunSim(uint64_t seed, const SimOptions& options) {
  spdlog::set_level(options.verbose ? spdlog::level::warn : spdlog::level::off);
  Simulator sim(seed, options);
  return sim.Run();
}

}  // namespace flotilla::sim
