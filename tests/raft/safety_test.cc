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

}  // namespace
}  // namespace flotilla::raft::testing
