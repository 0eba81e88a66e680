// The deterministic simulation of whole NodeHosts (docs/simulation.md).
//
// RunSim(seed) builds 3-5 NodeHosts — the real driver and core — over
// MemoryLogDBs and one InProcNetwork, with no threads, and drives them on a
// virtual clock: which host runs a worker pass, which packets are delivered,
// when ticks happen, which faults strike and what the clients ask are all
// drawn from one std::mt19937_64 seeded with `seed`, so a seed replays
// exactly. It checks invariants while it runs and the clients' history for
// linearizability at the end.
//
// Not thread-safe; one RunSim per thread at a time (spdlog's level is global).
#pragma once

#include <cstdint>
#include <string>

namespace flotilla::sim {

// The areas of the widened simulation (docs/simulation.md, "Areas"). Each
// turns on a kind of seed or fault; which seeds use it is drawn from the
// seed. kDefaultAreas holds those that pass today; the others find open
// bugs (issue 13) and are turned on with --areas.
enum SimArea : uint32_t {
  kAreaConcurrentSM = 1u << 0,        // concurrent state machines in some shards
  kAreaOnDiskSM = 1u << 9,            // on-disk ones (durable, with their own commits) in some
  kAreaWideMembership = 1u << 1,      // five voters, witnesses, non-voting, repeated changes
  kAreaRemovedLeftRunning = 1u << 2,  // a removed replica is not stopped by the simulator
  kAreaDamageAnywhere = 1u << 3,      // stored damage on any host, not one
  kAreaCampaignCap = 1u << 4,         // a cap of 2 or 4 campaigns with many shards
  kAreaDeadHosts = 1u << 10,          // one or two hosts dead for good from the liveness phase on
  kAreaCapDeadHosts = 1u << 11,       // ... in campaign-cap seeds too (most of them)
  kAreaSessionResults = 1u << 12,     // a completed session write names the index it applied at
  kAreaCrashPoints = 1u << 5,         // crashes after a write, between step and apply, after a vote
  kAreaVoteDurable = 1u << 6,         // after each pass, every replica's term and vote are stored
  kAreaWitnessNoData = 1u << 7,       // a witness's state machine never holds data
  kAreaRemovedStops = 1u << 8,        // a removed replica left running stops itself by the end
  // Damaged replicas repair from their peers and must converge: damage in
  // entries, hard states and snapshot files, in shards whose membership changes.
  kAreaRepair = 1u << 13,
};
inline constexpr uint32_t kAllAreas = (1u << 14) - 1;
uint32_t DefaultAreas();
// "all", "default", "none", or a comma-separated list of names; false on an unknown name.
bool ParseAreas(const std::string& text, uint32_t* out);
std::string AreaNames(uint32_t areas);

struct SimOptions {
  uint32_t areas = DefaultAreas();
  uint64_t chaos_ms = 2500;     // virtual time with clients and faults
  uint64_t liveness_ms = 6000;  // at most this long, faults off, for every shard to progress
  bool faults = true;           // false: clients only (a baseline)
  bool verbose = false;         // print every fault and operation
  // Every host's registry learns every replica's address from the simulator,
  // as from a static address book. Off (the default), the engine learns
  // addresses as it does in production: bootstrap and conf-change entries,
  // the membership a snapshot carries, and the sender of each message.
  bool address_book = false;
  std::string root;  // data directories go below; empty: /dev/shm or the temp dir
};

struct SimResult {
  bool ok = true;
  std::string failure;      // the first broken check, for humans
  uint64_t trace_hash = 0;  // a fingerprint of every event of the run
  // Figures.
  uint64_t hosts = 0, shards = 0, steps = 0, passes = 0;
  uint64_t ops = 0, ops_ok = 0, ops_failed = 0, ops_unknown = 0;
  uint64_t crashes = 0, torn_writes = 0, partitions = 0, bit_flips = 0, corruptions_detected = 0,
           hard_state_flips = 0, snapshot_flips = 0, storage_restarts = 0, moves = 0, transfers = 0;
  uint64_t snapshots_received = 0, snapshots_cut = 0, leader_changes = 0;
  uint64_t quiesced_samples = 0;
  uint64_t concurrent_shards = 0, ondisk_shards = 0, cap = 0;
  uint64_t sm_commits = 0, witnesses = 0, non_voting = 0, removed_left = 0, dead_hosts = 0,
           vote_crashes = 0,
           damaged_hosts = 0;  // replicas seen quiesced (seeds with quiescence on)
  uint64_t packets_delivered = 0, packets_dropped = 0, packets_duplicated = 0;
  uint64_t check_undecided = 0;  // 1: a key's linearizability was left undecided (bounds hit)
  std::string Summary() const;
};

SimResult RunSim(uint64_t seed, const SimOptions& options);

// Where RunSim(seed) in process `pid` keeps its data; removed when it returns.
std::string SimDataRoot(const SimOptions& options, uint64_t seed, long pid);

}  // namespace flotilla::sim
