#include "tests/lincheck/lincheck.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace flotilla::lincheck {
namespace {

// ---------------------------------------------------------------------------
// Builders for hand-written histories. Times are [call, return].

Operation MakeOp(uint64_t client, Command command, int64_t call, int64_t ret,
                 Response response = Response::None()) {
  Operation op;
  op.client_id = client;
  op.command = std::move(command);
  op.call_time = call;
  op.return_time = ret;
  op.response = std::move(response);
  return op;
}

Operation Put(uint64_t client, const std::string& key, const std::string& value, int64_t call,
              int64_t ret) {
  return MakeOp(client, Command::Put(key, value), call, ret);
}

Operation Del(uint64_t client, const std::string& key, int64_t call, int64_t ret) {
  return MakeOp(client, Command::Delete(key), call, ret);
}

Operation Get(uint64_t client, const std::string& key, std::optional<std::string> read,
              int64_t call, int64_t ret) {
  return MakeOp(client, Command::Get(key), call, ret, Response::Read(std::move(read)));
}

Operation Cas(uint64_t client, const std::string& key, std::optional<std::string> expected,
              const std::string& value, bool swapped, int64_t call, int64_t ret) {
  return MakeOp(client, Command::Cas(key, std::move(expected), value), call, ret,
                Response::Swapped(swapped));
}

Operation Unknown(Operation op) {
  op.outcome = Outcome::kUnknown;
  op.return_time = kNeverReturned;
  return op;
}

Operation Failed(Operation op) {
  op.outcome = Outcome::kFailed;
  return op;
}

void ExpectLinearizable(const std::vector<Operation>& history) {
  const CheckResult result = Check(history);
  EXPECT_EQ(result.verdict, Verdict::kLinearizable) << result.explanation;
  EXPECT_TRUE(result.explanation.empty()) << result.explanation;
}

// Returns the explanation so that tests can look into it.
std::string ExpectViolation(const std::vector<Operation>& history) {
  const CheckResult result = Check(history);
  EXPECT_EQ(result.verdict, Verdict::kViolation) << result.explanation;
  EXPECT_FALSE(result.explanation.empty());
  return result.explanation;
}

// ---------------------------------------------------------------------------
// Known linearizable histories.

TEST(LincheckLinearizable, EmptyHistory) { ExpectLinearizable({}); }

TEST(LincheckLinearizable, Sequential) {
  ExpectLinearizable({
      Get(1, "x", std::nullopt, 0, 1),
      Put(1, "x", "a", 2, 3),
      Get(2, "x", "a", 4, 5),
      Put(2, "x", "b", 6, 7),
      Get(1, "x", "b", 8, 9),
      Del(1, "x", 10, 11),
      Get(2, "x", std::nullopt, 12, 13),
  });
}

TEST(LincheckLinearizable, InputOrderDoesNotMatter) {
  ExpectLinearizable({
      Get(2, "x", "b", 8, 9),
      Put(2, "x", "b", 6, 7),
      Get(1, "x", "a", 4, 5),
      Put(1, "x", "a", 2, 3),
  });
}

TEST(LincheckLinearizable, ConcurrentWritesReadsSeeEitherOrder) {
  // Both writes overlap the first two reads, so either order of the writes
  // is allowed; the reads pick one, and the last read must agree with it.
  for (const auto& [first, second] : {std::pair{"a", "b"}, std::pair{"b", "a"}}) {
    ExpectLinearizable({
        Put(1, "x", "a", 0, 10),
        Put(2, "x", "b", 0, 10),
        Get(3, "x", first, 1, 2),
        Get(3, "x", second, 3, 4),
        Get(4, "x", second, 11, 12),
    });
  }
}

TEST(LincheckLinearizable, ReadConcurrentWithWriteSeesOldOrNew) {
  ExpectLinearizable({
      Put(1, "x", "a", 0, 1),
      Put(1, "x", "b", 2, 10),
      Get(2, "x", "a", 3, 4),
      Get(3, "x", "b", 3, 4),
  });
}

TEST(LincheckLinearizable, EqualTimesCountAsConcurrent) {
  // The read returns at 5 and the write is called at 5: they overlap, so the
  // read may come after the write.
  ExpectLinearizable({
      Put(1, "x", "a", 5, 6),
      Get(2, "x", "a", 0, 5),
  });
}

TEST(LincheckLinearizable, CasChain) {
  ExpectLinearizable({
      Cas(1, "x", std::nullopt, "0", true, 0, 1),
      Cas(2, "x", "0", "1", true, 2, 3),
      Cas(1, "x", "0", "5", false, 4, 5),
      Cas(2, "x", "1", "2", true, 6, 7),
      Get(3, "x", "2", 8, 9),
  });
}

TEST(LincheckLinearizable, ConcurrentCasOnlyOneWins) {
  ExpectLinearizable({
      Put(1, "x", "0", 0, 1),
      Cas(2, "x", "0", "a", false, 2, 10),
      Cas(3, "x", "0", "b", true, 2, 10),
      Cas(4, "x", "0", "c", false, 2, 10),
      Get(1, "x", "b", 11, 12),
  });
}

TEST(LincheckLinearizable, UnknownWriteAppliedLate) {
  // The unknown put of "1" is called first but takes effect after the
  // acknowledged put of "2" and after a read of "2".
  ExpectLinearizable({
      Unknown(Put(1, "x", "1", 0, 0)),
      Put(2, "x", "2", 1, 2),
      Get(3, "x", "2", 3, 4),
      Get(3, "x", "1", 100, 101),
      Get(3, "x", "1", 102, 103),
  });
}

TEST(LincheckLinearizable, UnknownWriteNeverApplied) {
  ExpectLinearizable({
      Unknown(Put(1, "x", "1", 0, 0)),
      Get(2, "x", std::nullopt, 10, 11),
      Get(2, "x", std::nullopt, 20, 21),
  });
}

TEST(LincheckLinearizable, OnlyUnknownWrites) {
  // Every operation is dropped before the search; the key is still reported.
  const CheckResult result = Check({Unknown(Put(1, "x", "1", 0, 0)), Unknown(Del(2, "x", 1, 0))});
  EXPECT_EQ(result.verdict, Verdict::kLinearizable) << result.explanation;
  ASSERT_EQ(result.keys.size(), 1u);
  EXPECT_EQ(result.keys[0].key, "x");
}

TEST(LincheckLinearizable, UnknownCasAppliedOrNot) {
  ExpectLinearizable({
      Put(1, "x", "a", 0, 1),
      Unknown(Cas(2, "x", "a", "b", false, 2, 0)),
      Get(3, "x", "a", 5, 6),
      Get(3, "x", "b", 7, 8),
  });
  ExpectLinearizable({
      Put(1, "x", "a", 0, 1),
      Unknown(Cas(2, "x", "a", "b", false, 2, 0)),
      Get(3, "x", "a", 5, 6),
  });
}

TEST(LincheckLinearizable, FailedOperationsAreIgnored) {
  ExpectLinearizable({
      Failed(Put(1, "x", "1", 0, 1)),
      Get(2, "x", std::nullopt, 2, 3),
      // A failed read's response is garbage and must not be checked.
      Failed(Get(2, "x", "garbage", 4, 5)),
  });
}

TEST(LincheckLinearizable, UnknownReadIsIgnored) {
  ExpectLinearizable({
      Put(1, "x", "1", 0, 1),
      Unknown(Get(2, "x", "never-written", 2, 3)),
  });
}

// ---------------------------------------------------------------------------
// Known non-linearizable histories.

TEST(LincheckViolation, StaleReadAfterCompletedWrite) {
  const std::string why = ExpectViolation({
      Put(1, "x", "1", 0, 1),
      Put(1, "x", "2", 2, 3),
      Get(2, "x", "1", 4, 5),
  });
  EXPECT_NE(why.find("key \"x\""), std::string::npos) << why;
  EXPECT_NE(why.find("#2 client 2 get(\"x\") -> \"1\""), std::string::npos) << why;
  EXPECT_NE(why.find("reads \"1\", but the value is \"2\""), std::string::npos) << why;
}

TEST(LincheckViolation, ReadOfValueNeverWritten) {
  const std::string why = ExpectViolation({
      Put(1, "x", "1", 0, 1),
      Get(2, "x", "ghost", 2, 3),
  });
  EXPECT_NE(why.find("no operation writes"), std::string::npos) << why;
}

TEST(LincheckViolation, ReadBeforeItsWriterWasCalled) {
  // An unknown write may take effect late, never early.
  const std::string why = ExpectViolation({
      Get(1, "x", "1", 0, 1),
      Unknown(Put(2, "x", "1", 5, 0)),
  });
  EXPECT_NE(why.find("invoked after it returned"), std::string::npos) << why;
}

TEST(LincheckViolation, ReadsObserveWritesInOppositeOrders) {
  ExpectViolation({
      Put(1, "x", "a", 0, 100),
      Put(2, "x", "b", 0, 100),
      Get(3, "x", "a", 10, 20),
      Get(3, "x", "b", 30, 40),
      Get(4, "x", "b", 10, 20),
      Get(4, "x", "a", 30, 40),
  });
}

TEST(LincheckViolation, CasSuccessContradictsPriorRead) {
  ExpectViolation({
      Put(1, "x", "a", 0, 1),
      Put(1, "x", "b", 2, 3),
      Get(2, "x", "b", 4, 5),
      Cas(3, "x", "a", "c", true, 6, 7),
  });
}

TEST(LincheckViolation, CasFailureWhenItMustHaveSwapped) {
  ExpectViolation({
      Put(1, "x", "a", 0, 1),
      Cas(2, "x", "a", "b", false, 2, 3),
      Get(1, "x", "a", 4, 5),
  });
}

TEST(LincheckViolation, StaleReadAfterCas) {
  ExpectViolation({
      Put(1, "x", "a", 0, 1),
      Cas(2, "x", "a", "b", true, 2, 3),
      Get(3, "x", "a", 4, 5),
  });
}

TEST(LincheckViolation, LostAcknowledgedWrite) {
  ExpectViolation({
      Put(1, "x", "1", 0, 1),
      Get(2, "x", std::nullopt, 5, 6),
  });
}

TEST(LincheckViolation, ReadSeesDeletedValue) {
  ExpectViolation({
      Put(1, "x", "1", 0, 1),
      Del(1, "x", 2, 3),
      Get(2, "x", "1", 4, 5),
  });
}

TEST(LincheckViolation, FailedWriteCannotExplainRead) {
  const std::string why = ExpectViolation({
      Failed(Put(1, "x", "1", 0, 1)),
      Get(2, "x", "1", 2, 3),
  });
  EXPECT_NE(why.find("no operation writes"), std::string::npos) << why;
}

TEST(LincheckViolation, UnknownWriteTakesEffectAtMostOnce) {
  // "1" may be applied late, but only once: the value cannot return to "2"
  // after it, nor to "1" after "2" again.
  ExpectViolation({
      Unknown(Put(1, "x", "1", 0, 0)),
      Put(2, "x", "2", 1, 2),
      Get(3, "x", "2", 3, 4),
      Get(3, "x", "1", 5, 6),
      Get(3, "x", "2", 7, 8),
  });
}

TEST(LincheckViolation, ExplanationShowsPrefixAndBlockingOperation) {
  const std::string why = ExpectViolation({
      Put(1, "x", "a", 0, 1),
      Get(2, "x", "a", 2, 3),
      Put(1, "x", "b", 4, 5),
      Get(2, "x", "a", 6, 7),
  });
  EXPECT_NE(why.find("places 3 of the 4 operations"), std::string::npos) << why;
  EXPECT_NE(why.find("after it the value is \"b\""), std::string::npos) << why;
  EXPECT_NE(why.find("#2 client 1 put(\"x\", \"b\") ok [4, 5]"), std::string::npos) << why;
  EXPECT_NE(why.find("must take effect before it returns at 7"), std::string::npos) << why;
}

// ---------------------------------------------------------------------------
// Several keys, malformed input, bounds.

TEST(LincheckKeys, OnlyTheViolatingKeyIsReported) {
  const CheckResult result = Check({
      Put(1, "a", "1", 0, 1),
      Put(2, "b", "1", 0, 1),
      Put(3, "c", "1", 0, 1),
      Get(1, "a", "1", 2, 3),
      Put(2, "b", "2", 2, 3),
      Get(3, "c", "1", 2, 3),
      Get(2, "b", "1", 4, 5),  // stale
      Get(1, "a", "1", 4, 5),
  });
  ASSERT_EQ(result.verdict, Verdict::kViolation) << result.explanation;
  ASSERT_EQ(result.keys.size(), 3u);
  EXPECT_EQ(result.keys[0].key, "a");
  EXPECT_EQ(result.keys[0].verdict, Verdict::kLinearizable);
  EXPECT_EQ(result.keys[0].operations, 3u);
  EXPECT_EQ(result.keys[1].key, "b");
  EXPECT_EQ(result.keys[1].verdict, Verdict::kViolation);
  EXPECT_EQ(result.keys[2].verdict, Verdict::kLinearizable);
  EXPECT_NE(result.explanation.find("key \"b\""), std::string::npos);
  EXPECT_EQ(result.explanation.find("key \"a\""), std::string::npos);
}

TEST(LincheckKeys, KeysAreIndependent) {
  // Per key this is fine; the cross-key order would matter only for
  // multi-key transactions, which the model does not have.
  ExpectLinearizable({
      Put(1, "a", "1", 0, 1),
      Get(2, "b", std::nullopt, 2, 3),
      Put(1, "b", "1", 4, 5),
      Get(2, "a", "1", 6, 7),
  });
}

TEST(LincheckInput, ReturnBeforeCallIsInvalid) {
  const CheckResult result = Check({Put(1, "x", "1", 5, 4)});
  EXPECT_EQ(result.verdict, Verdict::kInvalidHistory);
  EXPECT_NE(result.explanation.find("returns before it is called"), std::string::npos)
      << result.explanation;
}

TEST(LincheckInput, UnknownOutcomeIgnoresReturnTime) {
  Operation op = Put(1, "x", "1", 5, 4);
  op.outcome = Outcome::kUnknown;
  ExpectLinearizable({op, Get(2, "x", "1", 6, 7)});
}

TEST(LincheckInput, LongAndBinaryValuesAreShortenedInMessages) {
  const std::string long_value(200, 'v');
  const std::string why = ExpectViolation({
      Put(1, "k\n", long_value, 0, 1),
      Get(2, "k\n", std::nullopt, 2, 3),
  });
  EXPECT_NE(why.find("key \"k\\x0a\""), std::string::npos) << why;
  EXPECT_NE(why.find(std::string(37, 'v') + "...\""), std::string::npos) << why;
  EXPECT_EQ(why.find(std::string(38, 'v')), std::string::npos) << why;
}

// A history whose refutation needs exponentially many states: n concurrent
// puts of distinct values and n concurrent gets, one of each value, after
// which the value is read to change without a write. Every order of the
// concurrent block is explored before the search can give up.
std::vector<Operation> HardHistory(int writes) {
  std::vector<Operation> history;
  for (int i = 0; i < writes; ++i) {
    const std::string value = "v" + std::to_string(i);
    history.push_back(Put(static_cast<uint64_t>(i), "x", value, 0, 100));
    history.push_back(Get(static_cast<uint64_t>(writes + i), "x", value, 0, 100));
  }
  history.push_back(Get(1000, "x", "v0", 200, 201));
  history.push_back(Get(1000, "x", "v1", 202, 203));
  return history;
}

TEST(LincheckBounds, SmallHardHistoryIsDecided) { ExpectViolation(HardHistory(8)); }

TEST(LincheckBounds, StateBoundGivesUnknownNotViolation) {
  CheckOptions options;
  options.max_states_per_key = 1000;
  const CheckResult result = Check(HardHistory(20), options);
  EXPECT_EQ(result.verdict, Verdict::kUnknown) << result.explanation;
  EXPECT_EQ(result.keys.at(0).states_explored, 1000u);
  EXPECT_NE(result.explanation.find("max_states_per_key"), std::string::npos) << result.explanation;
}

TEST(LincheckBounds, TimeBoundGivesUnknownNotViolation) {
  CheckOptions options;
  options.max_states_per_key = UINT64_MAX;
  options.max_duration = std::chrono::milliseconds(1);
  const CheckResult result = Check(HardHistory(24), options);
  EXPECT_EQ(result.verdict, Verdict::kUnknown) << result.explanation;
  EXPECT_NE(result.explanation.find("max_duration"), std::string::npos) << result.explanation;
}

TEST(LincheckBounds, ViolationOnOtherKeyWinsOverUnknown) {
  std::vector<Operation> history = HardHistory(20);
  history.push_back(Put(1, "y", "1", 0, 1));
  history.push_back(Get(1, "y", "2", 2, 3));
  CheckOptions options;
  options.max_states_per_key = 1000;
  const CheckResult result = Check(history, options);
  EXPECT_EQ(result.verdict, Verdict::kViolation) << result.explanation;
  EXPECT_EQ(result.keys.at(0).verdict, Verdict::kUnknown);
  EXPECT_EQ(result.keys.at(1).verdict, Verdict::kViolation);
}

// ---------------------------------------------------------------------------
// Randomized histories from a real sequential store.

using Store = std::map<std::string, std::optional<std::string>>;

// Applies `command` to `store` and returns the store's answer.
Response Apply(const Command& command, Store* store) {
  std::optional<std::string>& slot = (*store)[command.key];
  switch (command.kind) {
    case OpKind::kGet:
      return Response::Read(slot);
    case OpKind::kPut:
      slot = command.value;
      return Response::None();
    case OpKind::kDelete:
      slot.reset();
      return Response::None();
    case OpKind::kCas:
      if (slot != command.expected) return Response::Swapped(false);
      slot = command.value;
      return Response::Swapped(true);
  }
  return Response::None();
}

struct GenConfig {
  int clients = 3;
  int keys = 1;
  int ops = 6;
  int values = 3;
  int failed_percent = 10;
  int unknown_percent = 10;
  // Every write writes a fresh value, as workloads that want reads to name
  // their writer do; most unknown writes are then never observed.
  bool unique_values = false;
};

// With `store`, a CAS often expects the key's current value, so that CAS
// chains happen even with unique values.
Command RandomCommand(std::mt19937_64& rng, const GenConfig& config, const Store* store = nullptr) {
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
  const std::string key = "k" + std::to_string(pick(config.keys));
  const std::string value = config.unique_values ? "u" + std::to_string(rng())
                                                 : "v" + std::to_string(pick(config.values));
  const int dice = pick(100);
  if (dice < 40) return Command::Get(key);
  if (dice < 65) return Command::Put(key, value);
  if (dice < 75) return Command::Delete(key);
  std::optional<std::string> expected;
  const auto current = store == nullptr ? store->end() : store->find(key);
  if (store != nullptr && current != store->end() && pick(2) == 0) {
    expected = current->second;
  } else if (pick(4) != 0) {
    expected = "v" + std::to_string(pick(config.values));
  }
  return Command::Cas(key, expected, value);
}

// Runs clients against one sequential store, each operation taking effect at
// one instant between its call and its return, so the history is
// linearizable by construction. Some operations fail (never applied) and
// some end unknown: applied before the client gives up, applied at any later
// time, or never applied.
std::vector<Operation> GenerateLinearizable(std::mt19937_64& rng, const GenConfig& config) {
  enum class Phase : uint8_t { kIdle, kInvoked, kApplied };
  struct Client {
    Phase phase = Phase::kIdle;
    size_t op = 0;
  };
  std::vector<Client> clients(static_cast<size_t>(config.clients));
  std::vector<Operation> history;
  std::vector<size_t> floating;  // unknown operations that may still apply
  Store store;
  int64_t now = 0;
  auto busy = [&] {
    return std::any_of(clients.begin(), clients.end(),
                       [](const Client& c) { return c.phase != Phase::kIdle; });
  };
  while (static_cast<int>(history.size()) < config.ops || busy()) {
    // Equal times are allowed: they only ever make operations concurrent.
    if (rng() % 4 != 0) ++now;
    if (!floating.empty() && rng() % 6 == 0) {
      const size_t i = rng() % floating.size();
      Apply(history[floating[i]].command, &store);
      floating.erase(floating.begin() + static_cast<std::ptrdiff_t>(i));
    }
    Client& client = clients[rng() % clients.size()];
    const uint64_t client_id = static_cast<uint64_t>(&client - clients.data());
    if (client.phase == Phase::kIdle) {
      if (static_cast<int>(history.size()) >= config.ops) continue;
      history.push_back(MakeOp(client_id, RandomCommand(rng, config, &store), now, now));
      client = {Phase::kInvoked, history.size() - 1};
      continue;
    }
    Operation& op = history[client.op];
    op.return_time = now;
    const int dice = static_cast<int>(rng() % 100);
    if (client.phase == Phase::kInvoked && dice < config.failed_percent) {
      op.outcome = Outcome::kFailed;
    } else if (client.phase == Phase::kInvoked &&
               dice < config.failed_percent + config.unknown_percent) {
      op.outcome = Outcome::kUnknown;
      if (rng() % 2 == 0) floating.push_back(client.op);
    } else if (client.phase == Phase::kInvoked) {
      op.response = Apply(op.command, &store);
      client.phase = Phase::kApplied;
      continue;
    } else if (dice < config.unknown_percent) {
      op.outcome = Outcome::kUnknown;  // applied, but the answer was lost
    }
    client.phase = Phase::kIdle;
  }
  return history;
}

// Changes one result, or drops one operation, so that the history is
// usually no longer linearizable. Returns false if the chosen change does
// not apply to the chosen operation.
bool TryMutate(std::mt19937_64& rng, std::vector<Operation>* history) {
  const size_t index = rng() % history->size();
  Operation& op = (*history)[index];
  const bool known = op.outcome == Outcome::kOk;
  switch (rng() % 5) {
    case 0: {
      if (op.command.kind != OpKind::kGet || !known) return false;
      const int choice = static_cast<int>(rng() % 4);
      std::optional<std::string> read;
      if (choice != 3) read = "v" + std::to_string(choice);
      if (read == op.response.value) return false;
      op.response.value = read;
      return true;
    }
    case 1:
      if (op.command.kind != OpKind::kCas || !known) return false;
      op.response.swapped = !op.response.swapped;
      return true;
    case 2:
      if (op.command.kind == OpKind::kGet || op.outcome == Outcome::kFailed) return false;
      history->erase(history->begin() + static_cast<std::ptrdiff_t>(index));
      return true;
    case 3: {
      // A read sees the value of some write, usually at the wrong time.
      const Operation& writer = (*history)[rng() % history->size()];
      if (op.command.kind != OpKind::kGet || !known) return false;
      if (writer.command.kind != OpKind::kPut && writer.command.kind != OpKind::kCas) return false;
      if (op.response.value == writer.command.value) return false;
      op.response.value = writer.command.value;
      return true;
    }
    default:
      // An unknown write becomes an acknowledged one, whether or not it applied.
      if (op.outcome != Outcome::kUnknown || op.command.kind == OpKind::kGet) return false;
      op.outcome = Outcome::kOk;
      op.return_time = op.call_time + static_cast<int64_t>(rng() % 5);
      return true;
  }
}

// Bounded, since a history may offer no applicable change.
constexpr int kMutationAttempts = 20;

void Mutate(std::mt19937_64& rng, std::vector<Operation>* history) {
  for (int i = 0; i < kMutationAttempts && !history->empty(); ++i) {
    if (TryMutate(rng, history)) return;
  }
}

// A brute-force reference: tries every order of the whole multi-key history
// that respects real time. Exponential; for a handful of operations only.
class BruteForce {
 public:
  explicit BruteForce(const std::vector<Operation>& history) {
    for (const Operation& op : history) {
      if (op.outcome != Outcome::kFailed) ops_.push_back(op);
    }
    placed_.assign(ops_.size(), false);
  }

  bool Linearizable() { return Search(); }

 private:
  bool Known(size_t i) const { return ops_[i].outcome != Outcome::kUnknown; }

  bool CanGoNext(size_t i) const {
    for (size_t j = 0; j < ops_.size(); ++j) {
      if (!placed_[j] && j != i && Known(j) && ops_[j].return_time < ops_[i].call_time) {
        return false;
      }
    }
    return true;
  }

  // Unknown operations need not be placed at all.
  bool Search() {
    bool done = true;
    for (size_t i = 0; i < ops_.size(); ++i) done = done && (placed_[i] || !Known(i));
    if (done) return true;
    for (size_t i = 0; i < ops_.size(); ++i) {
      if (placed_[i] || !CanGoNext(i)) continue;
      const Store saved = store_;
      const Response answer = Apply(ops_[i].command, &store_);
      if (Known(i) && !SameAnswer(ops_[i], answer)) {
        store_ = saved;
        continue;
      }
      placed_[i] = true;
      const bool found = Search();
      placed_[i] = false;
      store_ = saved;
      if (found) return true;
    }
    return false;
  }

  static bool SameAnswer(const Operation& op, const Response& answer) {
    if (op.command.kind == OpKind::kGet) return op.response.value == answer.value;
    if (op.command.kind == OpKind::kCas) return op.response.swapped == answer.swapped;
    return true;
  }

  std::vector<Operation> ops_;
  std::vector<bool> placed_;
  Store store_;
};

std::string Dump(const std::vector<Operation>& history) {
  std::string out;
  for (size_t i = 0; i < history.size(); ++i) {
    out += "#" + std::to_string(i) + " " + Describe(history[i]) + "\n";
  }
  return out;
}

TEST(LincheckRandom, GeneratedHistoriesAreLinearizable) {
  std::mt19937_64 rng(20261123);
  for (int round = 0; round < 300; ++round) {
    GenConfig config;
    config.clients = 2 + static_cast<int>(rng() % 6);
    config.keys = 1 + static_cast<int>(rng() % 3);
    config.ops = 10 + static_cast<int>(rng() % 200);
    config.values = 2 + static_cast<int>(rng() % 4);
    const std::vector<Operation> history = GenerateLinearizable(rng, config);
    const CheckResult result = Check(history);
    ASSERT_EQ(result.verdict, Verdict::kLinearizable) << "round " << round << "\n"
                                                      << result.explanation << Dump(history);
  }
}

// Small histories, generated and mutated, against the brute-force reference:
// this covers the search's answers on violations as well as on successes.
// Returns how many mutated histories were violations.
int ExpectAgreementWithBruteForce(uint64_t seed, int rounds, bool unique_values) {
  std::mt19937_64 rng(seed);
  int violations = 0;
  for (int round = 0; round < rounds; ++round) {
    GenConfig config;
    config.unique_values = unique_values;
    config.clients = 2 + static_cast<int>(rng() % 3);
    config.keys = 1 + static_cast<int>(rng() % 2);
    config.ops = 2 + static_cast<int>(rng() % 7);
    config.unknown_percent = 20;
    std::vector<Operation> history = GenerateLinearizable(rng, config);
    EXPECT_TRUE(BruteForce(history).Linearizable()) << Dump(history);
    EXPECT_EQ(Check(history).verdict, Verdict::kLinearizable) << Dump(history);
    Mutate(rng, &history);
    if (history.empty()) continue;
    const bool expected = BruteForce(history).Linearizable();
    const CheckResult result = Check(history);
    EXPECT_EQ(result.verdict, expected ? Verdict::kLinearizable : Verdict::kViolation)
        << "round " << round << "\n"
        << result.explanation << Dump(history);
    if (::testing::Test::HasFailure()) return violations;
    violations += expected ? 0 : 1;
  }
  std::printf("brute-force agreement: %d violations among %d mutated histories\n", violations,
              rounds);
  return violations;
}

TEST(LincheckRandom, AgreesWithBruteForceOnSmallHistories) {
  constexpr int kRounds = 20'000;
  // The mutations must actually produce violations, or this test shows little.
  EXPECT_GT(ExpectAgreementWithBruteForce(7, kRounds, false), kRounds / 5);
}

// Unique values leave many unknown writes unobserved, which exercises the
// search's rules for skipping them.
TEST(LincheckRandom, AgreesWithBruteForceWithUniqueValues) {
  constexpr int kRounds = 20'000;
  EXPECT_GT(ExpectAgreementWithBruteForce(8, kRounds, true), kRounds / 10);
}

TEST(LincheckRandom, MutatedLargeHistoriesTerminate) {
  // Mutated large histories are usually violations; nothing is asserted on
  // their verdict except that it is decided within the default bounds.
  std::mt19937_64 rng(99);
  for (int round = 0; round < 50; ++round) {
    GenConfig config;
    config.clients = 5;
    config.keys = 3;
    config.ops = 300;
    std::vector<Operation> history = GenerateLinearizable(rng, config);
    Mutate(rng, &history);
    const CheckResult result = Check(history);
    EXPECT_NE(result.verdict, Verdict::kInvalidHistory);
    EXPECT_NE(result.verdict, Verdict::kUnknown) << result.explanation;
  }
}

// Checks a generated history and prints how long it took. Printed, never
// asserted: timing depends on the machine.
void CheckAndReportTime(uint64_t seed, const GenConfig& config) {
  std::mt19937_64 rng(seed);
  const std::vector<Operation> history = GenerateLinearizable(rng, config);
  const auto start = std::chrono::steady_clock::now();
  const CheckResult result = Check(history);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(result.verdict, Verdict::kLinearizable) << result.explanation;
  std::printf("checked %zu operations, %d keys, %d clients: %.1f ms, %llu states\n", history.size(),
              config.keys, config.clients,
              std::chrono::duration<double, std::milli>(elapsed).count(),
              static_cast<unsigned long long>(result.states_explored));
}

TEST(LincheckPerformance, TenThousandOperations) {
  GenConfig config;
  config.clients = 8;
  config.keys = 100;
  config.ops = 10'000;
  config.values = 5;
  CheckAndReportTime(1, config);
}

TEST(LincheckPerformance, OneHotKeyWithManyUnknownWrites) {
  GenConfig config;
  config.clients = 8;
  config.keys = 1;
  config.ops = 2'000;
  config.unknown_percent = 20;
  config.unique_values = true;
  CheckAndReportTime(3, config);
}

TEST(LincheckPerformance, OneHotKey) {
  GenConfig config;
  config.clients = 8;
  config.keys = 1;
  config.ops = 5'000;
  config.values = 5;
  CheckAndReportTime(2, config);
}

// ---------------------------------------------------------------------------
// The recorder.

TEST(LincheckHistory, StampsEventsInOrder) {
  History history;
  const uint64_t put = history.Invoke(1, Command::Put("x", "1"));
  const uint64_t get = history.Invoke(2, Command::Get("x"));
  history.Complete(put, Outcome::kOk);
  history.Complete(get, Outcome::kOk, Response::Read("1"));
  const std::vector<Operation> ops = history.Operations();
  ASSERT_EQ(ops.size(), 2u);
  EXPECT_EQ(ops[0].call_time, 0);
  EXPECT_EQ(ops[1].call_time, 1);
  EXPECT_EQ(ops[0].return_time, 2);
  EXPECT_EQ(ops[1].return_time, 3);
  EXPECT_EQ(ops[1].response.value, "1");
  ExpectLinearizable(ops);
}

TEST(LincheckHistory, PendingOperationsAreUnknown) {
  History history;
  history.Invoke(1, Command::Put("x", "1"));
  const uint64_t get = history.Invoke(2, Command::Get("x"));
  history.Complete(get, Outcome::kOk, Response::Read("1"));
  const std::vector<Operation> ops = history.Operations();
  EXPECT_EQ(ops[0].outcome, Outcome::kUnknown);
  EXPECT_EQ(history.size(), 2u);
  ExpectLinearizable(ops);
}

TEST(LincheckHistory, UsesTheSuppliedClock) {
  int64_t virtual_time = 100;
  History history([&virtual_time] { return virtual_time; });
  const uint64_t id = history.Invoke(1, Command::Put("x", "1"));
  virtual_time = 105;
  history.Complete(id, Outcome::kOk);
  const std::vector<Operation> ops = history.Operations();
  EXPECT_EQ(ops[0].call_time, 100);
  EXPECT_EQ(ops[0].return_time, 105);
}

TEST(LincheckHistory, DetectsALostWrite) {
  History history;
  const uint64_t put = history.Invoke(1, Command::Put("x", "1"));
  history.Complete(put, Outcome::kOk);
  const uint64_t get = history.Invoke(2, Command::Get("x"));
  history.Complete(get, Outcome::kOk, Response::Read(std::nullopt));
  ExpectViolation(history.Operations());
}

TEST(LincheckHistoryDeathTest, CompletingTwiceStops) {
  History history;
  const uint64_t id = history.Invoke(1, Command::Get("x"));
  history.Complete(id, Outcome::kOk);
  EXPECT_DEATH(history.Complete(id, Outcome::kOk), "completed twice");
  EXPECT_DEATH(history.Complete(id + 1, Outcome::kOk), "unknown operation id");
}

TEST(LincheckHistory, ConcurrentClientsOnALockedStore) {
  constexpr int kThreads = 8;
  constexpr int kOpsPerThread = 500;
  History history;
  std::mutex store_mu;
  Store store;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(static_cast<uint64_t>(t));
      GenConfig config;
      config.keys = 10;
      for (int i = 0; i < kOpsPerThread; ++i) {
        Command command = RandomCommand(rng, config);
        const uint64_t id = history.Invoke(static_cast<uint64_t>(t), command);
        Response response;
        {
          std::lock_guard<std::mutex> lock(store_mu);
          response = Apply(command, &store);
        }
        history.Complete(id, Outcome::kOk, response);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_EQ(history.size(), static_cast<size_t>(kThreads * kOpsPerThread));
  ExpectLinearizable(history.Operations());
}

}  // namespace
}  // namespace flotilla::lincheck
