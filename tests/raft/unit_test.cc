// Unit tests of the small pure pieces of the core: quorum arithmetic, the
// in-flight window, follower progress, membership-change computation, the
// conf-change encoding, MemoryLog and RaftLog.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "engine/raft/conf_change.h"
#include "engine/raft/log_reader.h"
#include "engine/raft/payload.h"
#include "engine/raft/progress.h"
#include "engine/raft/quorum.h"
#include "engine/raft/raft_log.h"
#include "engine/raft/read_only.h"

namespace flotilla::raft {
namespace {

TEST(Quorum, MajorityIndex) {
  std::vector<Index> v{5};
  EXPECT_EQ(MajorityIndex(&v), 5u);
  v = {1, 5, 3};
  EXPECT_EQ(MajorityIndex(&v), 3u);
  v = {1, 5, 3, 4};
  EXPECT_EQ(MajorityIndex(&v), 3u);  // 3 of 4 have reached 3
  v = {9, 9, 1, 1, 2};
  EXPECT_EQ(MajorityIndex(&v), 2u);
  v.clear();
  EXPECT_EQ(MajorityIndex(&v), kNoLimitIndex);
}

TEST(Quorum, MajorityVote) {
  EXPECT_EQ(MajorityVote(3, 2, 0), VoteResult::kWon);
  EXPECT_EQ(MajorityVote(3, 1, 1), VoteResult::kPending);
  EXPECT_EQ(MajorityVote(3, 1, 2), VoteResult::kLost);
  EXPECT_EQ(MajorityVote(4, 2, 1), VoteResult::kPending);
  EXPECT_EQ(MajorityVote(4, 2, 2), VoteResult::kLost);
  EXPECT_EQ(MajorityVote(0, 0, 0), VoteResult::kWon);
}

TEST(Quorum, JointVote) {
  EXPECT_EQ(JointVote(VoteResult::kWon, VoteResult::kWon), VoteResult::kWon);
  EXPECT_EQ(JointVote(VoteResult::kWon, VoteResult::kPending), VoteResult::kPending);
  EXPECT_EQ(JointVote(VoteResult::kWon, VoteResult::kLost), VoteResult::kLost);
  EXPECT_EQ(JointVote(VoteResult::kLost, VoteResult::kPending), VoteResult::kLost);
}

TEST(Inflights, CountAndBytesLimits) {
  Inflights in(3, 0);
  in.Add(1, 10);
  in.Add(2, 10);
  EXPECT_FALSE(in.Full());
  in.Add(5, 10);
  EXPECT_TRUE(in.Full());
  in.FreeUpTo(2);
  EXPECT_EQ(in.Count(), 1u);
  EXPECT_EQ(in.Bytes(), 10u);
  in.Add(6, 10);
  in.Add(7, 10);  // wraps around the ring
  EXPECT_TRUE(in.Full());
  in.FreeUpTo(100);
  EXPECT_EQ(in.Count(), 0u);

  Inflights by_bytes(100, 25);
  by_bytes.Add(1, 10);
  by_bytes.Add(2, 10);
  EXPECT_FALSE(by_bytes.Full());
  by_bytes.Add(3, 10);
  EXPECT_TRUE(by_bytes.Full());
  by_bytes.FreeFirst();
  EXPECT_FALSE(by_bytes.Full());
}

TEST(Progress, ProbeDecreasesOnlyOnMatchingRejection) {
  Progress p(4, 0);
  p.match = 3;
  p.next = 10;
  EXPECT_FALSE(p.MaybeDecreaseTo(5, 4));  // stale: we did not send at 5
  EXPECT_TRUE(p.MaybeDecreaseTo(9, 6));
  EXPECT_EQ(p.next, 7u);  // the hint skips ahead of one-by-one
  EXPECT_TRUE(p.MaybeDecreaseTo(6, 0));
  EXPECT_EQ(p.next, 4u);  // never below match + 1
}

TEST(Progress, ReplicateRejectionFallsBackToMatch) {
  Progress p(4, 0);
  p.match = 5;
  p.BecomeReplicate();
  p.OptimisticUpdate(9);
  EXPECT_EQ(p.next, 10u);
  EXPECT_FALSE(p.MaybeDecreaseTo(4, 0));  // at or below match: stale
  EXPECT_TRUE(p.MaybeDecreaseTo(7, 0));
  EXPECT_EQ(p.next, 6u);
}

TEST(Progress, PausedStates) {
  Progress p(1, 0);
  EXPECT_FALSE(p.IsPaused());
  p.probe_sent = true;
  EXPECT_TRUE(p.IsPaused());
  p.BecomeReplicate();
  EXPECT_FALSE(p.IsPaused());
  p.inflights.Add(3, 1);
  EXPECT_TRUE(p.IsPaused());
  p.BecomeSnapshot(20);
  EXPECT_TRUE(p.IsPaused());
  p.BecomeProbe();
  EXPECT_EQ(p.next, 21u);  // after a snapshot, probe just past it
}

TEST(Progress, MaybeUpdate) {
  Progress p(4, 0);
  EXPECT_TRUE(p.MaybeUpdate(5));
  EXPECT_EQ(p.match, 5u);
  EXPECT_EQ(p.next, 6u);
  EXPECT_FALSE(p.MaybeUpdate(4));
  EXPECT_EQ(p.match, 5u);
}

Membership Voters(std::vector<ReplicaId> v) {
  Membership m;
  m.voters = std::move(v);
  return m;
}

ConfChange Change(std::vector<ConfChangeItem> items, ConfTransition t = ConfTransition::kAuto) {
  ConfChange cc;
  cc.transition = t;
  cc.items = std::move(items);
  return cc;
}

TEST(ConfChange, SimpleAddAndRemove) {
  ChangeResult r = ApplyConfChange(Voters({1, 2, 3}), Change({{ConfChangeType::kAddVoter, 4, ""}}));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.membership.voters, (std::vector<ReplicaId>{1, 2, 3, 4}));
  EXPECT_FALSE(r.membership.IsJoint());
  r = ApplyConfChange(r.membership, Change({{ConfChangeType::kRemove, 2, ""}}));
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.membership.voters, (std::vector<ReplicaId>{1, 3, 4}));
}

// The membership keeps each member's context (the driver's address) from the
// change that added it, so that a snapshot carries the address book.
TEST(ConfChange, MembersKeepTheirContextsUntilRemoved) {
  ChangeResult r = ApplyConfChange(Voters({1, 2, 3}),
                                   Change({{ConfChangeType::kAddNonVoting, 4, "host4:7100"}}));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.membership.contexts, (std::map<ReplicaId, std::string>{{4, "host4:7100"}}));
  // Promoting without a context keeps the one it has.
  r = ApplyConfChange(r.membership, Change({{ConfChangeType::kAddVoter, 4, ""}}));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.membership.contexts.at(4), "host4:7100");
  r = ApplyConfChange(r.membership, Change({{ConfChangeType::kAddWitness, 5, "host5:7100"}}));
  ASSERT_TRUE(r.ok) << r.error;
  r = ApplyConfChange(r.membership, Change({{ConfChangeType::kRemove, 4, ""}}));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.membership.contexts, (std::map<ReplicaId, std::string>{{5, "host5:7100"}}));
  // A refused change leaves the contexts alone.
  EXPECT_FALSE(
      ApplyConfChange(r.membership, Change({{ConfChangeType::kAddVoter, 4, "again:1"}})).ok);
}

TEST(ConfChange, TwoVotersEnterJointAndLeave) {
  ChangeResult r = ApplyConfChange(Voters({1, 2, 3}), Change({{ConfChangeType::kAddVoter, 4, ""},
                                                              {ConfChangeType::kRemove, 1, ""}}));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_TRUE(r.membership.IsJoint());
  EXPECT_TRUE(r.membership.auto_leave);
  EXPECT_EQ(r.membership.voters, (std::vector<ReplicaId>{2, 3, 4}));
  EXPECT_EQ(r.membership.voters_outgoing, (std::vector<ReplicaId>{1, 2, 3}));
  ChangeResult again = ApplyConfChange(r.membership, Change({{ConfChangeType::kAddVoter, 5, ""}}));
  EXPECT_FALSE(again.ok);  // no nested joint configurations
  r = ApplyConfChange(r.membership, ConfChange{});
  ASSERT_TRUE(r.ok);
  EXPECT_FALSE(r.membership.IsJoint());
  EXPECT_EQ(r.membership.voters, (std::vector<ReplicaId>{2, 3, 4}));
}

TEST(ConfChange, LeaveJointWhenNotJointFails) {
  EXPECT_FALSE(ApplyConfChange(Voters({1, 2, 3}), ConfChange{}).ok);
}

TEST(ConfChange, ExplicitJointDoesNotAutoLeave) {
  ChangeResult r = ApplyConfChange(Voters({1, 2, 3}), Change({{ConfChangeType::kAddVoter, 4, ""}},
                                                             ConfTransition::kJointExplicit));
  ASSERT_TRUE(r.ok);
  EXPECT_TRUE(r.membership.IsJoint());
  EXPECT_FALSE(r.membership.auto_leave);
}

TEST(ConfChange, NonVotingPromotionAndDemotion) {
  ChangeResult r =
      ApplyConfChange(Voters({1, 2, 3}), Change({{ConfChangeType::kAddNonVoting, 4, ""}}));
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.membership.non_voting, (std::vector<ReplicaId>{4}));
  r = ApplyConfChange(r.membership, Change({{ConfChangeType::kAddVoter, 4, ""}}));
  ASSERT_TRUE(r.ok);
  EXPECT_TRUE(r.membership.non_voting.empty());
  EXPECT_EQ(r.membership.voters, (std::vector<ReplicaId>{1, 2, 3, 4}));
  // Demoting a voter in a joint change keeps it voting until the joint
  // configuration is left.
  r = ApplyConfChange(r.membership, Change({{ConfChangeType::kAddNonVoting, 3, ""}},
                                           ConfTransition::kJointImplicit));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.membership.non_voting_next, (std::vector<ReplicaId>{3}));
  r = ApplyConfChange(r.membership, ConfChange{});
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.membership.non_voting, (std::vector<ReplicaId>{3}));
}

TEST(ConfChange, WitnessRules) {
  ChangeResult r = ApplyConfChange(Voters({1, 2}), Change({{ConfChangeType::kAddWitness, 3, ""}}));
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.membership.witnesses, (std::vector<ReplicaId>{3}));
  EXPECT_EQ(r.membership.voters, (std::vector<ReplicaId>{1, 2, 3}));
  EXPECT_FALSE(ApplyConfChange(r.membership, Change({{ConfChangeType::kAddVoter, 3, ""}})).ok);
  EXPECT_FALSE(ApplyConfChange(r.membership, Change({{ConfChangeType::kAddWitness, 1, ""}})).ok);
  r = ApplyConfChange(r.membership, Change({{ConfChangeType::kRemove, 3, ""}}));
  ASSERT_TRUE(r.ok);
  EXPECT_TRUE(r.membership.witnesses.empty());
}

TEST(ConfChange, RemovingTheLastVoterFails) {
  EXPECT_FALSE(ApplyConfChange(Voters({1}), Change({{ConfChangeType::kRemove, 1, ""}})).ok);
}

TEST(ConfChange, EncodingRoundTripsAndRejectsGarbage) {
  ConfChange cc =
      Change({{ConfChangeType::kAddVoter, 7, "127.0.0.1:9000"}, {ConfChangeType::kRemove, 300, ""}},
             ConfTransition::kJointExplicit);
  ConfChange back;
  ASSERT_TRUE(DecodeConfChange(EncodeConfChange(cc), &back));
  EXPECT_EQ(back, cc);
  std::string bad = EncodeConfChange(cc);
  EXPECT_FALSE(DecodeConfChange(bad.substr(0, bad.size() - 1), &back));
  EXPECT_FALSE(DecodeConfChange("", &back));
  EXPECT_FALSE(DecodeConfChange(std::string("\x09\x00\x01", 3), &back));
}

Entry E(Term t, Index i, std::string cmd = "") {
  Entry e;
  e.term = t;
  e.index = i;
  e.cmd = std::move(cmd);
  return e;
}

TEST(MemoryLog, AppendReplaceCompact) {
  MemoryLog log;
  log.Append({E(1, 1), E(1, 2), E(2, 3)});
  EXPECT_EQ(log.LastIndex(), 3u);
  log.Append({E(3, 3), E(3, 4)});  // replaces index 3
  Term t = 0;
  ASSERT_EQ(log.TermAt(3, &t), LogStatus::kOk);
  EXPECT_EQ(t, 3u);
  log.Compact(2);
  EXPECT_EQ(log.FirstIndex(), 3u);
  EXPECT_EQ(log.TermAt(1, &t), LogStatus::kCompacted);
  ASSERT_EQ(log.TermAt(2, &t), LogStatus::kOk);  // the compaction point keeps its term
  EXPECT_EQ(t, 1u);
  std::vector<Entry> out;
  EXPECT_EQ(log.Entries(2, 4, 1000, &out), LogStatus::kCompacted);
  EXPECT_EQ(log.Entries(3, 6, 1000, &out), LogStatus::kUnavailable);
  ASSERT_EQ(log.Entries(3, 5, 1, &out), LogStatus::kOk);
  EXPECT_EQ(out.size(), 1u);  // the budget still returns one entry
}

TEST(RaftLog, FollowerAppendFindsConflictsAndKeepsMatchingEntries) {
  MemoryLog store;
  store.Append({E(1, 1), E(1, 2), E(2, 3)});
  RaftLog log(&store);
  std::vector<Entry> ents{E(1, 2), E(2, 3)};
  EXPECT_EQ(log.MaybeAppend(1, 1, &ents), std::optional<Index>(3));
  EXPECT_FALSE(log.HasUnstable());  // nothing new
  ents = {E(3, 3), E(3, 4)};
  EXPECT_EQ(log.MaybeAppend(2, 1, &ents), std::optional<Index>(4));
  Term t = 0;
  ASSERT_EQ(log.TermAt(3, &t), LogStatus::kOk);
  EXPECT_EQ(t, 3u);
  ents = {E(3, 6)};
  EXPECT_EQ(log.MaybeAppend(5, 3, &ents), std::nullopt);  // gap
}

TEST(RaftLog, UpToDateComparesTermThenIndex) {
  MemoryLog store;
  store.Append({E(1, 1), E(2, 2)});
  RaftLog log(&store);
  EXPECT_TRUE(log.IsUpToDate(2, 2));
  EXPECT_TRUE(log.IsUpToDate(1, 3));
  EXPECT_FALSE(log.IsUpToDate(5, 1));
  EXPECT_FALSE(log.IsUpToDate(1, 2));
}

TEST(RaftLog, FindConflictByTermSkipsWholeTerms) {
  MemoryLog store;
  store.Append({E(1, 1), E(1, 2), E(4, 3), E(4, 4), E(4, 5)});
  RaftLog log(&store);
  EXPECT_EQ(log.FindConflictByTerm(5, 2), (std::pair<Index, Term>{2, 1}));
  EXPECT_EQ(log.FindConflictByTerm(5, 4), (std::pair<Index, Term>{5, 4}));
  EXPECT_EQ(log.FindConflictByTerm(9, 4), (std::pair<Index, Term>{5, 4}));
}

TEST(ReadIndexQueue, RoundsBatchRequests) {
  ReadIndexQueue q;
  q.Add(1, 1, 10);
  q.Add(2, 1, 10);
  EXPECT_EQ(q.StartRound(), 1u);
  q.Add(3, 2, 11);  // waits for the next round
  EXPECT_TRUE(q.RoundInFlight());
  std::vector<ReadIndexQueue::Request> ready;
  q.Confirm(1, &ready);
  ASSERT_EQ(ready.size(), 2u);
  EXPECT_FALSE(q.RoundInFlight());
  EXPECT_TRUE(q.HasWaiting());
  EXPECT_EQ(q.StartRound(), 2u);
  ready.clear();
  q.Confirm(7, &ready);  // a round never started confirms nothing
  EXPECT_TRUE(ready.empty());
  q.Confirm(2, &ready);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0].ctx, 3u);
}

}  // namespace
}  // namespace flotilla::raft

namespace flotilla::raft {
namespace {

TEST(ConfChange, RemovedReplicaCannotBeAddedAgain) {
  Membership m;
  m.voters = {1, 2, 3, 4};
  ConfChange remove;
  remove.items.push_back({ConfChangeType::kRemove, 4, ""});
  ChangeResult r = ApplyConfChange(m, remove);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.membership.removed, (std::vector<ReplicaId>{4}));
  for (ConfChangeType t :
       {ConfChangeType::kAddVoter, ConfChangeType::kAddNonVoting, ConfChangeType::kAddWitness}) {
    ConfChange add;
    add.items.push_back({t, 4, ""});
    EXPECT_FALSE(ApplyConfChange(r.membership, add).ok);
  }
}

}  // namespace
}  // namespace flotilla::raft

namespace flotilla::raft {
namespace {

TEST(Payload, ShortBytesStayInPlaceAndLongOnesAreShared) {
  const std::string short_bytes(Payload::kInline, 's');
  const std::string long_bytes(Payload::kInline + 1, 'l');
  Payload a(short_bytes);
  Payload b(long_bytes);
  EXPECT_FALSE(a.on_heap());
  EXPECT_TRUE(b.on_heap());
  EXPECT_EQ(a, short_bytes);
  EXPECT_EQ(b, long_bytes);
  // A copy of a short payload has its own bytes; of a long one, the same.
  const Payload a2 = a;
  const Payload b2 = b;
  EXPECT_NE(a2.data(), a.data());
  EXPECT_EQ(b2.data(), b.data());
  EXPECT_EQ(a2, a);
  EXPECT_EQ(b2, b);
  // Dropping one copy leaves the other intact.
  b = Payload("x");
  EXPECT_EQ(b2, long_bytes);
  EXPECT_EQ(b, "x");
}

TEST(Payload, MovingLeavesTheSourceEmptyAndAdoptsAStringsBuffer) {
  std::string bytes(1000, 'm');
  const char* buffer = bytes.data();
  Payload p(std::move(bytes));
  EXPECT_EQ(p.data(), buffer);  // adopted, not copied
  Payload q(std::move(p));
  EXPECT_TRUE(p.empty());  // NOLINT: checking the moved-from state on purpose
  EXPECT_EQ(q.size(), 1000u);
  Payload r;
  r = std::move(q);
  EXPECT_EQ(r.data(), buffer);
  r = r;  // NOLINT: self-assignment keeps the bytes
  EXPECT_EQ(r.data(), buffer);
  r.clear();
  EXPECT_TRUE(r.empty());
  EXPECT_EQ(r, "");
  Payload e;
  EXPECT_EQ(e.view(), "");
}

TEST(Payload, EqualityStringsAndEntries) {
  Entry a;
  a.cmd = std::string(100, 'z');
  Entry b = a;
  EXPECT_EQ(a, b);
  b.cmd = std::string(99, 'z') + "y";
  EXPECT_NE(a, b);
  EXPECT_EQ(std::string("<") + Payload("p") + ">", "<p>");
  EXPECT_EQ(Payload("abc").substr(1), "bc");
  EXPECT_EQ(a.SizeBytes(), Entry::kOverheadBytes + 100);
}

TEST(Payload, CopiesOnManyThreadsShareOneBlockSafely) {
  const Payload shared(std::string(4096, 'q'));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&shared] {
      for (int i = 0; i < 20000; ++i) {
        Payload copy = shared;
        Payload moved = std::move(copy);
        if (moved.size() != 4096 || moved[4095] != 'q') std::abort();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(shared.size(), 4096u);
}

}  // namespace
}  // namespace flotilla::raft
