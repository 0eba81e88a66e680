// The five safety rules of Raft (Figure 3 of the paper), each tested by name
// on a situation built to break it, and then checked over randomized runs.
#include <gtest/gtest.h>

#include "engine/raft/conf_change.h"
#include "tests/raft/core_sim.h"
#include "tests/raft/harness.h"

namespace flotilla::raft::testing {
namespace {

Config NoPreVote() {
  Config c;
  c.pre_vote = false;
  c.check_quorum = false;
  c.election_ticks = 10;
  return c;
}

// Entries 1..n: the bootstrap membership of voters 1..n, term 1.
std::vector<Entry> Bootstrap(ReplicaId n) {
  std::vector<Entry> ents;
  for (ReplicaId id = 1; id <= n; ++id) {
    Entry e;
    e.term = 1;
    e.index = id;
    e.type = EntryType::kConfChange;
    e.cmd =
        EncodeConfChange(ConfChange{ConfTransition::kAuto, {{ConfChangeType::kAddVoter, id, ""}}});
    ents.push_back(std::move(e));
  }
  return ents;
}

std::vector<Entry> With(std::vector<Entry> ents, Term term, const std::string& cmd) {
  Entry e;
  e.term = term;
  e.index = ents.size() + 1;
  e.cmd = cmd;
  ents.push_back(std::move(e));
  return ents;
}

const Message* Find(Harness& h, MessageType type, ReplicaId from, ReplicaId to) {
  for (const Message& m : h.queue()) {
    if (m.type == type && m.from == from && m.to == to) return &m;
  }
  return nullptr;
}

// Election safety: at most one leader can be elected in a given term.
TEST(Safety, ElectionSafety_SplitVoteElectsAtMostOneLeaderPerTerm) {
  Harness h;
  Membership m;
  m.voters = {1, 2, 3};
  for (ReplicaId id = 1; id <= 3; ++id) h.AddNode(id, NoPreVote(), m);
  // 1 and 2 campaign in the same term; 3 can vote for only one of them.
  h.node(1).peer->Campaign();
  h.node(2).peer->Campaign();
  h.Stabilize();
  int leaders = 0;
  for (ReplicaId id = 1; id <= 3; ++id) {
    const Raft& r = h.node(id).peer->raft();
    if (r.is_leader() && r.term() == 2) ++leaders;
  }
  EXPECT_LE(leaders, 1);
}

TEST(Safety, ElectionSafety_VoteSurvivesRestart) {
  Harness h;
  Membership m;
  m.voters = {1, 2, 3};
  for (ReplicaId id = 1; id <= 3; ++id) h.AddNode(id, NoPreVote(), m);
  h.node(1).peer->Campaign();
  h.ProcessUpdate(1);
  h.Deliver(3);        // 3 votes for 1 in term 2 ...
  h.ProcessUpdate(3);  // ... and persists the vote.
  h.queue().clear();
  h.Crash(3);
  h.Restart(3);
  h.node(2).peer->Campaign();  // term 2 as well: 2 was still at term 1
  h.ProcessUpdate(2);
  h.Deliver(3);
  h.ProcessUpdate(3);
  const Message* resp = Find(h, MessageType::kRequestVoteResp, 3, 2);
  ASSERT_NE(resp, nullptr);
  EXPECT_TRUE(resp->reject) << "3 voted twice in term 2";
}

// Leader append-only: a leader never overwrites or deletes entries in its log.
TEST(Safety, LeaderAppendOnly_StaleAppendDoesNotTouchTheLeadersLog) {
  Harness h;
  h.AddNodeWithLog(1, NoPreVote(), With(Bootstrap(3), 2, "x"), {2, 0, 3});
  h.AddNodeWithLog(2, NoPreVote(), Bootstrap(3), {2, 0, 3});
  h.AddNodeWithLog(3, NoPreVote(), Bootstrap(3), {2, 0, 3});
  h.node(1).peer->Campaign();
  h.Stabilize();
  ASSERT_TRUE(h.node(1).peer->raft().is_leader());
  const Index last = h.node(1).peer->raft().log().LastIndex();
  // An append from a leader of an older term that conflicts with our log.
  Message stale;
  stale.type = MessageType::kReplicate;
  stale.from = 2;
  stale.to = 1;
  stale.term = 2;
  stale.log_index = 3;
  stale.log_term = 1;
  Entry e;
  e.term = 2;
  e.index = 4;
  e.cmd = "conflict";
  stale.entries.push_back(e);
  h.node(1).peer->Step(stale);
  h.Stabilize();
  const Raft& r = h.node(1).peer->raft();
  EXPECT_TRUE(r.is_leader());
  EXPECT_EQ(r.log().LastIndex(), last);
  std::vector<Entry> ents;
  ASSERT_EQ(r.log().Entries(4, 5, UINT64_MAX, &ents), LogStatus::kOk);
  EXPECT_EQ(ents[0].cmd, "x");
}

// Log matching: a follower accepts an append only when its entry before the
// new ones matches the leader's, so logs that share an entry share the prefix.
TEST(Safety, LogMatching_FollowerRejectsAppendWhosePreviousEntryDiffers) {
  Harness h;
  Config c = NoPreVote();
  h.AddNodeWithLog(1, c, With(With(Bootstrap(3), 3, "a"), 3, "b"), {3, 0, 3});
  h.AddNodeWithLog(2, c, With(With(Bootstrap(3), 2, "old"), 2, "older"), {3, 0, 3});
  h.AddNodeWithLog(3, c, With(Bootstrap(3), 3, "a"), {3, 0, 3});
  h.node(1).peer->Campaign();
  h.ProcessUpdate(1);
  h.Deliver(3);
  h.ProcessUpdate(3);
  h.Deliver(1);  // 3's vote makes 1 leader
  h.ProcessUpdate(1);
  // The leader's first append to 2 carries prev = 3/5, which 2 lacks.
  h.Deliver(2);
  h.ProcessUpdate(2);
  const Message* resp = Find(h, MessageType::kReplicateResp, 2, 1);
  ASSERT_NE(resp, nullptr);
  EXPECT_TRUE(resp->reject);
  h.Stabilize();
  // After backtracking, 2's divergent suffix is replaced: the logs match.
  EXPECT_EQ(h.LogLine(2).substr(1), h.LogLine(1).substr(1));
}

// Leader completeness: a candidate whose log lacks a committed entry cannot
// win, because voters refuse candidates whose log is behind theirs.
TEST(Safety, LeaderCompleteness_VoteDeniedToCandidateWithShorterLog) {
  Harness h;
  Config c = NoPreVote();
  h.AddNodeWithLog(1, c, With(Bootstrap(3), 2, "committed"), {2, 1, 4});
  h.AddNodeWithLog(2, c, With(Bootstrap(3), 2, "committed"), {2, 1, 4});
  h.AddNodeWithLog(3, c, Bootstrap(3), {2, 1, 3});
  h.node(3).peer->Campaign();
  h.ProcessUpdate(3);
  h.Deliver(1);
  h.Deliver(2);
  h.ProcessUpdate(1);
  h.ProcessUpdate(2);
  const Message* r1 = Find(h, MessageType::kRequestVoteResp, 1, 3);
  const Message* r2 = Find(h, MessageType::kRequestVoteResp, 2, 3);
  ASSERT_NE(r1, nullptr);
  ASSERT_NE(r2, nullptr);
  EXPECT_TRUE(r1->reject);
  EXPECT_TRUE(r2->reject);
  h.Stabilize();
  EXPECT_FALSE(h.node(3).peer->raft().is_leader());
}

// State machine safety, through the rule that makes it hold (Figure 8): an
// entry of an older term that reached a majority is not committed by counting
// replicas, since a candidate with a newer last term could still overwrite it.
TEST(Safety, StateMachineSafety_OlderTermEntryNotCommittedByCounting) {
  Harness h;
  Config c = NoPreVote();
  const std::vector<Entry> boot = Bootstrap(5);
  const std::vector<Entry> old_entry = With(boot, 2, "a");  // index 6, term 2
  for (ReplicaId id : {1, 2, 3}) h.AddNodeWithLog(id, c, old_entry, {3, 0, 5});
  h.AddNodeWithLog(4, c, boot, {3, 0, 5});
  h.AddNodeWithLog(5, c, With(boot, 3, "b"), {3, 0, 5});
  h.node(1).peer->Campaign();  // term 4
  h.ProcessUpdate(1);
  for (ReplicaId id : {2, 3, 4}) {
    h.Deliver(id);
    h.ProcessUpdate(id);
  }
  h.Crash(5);
  h.Deliver(1);
  ASSERT_TRUE(h.node(1).peer->raft().is_leader());
  h.ProcessUpdate(1);  // persists the term-4 no-op at index 7 and sends appends
  // Deliver to 2 and 3 the appends without the new no-op, so that they
  // acknowledge exactly index 6: the old entry now sits on 1, 2 and 3.
  for (Message& m : h.queue()) {
    if (m.type == MessageType::kReplicate) m.entries.clear();
  }
  h.Crash(4);
  h.Deliver(2);
  h.Deliver(3);
  h.ProcessUpdate(2);
  h.ProcessUpdate(3);
  h.Deliver(1);
  h.ProcessUpdate(1);
  EXPECT_EQ(h.node(1).peer->raft().tracker().progress().at(2).match, 6u);
  EXPECT_LT(h.node(1).peer->raft().log().committed(), 6u)
      << "an entry of term 2 was committed by counting replicas in term 4";
}

// All five rules over randomized runs with faults (the full checker).
TEST(Safety, AllRulesHoldOverRandomizedRuns) {
  for (uint64_t seed = 90001; seed < 90101; ++seed) {
    const CoreSimResult r = RunCoreSim(seed, CoreSimOptions{});
    ASSERT_TRUE(r.ok) << "seed " << seed << ": " << r.failure;
  }
}

// Voters 1, 2 and 3, with 1 elected.
void ElectOneOfThree(Harness& h) {
  Membership m;
  m.voters = {1, 2, 3};
  for (ReplicaId id = 1; id <= 3; ++id) h.AddNode(id, NoPreVote(), m);
  h.node(1).peer->Campaign();
  h.Stabilize();
}

// Repair (docs/raft-core.md, Repair). Replica `id` restarts having lost
// every entry above `keep` (damaged at rest); it may have acknowledged up to
// its old last index, which it remembers.
void RestartHavingLost(Harness& h, ReplicaId id, Index keep) {
  Node& n = h.node(id);
  const Index last = n.log->LastIndex();
  HardState hs = n.peer->raft().hard_state();
  h.Crash(id);
  n.log->TruncateAfter(keep);
  hs.commit = std::min(hs.commit, keep);
  n.log->set_hard_state(hs);
  n.cfg.repair_until = last;
  n.cfg.repair_term = hs.term;
  h.Restart(id);
}

void ProposeOn(Harness& h, ReplicaId id, const std::string& cmd) {
  std::vector<Entry> ents(1);
  ents[0].cmd = cmd;
  ASSERT_EQ(h.node(id).peer->Propose(&ents), ProposeResult::kOk);
}

// Entry "x" is committed by 1 and 2 only; 2 loses it. Without repair, 2's
// vote elects 3, whose log lacks "x": a committed entry is lost. Repairing,
// 2 votes for nobody, so only 1 (which holds "x") can win, and 2 fetches
// "x" again from it.
TEST(Safety, Repair_AReplicaThatLostAcknowledgedEntriesVotesForNobodyUntilRepaired) {
  Harness h;
  ElectOneOfThree(h);
  ASSERT_TRUE(h.node(1).peer->raft().is_leader());
  const Index before_x = h.node(1).peer->raft().log().LastIndex();
  h.Isolate(3);
  ProposeOn(h, 1, "x");
  h.Stabilize();
  ASSERT_GT(h.node(1).peer->raft().log().committed(), before_x);
  h.Crash(1);
  RestartHavingLost(h, 2, before_x);
  EXPECT_TRUE(h.node(2).peer->raft().repairing());
  h.Heal();
  h.node(3).peer->Campaign();
  h.Stabilize({2, 3});
  EXPECT_FALSE(h.node(3).peer->raft().is_leader()) << "3 was elected without the committed x";
  EXPECT_FALSE(h.node(2).peer->raft().is_leader());
  h.node(2).peer->Campaign();  // a repairing replica does not campaign
  h.Stabilize({2, 3});
  EXPECT_FALSE(h.node(2).peer->raft().is_leader());
  h.Restart(1);
  // 3 voted for itself in its term: 1 may need a second term to win.
  for (int i = 0; i < 3 && !h.node(1).peer->raft().is_leader(); ++i) {
    h.node(1).peer->Campaign();
    h.Stabilize();
  }
  ASSERT_TRUE(h.node(1).peer->raft().is_leader());
  const Raft& r2 = h.node(2).peer->raft();
  EXPECT_FALSE(r2.repairing());
  std::vector<Entry> ents;
  ASSERT_EQ(r2.log().Entries(before_x + 1, before_x + 2, UINT64_MAX, &ents), LogStatus::kOk);
  EXPECT_EQ(ents[0].cmd, "x");
}

// The leader's match for a follower only ever grows; a follower that lost
// entries it had acknowledged answers a heartbeat with its last index
// (kLostEntries on appends), and the leader sends them again.
TEST(Safety, Repair_TheLeaderSendsAgainWhatAFollowerLost) {
  Harness h;
  ElectOneOfThree(h);
  const Index keep = h.node(1).peer->raft().log().LastIndex();
  ProposeOn(h, 1, "x");
  ProposeOn(h, 1, "y");
  h.Stabilize();
  const Index last = h.node(1).peer->raft().log().LastIndex();
  ASSERT_EQ(const_cast<ProgressTracker&>(h.node(1).peer->raft().tracker()).Get(2)->match, last);
  RestartHavingLost(h, 2, keep);
  ASSERT_EQ(h.node(2).peer->raft().log().LastIndex(), keep);
  h.Tick(1, static_cast<int>(NoPreVote().heartbeat_ticks));
  h.Stabilize();
  const Raft& r2 = h.node(2).peer->raft();
  EXPECT_EQ(r2.log().LastIndex(), last);
  EXPECT_FALSE(r2.repairing());
}

// A replica whose hard state was lost may have voted in a term above every
// term of its log: it asks every voter's term first, and meanwhile refuses
// every vote.
TEST(Safety, Repair_AReplicaThatLostItsHardStateAsksEveryVotersTerm) {
  Harness h;
  ElectOneOfThree(h);
  // 3 campaigns alone in term 3 and 2 votes for it; then 2 loses its hard state.
  h.Isolate(1);
  h.node(3).peer->Campaign();
  h.Stabilize({2, 3});
  h.Heal();
  Node& n = h.node(2);
  const Index last = n.log->LastIndex();
  ASSERT_EQ(n.peer->raft().term(), 3u);
  h.Crash(2);
  n.log->set_hard_state(HardState{2, kNoReplica, 0});  // recovered from the log's terms
  n.cfg.repair_until = last;
  n.cfg.repair_term = 2;
  n.cfg.hard_state_lost = true;
  h.Restart(2);
  // Another candidate in term 3 must not get 2's second vote of term 3.
  Message req;
  req.type = MessageType::kRequestVote;
  req.from = 1;
  req.to = 2;
  req.term = 3;
  req.log_index = last;
  req.log_term = 2;
  h.node(2).peer->Step(req);
  h.ProcessUpdate(2);
  const Message* resp = Find(h, MessageType::kRequestVoteResp, 2, 1);
  ASSERT_NE(resp, nullptr);
  EXPECT_TRUE(resp->reject);
  h.queue().clear();
  // It learns the membership from the leader's commit, then asks every
  // voter's term once per election timeout.
  for (int i = 0; i < 3 * static_cast<int>(NoPreVote().election_ticks); ++i) {
    for (ReplicaId id = 1; id <= 3; ++id) h.Tick(id);
    h.Stabilize();
  }
  EXPECT_GE(h.node(2).peer->raft().term(), 3u);
  EXPECT_FALSE(h.node(2).peer->raft().hard_state_lost());
  EXPECT_FALSE(h.node(2).peer->raft().repairing());
}

// A replica that lost its hard state knows no commit index, so no member
// either (without a snapshot, the membership is what the committed log
// holds). It asks the voters of the newest configuration its log holds:
// removed while it was down, after the leader's removal notices ran out, it
// is told so by them (flotilla_sim --areas all --seed 990: it asked no one,
// no one sent it anything, and it stayed running for ever).
TEST(Safety, Repair_AReplicaThatLostItsHardStateAsksTheVotersOfItsLog) {
  Harness h;
  ElectOneOfThree(h);
  Node& n = h.node(2);
  const Index last = n.log->LastIndex();
  const Term term = n.peer->raft().term();
  h.Crash(2);
  const ConfChange cc{ConfTransition::kAuto, {{ConfChangeType::kRemove, 2, ""}}};
  ASSERT_EQ(h.node(1).peer->ProposeConfChange(cc, 0), ProposeResult::kOk);
  const int timeout = static_cast<int>(NoPreVote().election_ticks);
  for (int i = 0; i < 12 * timeout; ++i) {
    h.Tick(1);
    h.Tick(3);
    h.Stabilize({1, 3});
  }
  ASSERT_FALSE(h.node(1).peer->raft().tracker().IsMember(2));
  std::erase_if(h.queue(), [](const Message& msg) { return msg.to == 2; });  // lost while down
  n.log->set_hard_state(HardState{term, kNoReplica, 0});
  n.cfg.repair_until = last;
  n.cfg.repair_term = term;
  n.cfg.hard_state_lost = true;
  h.Restart(2);
  ASSERT_TRUE(h.node(2).peer->raft().membership().voters.empty());
  for (int i = 0; i < 3 * timeout; ++i) {
    for (ReplicaId id = 1; id <= 3; ++id) h.Tick(id);
    h.Stabilize();
  }
  EXPECT_TRUE(h.node(2).peer->raft().told_removed()) << "it never learned that it was removed";
}

void TickAll(Harness& h, int election_timeouts) {
  for (int i = 0; i < election_timeouts * static_cast<int>(NoPreVote().election_ticks); ++i) {
    for (ReplicaId id = 1; id <= 3; ++id) h.Tick(id);
    h.Stabilize();
  }
}

// Voters 1-3 commit entry "x", then each of `losers` restarts having lost
// it, and all tick for five election timeouts. Returns the lost entries.
std::vector<Entry> CommitXThenLoseIt(Harness& h, const std::vector<ReplicaId>& losers) {
  ElectOneOfThree(h);
  const Index keep = h.node(1).peer->raft().log().LastIndex();
  ProposeOn(h, 1, "x");
  h.Stabilize();
  std::vector<Entry> lost;
  const Index last = h.node(1).log->LastIndex();
  EXPECT_EQ(h.node(1).log->Entries(keep + 1, last + 1, UINT64_MAX, &lost), LogStatus::kOk);
  for (ReplicaId id : losers) RestartHavingLost(h, id, keep);
  TickAll(h, 5);
  return lost;
}

// Every voter lost the same committed entry: none holds a copy, none votes,
// and no leader can ever be elected to repair them. Each asks the others
// whether they repair too (once per election timeout while it hears no
// leader) and, when every other voter says so, reports the shard as
// unrepairable (the driver names the damage and the replicas) instead of
// waiting in silence; it still takes no vote, so nothing is lost.
TEST(Safety, Repair_EveryVoterLostTheSameEntryIsReportedNotASilentStall) {
  Harness h;
  CommitXThenLoseIt(h, {1, 2, 3});
  for (ReplicaId id = 1; id <= 3; ++id) {
    const Raft& r = h.node(id).peer->raft();
    EXPECT_TRUE(r.repairing()) << id;
    EXPECT_FALSE(r.is_leader()) << id;
    EXPECT_TRUE(r.unrepairable()) << "replica " << id << " waits in silence";
  }
}

// One voter still holds the entry: the others are not reported, and they
// are repaired from it.
TEST(Safety, Repair_AVoterWithTheEntryKeepsTheShardRepairable) {
  Harness h;
  CommitXThenLoseIt(h, {2, 3});
  for (ReplicaId id = 2; id <= 3; ++id) {
    EXPECT_FALSE(h.node(id).peer->raft().unrepairable()) << id;
    EXPECT_FALSE(h.node(id).peer->raft().repairing()) << id;
  }
}

// Every voter lost "x"; then an operator restores voters 1 and 2 from a
// backup (they hold "x" again and are no longer repairing). 1 is elected
// with 2's vote and repairs 3, which is no longer reported unrepairable:
// the report ends with the repair, even when the append that ends it came
// before any tick (before, the flag stayed set and the NodeHost refused
// every request of a repaired replica).
TEST(Safety, Repair_TheUnrepairableReportEndsWithTheRepair) {
  Harness h;
  const std::vector<Entry> lost = CommitXThenLoseIt(h, {1, 2, 3});
  ASSERT_TRUE(h.node(3).peer->raft().unrepairable());
  for (ReplicaId id = 1; id <= 2; ++id) {
    Node& n = h.node(id);
    h.Crash(id);
    n.log->Append(lost);
    n.cfg.repair_until = 0;
    n.cfg.repair_term = 0;
    h.Restart(id);
  }
  h.node(1).peer->Campaign();
  h.Stabilize();
  ASSERT_TRUE(h.node(1).peer->raft().is_leader());
  const Raft& r3 = h.node(3).peer->raft();
  EXPECT_FALSE(r3.repairing());
  EXPECT_FALSE(r3.unrepairable()) << "a repaired replica is still reported unrepairable";
}

}  // namespace
}  // namespace flotilla::raft::testing
