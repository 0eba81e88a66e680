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

// Each found a bug in the engine; see docs/simulation.md ("Found").
TEST(SimulationRegression, SessionRetryInTheSameApplyBatchAppliesOnce) {
  for (uint64_t seed : {4u, 8u, 12u, 13u, 14u, 15u, 16u}) {
    const SimResult r = RunSim(seed, {});
    EXPECT_TRUE(r.ok) << "seed " << seed << ": " << r.failure;
  }
}

TEST(SimulationRegression, DamagedLastEntryRefusesTheReplicaNotTheProcess) {
  for (uint64_t seed : {18u, 21u, 26u}) {
    const SimResult r = RunSim(seed, {});
    EXPECT_TRUE(r.ok) << "seed " << seed << ": " << r.failure;
  }
}

TEST(SimulationRegression, AVoterThatGrantsItsVoteTellsTheCommitIndex) {
  const SimResult r = RunSim(4498, {});
  EXPECT_TRUE(r.ok) << r.failure;
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
