// Starting and stopping replicas while clients are busy: concurrent starts of
// one shard, and completion callbacks that call back into the NodeHost from
// every path that completes a request (normal completion, expiry, a failed
// state machine, StopReplica and Close). One NodeHost with the in-memory
// LogDB and the in-process transport, driven on this thread.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <thread>

#include "engine/node_host_impl.h"
#include "logdb/memory_logdb.h"
#include "tests/engine/kv_state_machine.h"
#include "transport/inproc_transport.h"

namespace flotilla::engine {
namespace {

using namespace std::chrono_literals;

constexpr auto kDeadlockBound = 20s;

// A state machine whose Update fails on the command "fail".
class FailingStateMachine final : public StateMachine {
 public:
  Status Update(std::span<SMEntry> entries) override {
    for (const SMEntry& e : entries) {
      if (e.cmd == "fail") return Status::IOError("planted state machine failure");
    }
    return kv_.Update(entries);
  }
  Result<std::string> Lookup(std::string_view q) override { return kv_.Lookup(q); }
  Status SaveSnapshot(SnapshotWriter* w) override { return kv_.SaveSnapshot(w); }
  Status RecoverFromSnapshot(SnapshotReader* r) override { return kv_.RecoverFromSnapshot(r); }

 private:
  testing::KvStateMachine kv_;
};

// One NodeHost (no threads) that shard 1 runs on alone, so it elects itself.
class OneHost {
 public:
  OneHost() : root_(Root()) {
    NodeHostConfig c;
    c.data_dir = root_;
    c.raft_address = "host1";
    c.step_workers = 1;
    c.apply_workers = 1;
    NodeHostDeps d;
    d.logdb = logdb::NewMemoryLogDB();
    d.start_threads = false;
    d.seed = 7;
    d.make_transport = [this](transport::Registry* reg, transport::Handler* h) {
      transport::TransportConfig tc;
      tc.listen_address = "host1";
      tc.snapshot_dir = root_ + "/snapshots-in";
      return std::make_unique<transport::InProcTransport>(&net_, tc, reg, h);
    };
    nh_ = std::make_unique<NodeHostImpl>(c, std::move(d));
    EXPECT_TRUE(nh_->Init().ok());
  }
  ~OneHost() {
    nh_->Close();
    std::filesystem::remove_all(root_);
  }
  NodeHostImpl& nh() { return *nh_; }
  static ShardConfig Shard() {
    ShardConfig sc;
    sc.shard_id = 1;
    sc.replica_id = 1;
    return sc;
  }
  static Members Self() { return {{1, "host1"}}; }
  Status Start(StateMachineFactory f = [](uint64_t, uint64_t) {
    return std::make_unique<testing::KvStateMachine>();
  }) {
    return nh_->StartReplica(Shard(), Self(), StartMode::kNewShard, std::move(f));
  }
  // One tick, one pass and one apply round.
  void Step() {
    nh_->AdvanceTick();
    nh_->RunOnce();
    net_.DeliverAll(rng_);
  }
  bool ElectLeader() {
    for (int i = 0; i < 500; ++i) {
      Result<ReplicaInfo> info = nh_->GetReplicaInfo(1);
      if (info.ok() && info->leader_id == 1) return true;
      Step();
    }
    return false;
  }

 private:
  static std::string Root() {
    std::random_device rd;
    return (std::filesystem::temp_directory_path() / ("flotilla-lifecycle-" + std::to_string(rd())))
        .string();
  }
  std::string root_;
  transport::InProcNetwork net_;
  std::mt19937_64 rng_{7};
  std::unique_ptr<NodeHostImpl> nh_;
};

// Runs `fn` on a thread of its own and waits at most kDeadlockBound. A call
// that does not return is a deadlock: the test fails at once and the process
// ends, since the stuck thread holds engine locks that no teardown can take.
void MustReturn(const char* what, std::function<void()> fn) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> f = done->get_future();
  std::thread([fn = std::move(fn), done] {
    fn();
    done->set_value();
  }).detach();
  if (f.wait_for(kDeadlockBound) == std::future_status::ready) return;
  std::fprintf(stderr, "FAILED: %s did not return within %lld s: deadlock\n", what,
               static_cast<long long>(kDeadlockBound.count()));
  std::fflush(stderr);
  std::_Exit(1);
}

// What a callback saw and did.
struct CallbackLog {
  std::atomic<int> calls{0};
  std::atomic<int> code{-1};
  std::atomic<bool> proposed_again{false};
};

// Registers a callback on `h` that calls back into `nh`: a proposal, a read
// and a look-up of shard 1, as a client retrying from its callback would.
void CallBackIn(NodeHostImpl& nh, const RequestHandle& h, CallbackLog* log) {
  h.OnComplete([&nh, log](const RequestResult& r) {
    log->code.store(static_cast<int>(r.code));
    Result<RequestHandle> again = nh.Propose(1, "again=1", 1s);
    log->proposed_again.store(again.ok());
    (void)nh.Read(1, "again", 1s);  // its result is not needed, only its return
    (void)nh.GetReplicaInfo(1);     // likewise
    (void)nh.GetMetrics();          // likewise
    log->calls.fetch_add(1);
  });
}

TEST(StartRace, ConcurrentStartsOfOneShardStartItOnce) {
  OneHost host;
  constexpr int kThreads = 8;
  std::mutex mu;
  std::condition_variable cv;
  int in_factory = 0;
  int returned = 0;
  // Every start that gets as far as building the state machine waits there
  // until all starts did, or until every other start returned: with the
  // shard reserved up front only one gets there, without it all of them do,
  // whatever the scheduling.
  auto factory = [&](uint64_t, uint64_t) {
    std::unique_lock<std::mutex> l(mu);
    ++in_factory;
    cv.notify_all();
    cv.wait_for(l, kDeadlockBound,
                [&] { return in_factory == kThreads || returned == kThreads - 1; });
    return std::make_unique<testing::KvStateMachine>();
  };
  std::vector<Status> results(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      results[static_cast<size_t>(i)] = host.Start(factory);
      std::lock_guard<std::mutex> l(mu);
      ++returned;
      cv.notify_all();
    });
  }
  for (auto& t : threads) t.join();
  int ok = 0;
  for (const Status& s : results) {
    if (s.ok()) {
      ++ok;
    } else {
      EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.ToString();
    }
  }
  EXPECT_EQ(ok, 1) << "one shard was started " << ok << " times";
  EXPECT_EQ(in_factory, 1) << "a start that lost the race built a state machine";
  // Exactly one replica is stepped by the worker: a second one would be a
  // replica no map knows of, never stopped and sharing the shard's LogDB rows.
  const uint64_t before = host.nh().GetMetrics().replica_steps;
  host.Step();
  EXPECT_EQ(host.nh().GetMetrics().replica_steps - before, 1u);
  EXPECT_EQ(host.nh().GetMetrics().shards, 1u);
}

TEST(StartRace, AFailedStartReleasesTheShard) {
  OneHost host;
  // Refused after the shard was reserved: the members lack this replica.
  EXPECT_EQ(host.nh()
                .StartReplica(
                    OneHost::Shard(), {{2, "host2"}}, StartMode::kNewShard,
                    [](uint64_t, uint64_t) { return std::make_unique<testing::KvStateMachine>(); })
                .code(),
            StatusCode::kInvalidArgument);
  ASSERT_TRUE(host.Start().ok());
  EXPECT_EQ(host.Start().code(), StatusCode::kAlreadyExists);
  ASSERT_TRUE(host.nh().StopReplica(1).ok());
  EXPECT_TRUE(host.Start().ok()) << "a stopped shard can be started again";
  host.nh().Close();
  EXPECT_EQ(host.Start().code(), StatusCode::kTerminated);
}

std::string Value(const Result<std::string>& r) { return r.ok() ? *r : r.status().ToString(); }

// RequestHandle::Cancel (issue 18): a proposal cancelled before the step
// worker took it completes kAborted at once and is never applied; one the
// worker handed to Raft cannot be cancelled any more and is applied.
TEST(Cancel, AProposalCancelledBeforeItIsProposedIsNeverApplied) {
  OneHost host;
  ASSERT_TRUE(host.Start().ok());
  ASSERT_TRUE(host.ElectLeader());
  Result<RequestHandle> cancelled = host.nh().Propose(1, "c=cancelled", 10s);
  Result<RequestHandle> kept = host.nh().Propose(1, "k=kept", 10s);
  ASSERT_TRUE(cancelled.ok() && kept.ok());
  EXPECT_TRUE(cancelled->Cancel());
  EXPECT_TRUE(cancelled->Done());
  const RequestResult aborted = cancelled->Wait();
  EXPECT_EQ(aborted.code, RequestCode::kAborted);
  EXPECT_FALSE(cancelled->Cancel()) << "a second cancel finds it completed";
  for (int i = 0; i < 50 && !kept->Done(); ++i) host.Step();
  ASSERT_TRUE(kept->Wait().ok());
  EXPECT_FALSE(kept->Cancel()) << "completed: too late";
  EXPECT_EQ(Value(host.nh().StaleRead(1, "k")), "kept");
  EXPECT_EQ(Value(host.nh().StaleRead(1, "c")), "") << "the cancelled write was applied";

  // Handed to Raft by one pass: too late to cancel, and it applies.
  Result<RequestHandle> late = host.nh().Propose(1, "l=late", 10s);
  ASSERT_TRUE(late.ok());
  host.nh().RunOnce();
  EXPECT_FALSE(late->Cancel());
  for (int i = 0; i < 50 && !late->Done(); ++i) host.Step();
  EXPECT_TRUE(late->Wait().ok());
  EXPECT_EQ(Value(host.nh().StaleRead(1, "l")), "late");
  // Membership changes cannot be cancelled.
  Result<RequestHandle> add =
      host.nh().AddReplica(1, 2, "host2", NodeHost::MemberKind::kNonVoting, 10s);
  ASSERT_TRUE(add.ok());
  EXPECT_FALSE(add->Cancel());
}

TEST(CallbackLocks, ACallbackOnNormalCompletionCallsBackIn) {
  OneHost host;
  ASSERT_TRUE(host.Start().ok());
  ASSERT_TRUE(host.ElectLeader());
  Result<RequestHandle> h = host.nh().Propose(1, "a=1", 10s);
  ASSERT_TRUE(h.ok());
  CallbackLog log;
  CallBackIn(host.nh(), *h, &log);
  MustReturn("an apply round completing a proposal", [&] {
    for (int i = 0; i < 50 && log.calls.load() == 0; ++i) host.Step();
  });
  EXPECT_EQ(log.calls.load(), 1);
  EXPECT_EQ(log.code.load(), static_cast<int>(RequestCode::kCompleted));
  EXPECT_TRUE(log.proposed_again.load());
}

TEST(CallbackLocks, ACallbackOnExpiryCallsBackIn) {
  OneHost host;
  ASSERT_TRUE(host.Start().ok());
  ASSERT_TRUE(host.ElectLeader());
  Result<RequestHandle> h = host.nh().Propose(1, "a=1", 1ms);
  ASSERT_TRUE(h.ok());
  CallbackLog log;
  CallBackIn(host.nh(), *h, &log);
  std::this_thread::sleep_for(5ms);
  // Enough ticks for a sweep of expired requests in the pass that hands the
  // proposal to the core, before it can be applied.
  for (int i = 0; i < 64; ++i) host.nh().AdvanceTick();
  MustReturn("a pass sweeping an expired proposal", [&] { host.nh().RunOnce(); });
  EXPECT_EQ(log.calls.load(), 1);
  EXPECT_EQ(log.code.load(), static_cast<int>(RequestCode::kTimeout));
  EXPECT_TRUE(log.proposed_again.load());
}

TEST(CallbackLocks, ACallbackOnAFailedStateMachineCallsBackIn) {
  OneHost host;
  ASSERT_TRUE(
      host.Start([](uint64_t, uint64_t) { return std::make_unique<FailingStateMachine>(); }).ok());
  ASSERT_TRUE(host.ElectLeader());
  Result<RequestHandle> h = host.nh().Propose(1, "fail", 10s);
  ASSERT_TRUE(h.ok());
  CallbackLog log;
  CallBackIn(host.nh(), *h, &log);
  MustReturn("an apply round failing its replica", [&] {
    for (int i = 0; i < 50 && log.calls.load() == 0; ++i) host.Step();
  });
  EXPECT_EQ(log.calls.load(), 1);
  EXPECT_EQ(log.code.load(), static_cast<int>(RequestCode::kTerminated));
}

// A replica that failed is never stepped again, so nothing would ever sweep
// or answer a request queued on it after it failed: every request kind must
// be refused or completed at once (before, Read and RequestSnapshot handles
// stayed pending for ever, past their own deadlines).
TEST(CallbackLocks, RequestsOnAFailedReplicaCompleteAtOnce) {
  OneHost host;
  ASSERT_TRUE(
      host.Start([](uint64_t, uint64_t) { return std::make_unique<FailingStateMachine>(); }).ok());
  ASSERT_TRUE(host.ElectLeader());
  Result<RequestHandle> failing = host.nh().Propose(1, "fail", 10s);
  ASSERT_TRUE(failing.ok());
  for (int i = 0; i < 50 && !failing->Done(); ++i) host.Step();
  ASSERT_TRUE(failing->Done());
  ASSERT_EQ(failing->Wait().code, RequestCode::kTerminated);
  const auto answered = [&](const char* what, const Result<RequestHandle>& h) {
    if (!h.ok()) {
      EXPECT_EQ(h.status().code(), StatusCode::kTerminated)
          << what << ": " << h.status().ToString();
      return;
    }
    for (int i = 0; i < 10 && !h->Done(); ++i) host.Step();
    for (int i = 0; i < 64 && !h->Done(); ++i) host.nh().AdvanceTick();
    host.Step();
    ASSERT_TRUE(h->Done()) << what << " on a failed replica never completes";
    EXPECT_EQ(h->Wait().code, RequestCode::kTerminated) << what;
  };
  answered("Propose", host.nh().Propose(1, "a=1", 100ms));
  answered("Read", host.nh().Read(1, "a", 100ms));
  answered("RequestSnapshot", host.nh().RequestSnapshot(1, 100ms));
  answered("AddReplica",
           host.nh().AddReplica(1, 7, "127.0.0.1:1", NodeHost::MemberKind::kVoter, 100ms));
}

TEST(CallbackLocks, ACallbackOnStopReplicaCallsBackIn) {
  OneHost host;
  ASSERT_TRUE(host.Start().ok());
  Result<RequestHandle> h = host.nh().Propose(1, "a=1", 10s);
  ASSERT_TRUE(h.ok());
  CallbackLog log;
  CallBackIn(host.nh(), *h, &log);
  MustReturn("StopReplica", [&] { EXPECT_TRUE(host.nh().StopReplica(1).ok()); });
  EXPECT_EQ(log.calls.load(), 1);
  EXPECT_EQ(log.code.load(), static_cast<int>(RequestCode::kTerminated));
  EXPECT_FALSE(log.proposed_again.load()) << "the shard is stopped";
}

TEST(CallbackLocks, ACallbackOnCloseCallsBackIn) {
  OneHost host;
  ASSERT_TRUE(host.Start().ok());
  Result<RequestHandle> h = host.nh().Propose(1, "a=1", 10s);
  ASSERT_TRUE(h.ok());
  CallbackLog log;
  CallBackIn(host.nh(), *h, &log);
  MustReturn("Close", [&] { host.nh().Close(); });
  EXPECT_EQ(log.calls.load(), 1);
  EXPECT_EQ(log.code.load(), static_cast<int>(RequestCode::kTerminated));
  EXPECT_FALSE(log.proposed_again.load()) << "the NodeHost is closed";
}

}  // namespace
}  // namespace flotilla::engine
