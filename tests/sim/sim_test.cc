// The deterministic simulation: a seed replays exactly, and seeds that once
// found engine bugs stay fixed. The seed sweeps themselves run through the
// flotilla_sim command (see CMakeLists.txt).
#include <gtest/gtest.h>

#include "tests/sim/sim_kv.h"
#include "tests/sim/simulator.h"

namespace flotilla::sim {
namespace {

TEST(Simulation, TheSameSeedReplaysExactly) {
  for (uint64_t seed : {3u, 11u}) {
    const SimResult a = RunSim(seed, {});
    const SimResult b = RunSim(seed, {});
    ASSERT_TRUE(a.ok) << a.failure;
    EXPECT_EQ(a.trace_hash, b.trace_hash) << "seed " << seed;
    EXPECT_EQ(a.Summary(), b.Summary());
    EXPECT_GT(a.ops_ok, 50u) << a.Summary();
  }
  EXPECT_NE(RunSim(3, {}).trace_hash, RunSim(4, {}).trace_hash);
}

TEST(Simulation, WithoutFaultsAlmostEveryOperationSucceeds) {
  SimOptions o;
  o.faults = false;
  const SimResult r = RunSim(5, o);
  ASSERT_TRUE(r.ok) << r.failure;
  EXPECT_EQ(r.crashes, 0u);
  EXPECT_GT(r.ops_ok, r.ops / 2) << r.Summary();
}

// The default areas reach what they claim: on-disk and concurrent state
// machines, witnesses and non-voting replicas, removed replicas left
// running, crashes after a granted vote, a binding campaign cap, dead
// hosts and damage on more than one host, in a small range of seeds.
TEST(Simulation, TheDefaultAreasReachTheirFaults) {
  SimResult sum;
  uint64_t cap_seeds = 0;
  uint64_t multi_damage = 0;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    const SimResult r = RunSim(seed, {});
    ASSERT_TRUE(r.ok) << "seed " << seed << ": " << r.failure;
    sum.ondisk_shards += r.ondisk_shards;
    sum.concurrent_shards += r.concurrent_shards;
    sum.sm_commits += r.sm_commits;
    sum.witnesses += r.witnesses;
    sum.non_voting += r.non_voting;
    sum.removed_left += r.removed_left;
    sum.vote_crashes += r.vote_crashes;
    sum.dead_hosts += r.dead_hosts;
    cap_seeds += r.cap <= 4;
    multi_damage += r.damaged_hosts >= 2;
  }
  EXPECT_GT(sum.ondisk_shards, 0u);
  EXPECT_GT(sum.concurrent_shards, 0u);
  EXPECT_GT(sum.sm_commits, 0u);
  EXPECT_GT(sum.witnesses, 0u);
  EXPECT_GT(sum.non_voting, 0u);
  EXPECT_GT(sum.removed_left, 0u);
  EXPECT_GT(sum.vote_crashes, 0u);
  EXPECT_GT(sum.dead_hosts, 0u);
  EXPECT_GT(cap_seeds, 0u);
  EXPECT_GT(multi_damage, 0u);
  // The repair area (damage in every record kind: hard_state_flips,
  // snapshot_flips) is not a default one until its sweep is clean
  // (simulator.cc, DefaultAreas).
}

TEST(Simulation, AreasParse) {
  uint32_t a = 0;
  ASSERT_TRUE(ParseAreas("ondisk-sm,witness-no-data", &a));
  EXPECT_EQ(a, kAreaOnDiskSM | kAreaWitnessNoData);
  EXPECT_EQ(AreaNames(a), "ondisk-sm,witness-no-data");
  ASSERT_TRUE(ParseAreas("all", &a));
  EXPECT_EQ(a, kAllAreas);
  ASSERT_TRUE(ParseAreas("none", &a));
  EXPECT_EQ(a, 0u);
  EXPECT_FALSE(ParseAreas("ondisk-sm,nonsense", &a));
  EXPECT_NE(DefaultAreas() & kAreaWitnessNoData, 0u);
  EXPECT_NE(DefaultAreas() & kAreaSessionResults, 0u);
  EXPECT_NE(DefaultAreas() & kAreaRemovedLeftRunning, 0u);
  EXPECT_NE(DefaultAreas() & kAreaRemovedStops, 0u);
  EXPECT_EQ(DefaultAreas(), kAllAreas & ~kAreaRepair);  // docs/simulation.md
}

// Each found a bug in the engine (docs/simulation.md, "Found"). Which seeds
// show a bug changes whenever the simulation changes, so each test runs a
// sweep that, with its fix reverted, failed nearly surely when it was
// written (the share of failing seeds is in the comment).
std::string Sweep(uint64_t first, uint64_t count) {
  std::string failures;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    const SimResult r = RunSim(seed, {});
    if (!r.ok) failures += "seed " + std::to_string(seed) + ": " + r.failure + "\n";
  }
  return failures;
}

// Reverted: 293 of 600 seeds fail ("applied at index 13 and again at 15").
TEST(SimulationRegression, SessionRetryInTheSameApplyBatchAppliesOnce) {
  EXPECT_EQ(Sweep(1, 40), "");
}

// Reverted: about 4% of seeds abort in the core (first at seed 24).
TEST(SimulationRegression, DamagedLastEntryRefusesTheReplicaNotTheProcess) {
  EXPECT_EQ(Sweep(1001, 150), "");
}

TEST(SimKv, CommandsRoundTrip) {
  KvCommand c;
  c.op = 'C';
  c.key = "k";
  c.expected = std::nullopt;
  c.value = "v1";
  c.session = true;
  KvCommand d;
  ASSERT_TRUE(KvCommand::Decode(c.Encode(), &d));
  EXPECT_EQ(d.op, 'C');
  EXPECT_EQ(d.key, "k");
  EXPECT_FALSE(d.expected.has_value());
  EXPECT_EQ(d.value, "v1");
  EXPECT_TRUE(d.session);
  c.expected = "v0";
  c.session = false;
  ASSERT_TRUE(KvCommand::Decode(c.Encode(), &d));
  EXPECT_EQ(*d.expected, "v0");
  EXPECT_FALSE(d.session);
}

}  // namespace
}  // namespace flotilla::sim
