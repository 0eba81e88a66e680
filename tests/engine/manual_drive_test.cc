// The driver without threads: three NodeHosts with the in-memory LogDB and the
// in-process transport, driven on one thread by explicit passes, apply rounds
// and ticks. The same seed gives the same run, step for step — the basis of
// the deterministic simulation of whole NodeHosts.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <random>
#include <thread>

#include "engine/node_host_impl.h"
#include "logdb/memory_logdb.h"
#include "tests/engine/manual_cluster.h"

namespace flotilla::engine {
namespace {

using namespace std::chrono_literals;

// Runs three NodeHosts for a fixed number of steps with `seed` and returns a
// trace of every host's view of shard 1 at every step.
std::string RunCluster(uint64_t seed, const std::string& root, int* completed) {
  ShardConfig sc;
  sc.snapshot_entries = 20;
  sc.compaction_overhead = 5;
  ManualCluster cl(root + "/" + std::to_string(seed), seed, sc);
  std::string trace;
  std::vector<RequestHandle> handles;
  for (int step = 0; step < 3000; ++step) {
    // Propose through a host chosen by the seed, once a leader is known.
    if (step % 10 == 0 && step > 300) {
      NodeHostImpl& h = cl.host(1 + cl.rng()() % 3);
      auto r = h.Propose(1, "k" + std::to_string(step % 13) + "=" + std::to_string(step), 3600s);
      if (r.ok()) handles.push_back(*r);
    }
    cl.Step(step);
    for (uint64_t i = 1; i <= 3; ++i) {
      auto info = cl.host(i).GetReplicaInfo(1);
      trace += std::to_string(info->leader_id) + "/" + std::to_string(info->term) + "/" +
               std::to_string(info->commit_index) + "/" + std::to_string(info->applied_index) + " ";
    }
    trace += "\n";
  }
  *completed = 0;
  for (auto& h : handles) *completed += h.Done() && h.Wait().ok() ? 1 : 0;
  return trace;
}

TEST(ManualDrive, OneThreadRunsThreeNodeHostsAndTheSameSeedReplaysExactly) {
  const std::string root = TempRoot("flotilla-manual-");
  int completed_a = 0;
  int completed_b = 0;
  const std::string a = RunCluster(7, root + "/a", &completed_a);
  const std::string b = RunCluster(7, root + "/b", &completed_b);
  EXPECT_GT(completed_a, 200) << "the shard made progress";
  EXPECT_EQ(completed_a, completed_b);
  EXPECT_TRUE(a == b) << "the same seed must replay the same run";
  int completed_c = 0;
  const std::string c = RunCluster(8, root + "/c", &completed_c);
  EXPECT_GT(completed_c, 200);
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace flotilla::engine

namespace flotilla::engine {
namespace {

// One NodeHost with a memory LogDB running shard 1 alone, which has
// committed one write.
class OneHostMemoryLogDb : public ::testing::Test {
 protected:
  void SetUp() override {
    NodeHostConfig c;
    c.data_dir = root_;
    c.rtt_ms = 5;
    c.storage_check_interval_ms = 20;
    NodeHostDeps d;
    auto db = logdb::NewMemoryLogDB();
    db_ = db.get();
    d.logdb = std::move(db);
    nh_ = std::make_unique<NodeHostImpl>(c, std::move(d));
    ASSERT_TRUE(nh_->Init().ok());
    ShardConfig sc;
    sc.shard_id = 1;
    sc.replica_id = 1;
    ASSERT_TRUE(nh_->StartReplica(sc, {{1, nh_->raft_address()}}, StartMode::kNewShard,
                                  [](uint64_t, uint64_t) {
                                    return std::make_unique<testing::KvStateMachine>();
                                  })
                    .ok());
    RequestResult r;
    r.code = RequestCode::kDropped;
    for (int i = 0; i < 500 && !r.ok(); ++i) {
      r = nh_->SyncPropose(1, "a=1", 5s);
      if (!r.ok()) std::this_thread::sleep_for(10ms);
    }
    ASSERT_TRUE(r.ok());
  }
  void TearDown() override {
    nh_->Close();
    std::filesystem::remove_all(root_);
  }

  const std::string root_ = TempRoot("flotilla-storage-");
  logdb::MemoryLogDB* db_ = nullptr;
  std::unique_ptr<NodeHostImpl> nh_;
};

TEST_F(OneHostMemoryLogDb, AFailedDiskStopsWritesAndSaysWhy) {
  db_->FailNextWrite(Status::IOError("simulated: the disk failed"));
  // The write that hits the failed disk ends as terminated, never as applied.
  const RequestResult failed = nh_->SyncPropose(1, "b=2", 5s);
  EXPECT_EQ(failed.code, RequestCode::kTerminated);
  // Later proposals are refused at once, with the reason.
  Result<RequestHandle> refused = nh_->Propose(1, "c=3", 5s);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kIOError);
  EXPECT_NE(refused.status().message().find("LogDB"), std::string::npos)
      << refused.status().ToString();
  // Nothing that failed to persist was applied.
  EXPECT_EQ(*nh_->StaleRead(1, "b"), "");
  EXPECT_EQ(nh_->GetMetrics().storage_resumes, 0u);
}

// A write the LogDB refused for want of space is held, not failed: it is
// saved once the LogDB takes writes again, then applied and acknowledged.
TEST_F(OneHostMemoryLogDb, AWriteThatFoundTheDiskFullIsSavedOnceTheLogDbResumes) {
  db_->FailNextWrite(Status::NoSpace("simulated: no space left on device"));
  const RequestResult held = nh_->SyncPropose(1, "b=2", 5s);
  EXPECT_EQ(held.code, RequestCode::kCompleted) << static_cast<int>(held.code);
  EXPECT_EQ(*nh_->StaleRead(1, "b"), "2");
  EXPECT_EQ(nh_->GetMetrics().storage_resumes, 1u);
  EXPECT_TRUE(nh_->GetInfo().storage.ok()) << nh_->GetInfo().storage.ToString();
  EXPECT_TRUE(nh_->SyncPropose(1, "c=3", 5s).ok());
}

}  // namespace
}  // namespace flotilla::engine

namespace flotilla::engine {
namespace {

// The campaign cap must not deadlock: a replica whose campaign failed (a
// pre-candidate whose pre-votes were lost) still holds its campaign slot, and
// must be able to campaign again when its election timer fires, even when
// the slots are all taken (by itself, among others). Found at 10,000 shards
// per NodeHost, where restarts stalled with every slot held by a failed
// pre-candidate.
// Ticks visit only replicas that are not quiesced: idle shards cost a flag
// load per tick. Anything that wakes a quiesced replica lists it, and from
// then on it is ticked again (here: a proposal after a long quiet spell).
TEST(Quiescence, TicksSkipQuiescedReplicasAndAWokenOneIsTickedAgain) {
  const std::string root = TempRoot("flotilla-quiet-");
  ShardConfig sc;
  sc.quiesce_after_election_timeouts = 1;
  ManualCluster cl(root, 9, sc);
  auto all_quiesced = [&] {
    for (uint64_t i = 1; i <= 3; ++i) {
      if (!cl.host(i).GetReplicaInfo(1)->quiesced) return false;
    }
    return true;
  };
  ASSERT_TRUE(cl.DriveUntil([&] { return cl.host(1).GetReplicaInfo(1)->leader_id != 0; }));
  ASSERT_TRUE(cl.DriveUntil(all_quiesced, 20000));
  auto steps = [&] {
    uint64_t n = 0;
    for (uint64_t i = 1; i <= 3; ++i) n += cl.host(i).GetMetrics().replica_steps;
    return n;
  };
  const uint64_t before = steps();
  // 1,000 steps = 250 ticks on each host. Visiting every replica on every
  // tick would be 750 visits; the sweep of expired requests every 64 ticks
  // visits each replica about 4 times.
  for (int step = 0; step < 1000; ++step) cl.Step(step);
  EXPECT_TRUE(all_quiesced());
  EXPECT_LE(steps() - before, 3u * 5) << "quiesced replicas were visited on ticks";
  // A proposal wakes the shard; it commits, and the woken replicas, ticked
  // again, quiesce again once idle.
  const uint64_t leader = cl.host(1).GetReplicaInfo(1)->leader_id;
  ASSERT_NE(leader, 0u);
  auto h = cl.host(leader).Propose(1, "k=v", 3600s);
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(cl.DriveUntil([&] { return h->Done(); }));
  EXPECT_TRUE(h->Wait().ok());
  EXPECT_FALSE(all_quiesced());
  ASSERT_TRUE(cl.DriveUntil(all_quiesced, 20000));
  std::filesystem::remove_all(root);
}

TEST(CampaignCap, ACandidateHoldingASlotCampaignsAgain) {
  const std::string root = TempRoot("flotilla-cap-");
  ManualCluster cl(root, 5, ShardConfig{}, /*max_concurrent_campaigns=*/1);
  auto run = [&](int ticks) { cl.RunTicks(ticks); };
  // Every campaign fails: all three become pre-candidates holding their slot.
  for (int i = 1; i <= 3; ++i) cl.net().Isolate(ManualCluster::Name(i));
  run(100);
  for (uint64_t i = 1; i <= 3; ++i) EXPECT_EQ(cl.host(i).campaign_slots().held(), 1u);
  cl.net().HealAll();
  run(200);
  uint64_t leader = 0;
  for (uint64_t i = 1; i <= 3; ++i)
    leader = std::max(leader, cl.host(i).GetReplicaInfo(1)->leader_id);
  EXPECT_NE(leader, 0u) << "no leader: the campaign slots deadlocked";
  std::filesystem::remove_all(root);
}

// Five NodeHosts, two of them down, a cap of 2. Hosts 1-3 each hold three
// hopeless shards (their other replicas are on the dead hosts: pre-votes go
// unanswered for ever) that time out first, and then three shards whose
// replicas are all on hosts 1-3. A slot is held for one election timeout per
// campaign; then the replica queues behind the others, so the electable
// shards get slots and elect. Before, the hopeless pre-candidates kept their
// slots for good and no other shard on their hosts ever campaigned.
TEST(CampaignCap, HopelessShardsDoNotStarveElectableOnes) {
  const std::string root = TempRoot("flotilla-cap-starve-");
  constexpr uint32_t kCap = 2;
  ManualCluster cl(root, 3, /*hosts=*/5, kCap);
  cl.net().Isolate(ManualCluster::Name(4));
  cl.net().Isolate(ManualCluster::Name(5));
  for (uint64_t h = 1; h <= 3; ++h) {
    for (uint64_t k = 0; k <= kCap; ++k) cl.StartShard(100 + 10 * h + k, {h, 4, 5});
  }
  cl.RunTicks(60);
  // Every hopeless shard campaigns or waits for a slot.
  for (uint64_t h = 1; h <= 3; ++h) {
    CampaignSlots& slots = cl.host(h).campaign_slots();
    EXPECT_EQ(slots.held() + slots.waiting(), kCap + 1);
  }
  for (uint64_t s = 1; s <= 3; ++s) cl.StartShard(s, {1, 2, 3});
  cl.RunTicks(150);
  for (uint64_t s = 1; s <= 3; ++s) {
    EXPECT_NE(cl.host(1).GetReplicaInfo(s)->leader_id, 0u)
        << "shard " << s << " has a live quorum and no leader: hopeless campaigns hold every slot";
  }
  for (uint64_t h = 1; h <= 3; ++h) EXPECT_LE(cl.host(h).campaign_slots().held(), kCap);
  std::filesystem::remove_all(root);
}

// A campaigning replica that stops — stopped by hand, or by a failed save —
// returns its slot at once; before, the slot stayed taken for good.
TEST(CampaignCap, StoppedAndFailedReplicasReturnTheirSlots) {
  const std::string root = TempRoot("flotilla-cap-stop-");
  ManualCluster cl(root, 4, /*hosts=*/3, /*max_concurrent_campaigns=*/1);
  cl.net().Isolate(ManualCluster::Name(2));
  cl.net().Isolate(ManualCluster::Name(3));
  ShardConfig no_pre_vote;  // every campaign raises the term: a save per campaign
  no_pre_vote.pre_vote = false;
  cl.StartShard(7, {1, 2, 3}, no_pre_vote);
  cl.RunTicks(40);
  ASSERT_EQ(cl.host(1).campaign_slots().held(), 1u);
  ASSERT_TRUE(cl.host(1).StopReplica(7).ok());
  EXPECT_EQ(cl.host(1).campaign_slots().held(), 0u) << "StopReplica kept the campaign slot";

  cl.StartShard(8, {1, 2, 3}, no_pre_vote);
  cl.RunTicks(40);
  ASSERT_EQ(cl.host(1).campaign_slots().held(), 1u);
  cl.db(1).FailNextWrite(Status::IOError("simulated: the disk failed"));
  for (int t = 0; t < 60 && !cl.host(1).GetMetrics().storage_failed; ++t) cl.RunTicks(1);
  ASSERT_TRUE(cl.host(1).GetMetrics().storage_failed);
  EXPECT_EQ(cl.host(1).campaign_slots().held(), 0u) << "a failed save kept the campaign slot";
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace flotilla::engine

namespace flotilla::engine {
namespace {

// Committed entries go to the apply worker before the pass's save only when
// the replica holds them durably already. A follower that comes back to
// entries the others committed meanwhile receives them together with their
// commit index; if saving them fails, it must not have applied them.
TEST(StorageFailure, AFollowerNeverAppliesEntriesItFailedToSave) {
  const std::string root = TempRoot("flotilla-unsaved-");
  {
    ManualCluster cl(root, 1);
    const uint64_t leader = cl.AgreedLeader();
    ASSERT_NE(leader, 0u);
    const uint64_t follower = leader == 3 ? 2 : 3;
    Result<RequestHandle> a = cl.host(leader).Propose(1, "a=1", 3600s);
    ASSERT_TRUE(a.ok());
    ASSERT_TRUE(cl.DriveUntil([&] { return *cl.host(follower).StaleRead(1, "a") == "1"; }));

    cl.net().Isolate(ManualCluster::Name(static_cast<int>(follower)));
    Result<RequestHandle> b = cl.host(leader).Propose(1, "b=2", 3600s);
    ASSERT_TRUE(b.ok());
    ASSERT_TRUE(cl.DriveUntil([&] { return b->Done(); }));
    ASSERT_TRUE(b->Wait().ok());
    EXPECT_EQ(*cl.host(follower).StaleRead(1, "b"), "");

    // The follower's next save (the entry "b=2" with its commit index) fails.
    cl.db(follower).FailNextWrite(Status::IOError("simulated: the disk failed"));
    cl.net().HealAll();
    const uint64_t committed = cl.host(leader).GetReplicaInfo(1)->commit_index;
    cl.DriveUntil([&] { return cl.host(follower).GetReplicaInfo(1)->commit_index >= committed; },
                  400);
    EXPECT_EQ(*cl.host(follower).StaleRead(1, "b"), "")
        << "a follower applied an entry that it failed to save";
    Result<RequestHandle> refused = cl.host(follower).Propose(1, "c=3", 3600s);
    EXPECT_FALSE(refused.ok()) << "the failed save stopped the follower's writes";
  }
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace flotilla::engine

namespace flotilla::engine {
namespace {

// A follower removed while it was cut off never receives its removal: the
// leader stops tracking it when the removal applies and sends it nothing
// more. Back on the network it campaigns; the members that applied the
// removal answer its vote requests with the removal notice, and it stops
// itself like a replica that applied its own removal. Before, its pre-votes
// were dropped or refused for ever and it campaigned for ever.
TEST(RemovedReplica, AFollowerCutOffDuringItsRemovalIsToldAndStops) {
  const std::string root = TempRoot("flotilla-removed-");
  ManualCluster cl(root, 6);
  uint64_t leader = cl.AgreedLeader();
  ASSERT_NE(leader, 0u);
  const uint64_t removed = leader == 3 ? 2 : 3;
  cl.net().Isolate(ManualCluster::Name(static_cast<int>(removed)));
  Result<RequestHandle> rm = cl.host(leader).RemoveReplica(1, removed, 3600s);
  ASSERT_TRUE(rm.ok());
  ASSERT_TRUE(cl.DriveUntil([&] { return rm->Done(); }));
  ASSERT_TRUE(rm->Wait().ok());
  // Only the leader, which heard from the removed replica before (so its
  // NodeHost does not learn its address from its messages again), can tell
  // it: the leader must still know the removed replica's address.
  const uint64_t other = 6 - leader - removed;
  cl.net().HealAll();
  cl.net().Isolate(ManualCluster::Name(static_cast<int>(other)));
  const bool stopped =
      cl.DriveUntil([&] { return !cl.host(removed).GetReplicaInfo(1).ok(); }, 4 * 200);
  EXPECT_TRUE(stopped) << "the removed replica never learned of its removal and still runs ("
                       << cl.host(removed).GetMetrics().campaigns << " campaigns)";
  // The others go on.
  cl.net().HealAll();
  ASSERT_TRUE(cl.DriveUntil([&] {
    leader = cl.host(other).GetReplicaInfo(1)->leader_id;
    return leader != 0 && leader != removed;
  }));
  Result<RequestHandle> w = cl.host(leader).Propose(1, "k=v", 3600s);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(cl.DriveUntil([&] { return w->Done(); }));
  EXPECT_TRUE(w->Wait().ok());
  std::filesystem::remove_all(root);
}

// A replica that applied its own removal may be the only live one that
// knows the removal committed. Here the removed leader's commit messages are
// lost, a second voter dies for good, and the survivors (still counting the
// old configuration of four, of which they are two) can win neither its
// votes nor, unaware of the commit, the new configuration's. Only the
// removed replica can tell them: through its answer to their vote requests
// (the answer carries its commit index) or its own probes. Before, it stopped
// itself two election timeouts after applying its removal, whoever knew, and
// the shard never elected again (flotilla_sim seed 2544). Now it stays until
// a majority of the new configuration has told it that they applied the
// removal too, and then stops.
TEST(RemovedReplica, StaysUntilTheNewConfigurationKnowsOfItsRemoval) {
  const std::string root = TempRoot("flotilla-removed-knows-");
  ManualCluster cl(root, 7, /*hosts=*/4, NodeHostConfig{}.max_concurrent_campaigns);
  cl.StartShard(1, {1, 2, 3, 4});
  const uint64_t removed = cl.AgreedLeader();
  ASSERT_NE(removed, 0u);
  const uint64_t dead = removed == 4 ? 3 : 4;
  std::vector<uint64_t> survivors;
  for (uint64_t r = 1; r <= 4; ++r) {
    if (r != removed && r != dead) survivors.push_back(r);
  }
  Result<RequestHandle> rm = cl.host(removed).RemoveReplica(1, removed, 3600s);
  ASSERT_TRUE(rm.ok());
  // The removed leader is cut off in the pass that applies its removal,
  // before its commit index reaches anyone.
  for (int step = 0; step < 2000 && !rm->Done(); ++step) {
    if (step % 4 == 0) {
      for (uint64_t r = 1; r <= 4; ++r) cl.host(r).AdvanceTick();
    }
    for (uint64_t r = 1; r <= 4; ++r) cl.host(r).RunOnce();
    if (rm->Done()) cl.net().Isolate(ManualCluster::Name(static_cast<int>(removed)));
    cl.net().DeliverAll(cl.rng());
  }
  ASSERT_TRUE(rm->Done());
  ASSERT_TRUE(rm->Wait().ok());
  const uint64_t removal = cl.host(removed).GetReplicaInfo(1)->commit_index;
  for (uint64_t r : survivors) ASSERT_LT(cl.host(r).GetReplicaInfo(1)->commit_index, removal);
  cl.net().Isolate(ManualCluster::Name(static_cast<int>(dead)));
  // Cut off for ten election timeouts, the removed replica steps down.
  cl.RunTicks(100);
  cl.net().Heal(ManualCluster::Name(static_cast<int>(removed)));
  uint64_t leader = 0;
  const bool elected = cl.DriveUntil([&] {
    leader = cl.host(survivors[0]).GetReplicaInfo(1)->leader_id;
    return leader == survivors[0] || leader == survivors[1];
  });
  ASSERT_TRUE(elected) << "the survivors never elected a leader (the removed replica "
                       << (cl.host(removed).GetReplicaInfo(1).ok() ? "runs" : "stopped") << ")";
  Result<RequestHandle> w = cl.host(leader).Propose(1, "k=v", 3600s);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(cl.DriveUntil([&] { return w->Done(); }));
  EXPECT_TRUE(w->Wait().ok());
  // Both survivors applied the removal and told it: it stops now.
  EXPECT_TRUE(cl.DriveUntil([&] { return !cl.host(removed).GetReplicaInfo(1).ok(); }, 4 * 200));
  std::filesystem::remove_all(root);
}

// ShardConfig::lease_read: a leader holding its lease answers a read with no
// heartbeat round (here: with no message delivered at all); a leader just
// woken from quiescence does not hold it, and the read falls back to a
// ReadIndex round that completes once the followers answer.
TEST(LeaseRead, ServedFromTheLeaseAndAfterWakingByARound) {
  const std::string root = TempRoot("flotilla-lease-");
  ShardConfig sc;
  sc.lease_read = true;
  sc.quiesce_after_election_timeouts = 1;
  ManualCluster cl(root, 11, sc);
  const uint64_t leader = cl.AgreedLeader();
  ASSERT_NE(leader, 0u);
  Result<RequestHandle> w = cl.host(leader).Propose(1, "k=v", 3600s);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(cl.DriveUntil([&] { return w->Done(); }));
  // Keep the lease fresh: a heartbeat round answered within this window.
  for (int step = 0; step < 8; ++step) cl.Step(step);
  auto read_alone = [&] {
    Result<RequestHandle> r = cl.host(leader).Read(1, "k", 3600s);
    EXPECT_TRUE(r.ok());
    for (int i = 0; i < 3; ++i) cl.host(leader).RunOnce();
    return *r;
  };
  RequestHandle leased = read_alone();
  ASSERT_TRUE(leased.Done()) << "a leader holding its lease needed a heartbeat round";
  EXPECT_EQ(leased.Wait().data, "v");

  auto all_quiesced = [&] {
    for (uint64_t i = 1; i <= 3; ++i) {
      if (!cl.host(i).GetReplicaInfo(1)->quiesced) return false;
    }
    return true;
  };
  ASSERT_TRUE(cl.DriveUntil(all_quiesced, 20000));
  RequestHandle woken = read_alone();
  EXPECT_FALSE(woken.Done()) << "a leader woken from quiescence read from a lease it never renewed";
  ASSERT_TRUE(cl.DriveUntil([&] { return woken.Done(); }));
  EXPECT_EQ(woken.Wait().data, "v");
  std::filesystem::remove_all(root);
}

TEST(LeaseRead, RefusedWithoutCheckQuorum) {
  const std::string root = TempRoot("flotilla-lease-cq-");
  NodeHostConfig c;
  c.data_dir = root;
  NodeHostDeps d;
  d.logdb = logdb::NewMemoryLogDB();
  d.start_threads = false;
  NodeHostImpl nh(c, std::move(d));
  ASSERT_TRUE(nh.Init().ok());
  ShardConfig sc;
  sc.shard_id = 1;
  sc.replica_id = 1;
  sc.lease_read = true;
  sc.check_quorum = false;
  Status s = nh.StartReplica(
      sc, {{1, nh.raft_address()}}, StartMode::kNewShard,
      [](uint64_t, uint64_t) { return std::make_unique<testing::KvStateMachine>(); });
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  nh.Close();
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace flotilla::engine
