// SIGKILL crash test: a child process saves workload batches into a RocksDB
// LogDB and is killed with SIGKILL at random moments, FLOTILLA_CRASH_KILLS
// times (default 200). After each kill the parent reopens the database and
// checks that every save the child reported as returned is fully present, no
// save is partly visible, and the hard state never moved backwards.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>

#include "logdb/rocks_logdb.h"
#include "tests/logdb/test_util.h"
#include "tests/logdb/workload.h"

namespace flotilla::logdb {
namespace {

using testing::Workload;

struct Child {
  pid_t pid = -1;
  int ack_fd = -1;
};

Child Spawn(const std::string& dir) {
  int fds[2];
  if (::pipe(fds) != 0) std::abort();
  const pid_t pid = ::fork();
  if (pid < 0) std::abort();
  if (pid == 0) {
    ::close(fds[0]);
    const std::string fd = std::to_string(fds[1]);
    ::execl(FLOTILLA_CRASH_CHILD, FLOTILLA_CRASH_CHILD, dir.c_str(), fd.c_str(), nullptr);
    ::_exit(127);
  }
  ::close(fds[1]);
  return {pid, fds[0]};
}

// Reads acks until `wait` has passed since the child reported it was ready
// (or since the start, when !after_ready), then kills the child and drains
// the rest of the pipe. Returns the highest save number acknowledged, or 0.
// Sets *exited_early when the child died on its own.
uint64_t RunAndKill(const Child& c, std::chrono::microseconds wait, bool after_ready,
                    bool* exited_early) {
  uint64_t highest = 0;
  bool ready = false;
  // A bound on start-up, so that a wedged child fails the test instead of hanging it.
  constexpr std::chrono::seconds kMaxStartup(20);
  auto deadline = std::chrono::steady_clock::now() + (after_ready ? kMaxStartup : wait);
  auto drain = [&](int timeout_ms) {
    pollfd p{c.ack_fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return true;  // nothing yet; still alive
    uint64_t buf[256];
    const ssize_t n = ::read(c.ack_fd, buf, sizeof(buf));
    if (n <= 0) return false;  // EOF: the child is gone
    for (ssize_t i = 0; i < n / 8; ++i) {
      if (buf[i] == 0 && after_ready && !ready) {
        ready = true;
        deadline = std::chrono::steady_clock::now() + wait;
      }
      highest = std::max(highest, buf[i]);
    }
    return true;
  };
  bool alive = true;
  while (alive) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    alive = drain(static_cast<int>(left.count()));
  }
  if (!alive) {
    int status = 0;
    ::waitpid(c.pid, &status, 0);
    ::close(c.ack_fd);
    *exited_early = true;
    return highest;
  }
  ::kill(c.pid, SIGKILL);
  int status = 0;
  ::waitpid(c.pid, &status, 0);
  pollfd p{c.ack_fd, POLLIN, 0};
  uint64_t buf[256];
  ssize_t n = 0;
  while (::poll(&p, 1, 0) > 0 && (n = ::read(c.ack_fd, buf, sizeof(buf))) > 0) {
    for (ssize_t i = 0; i < n / 8; ++i) highest = std::max(highest, buf[i]);
  }
  ::close(c.ack_fd);
  *exited_early = !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  return highest;
}

int KillCount() {
  const char* env = std::getenv("FLOTILLA_CRASH_KILLS");
  return env != nullptr ? std::atoi(env) : 200;
}

TEST(CrashTest, SigkillNeverLosesOrTearsASave) {
  testing::TempDir dir;
  const std::string db_dir = dir.path() + "/db";
  const uint64_t seed = std::random_device()();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int kills = KillCount();
  uint64_t last_seen = 0;
  uint64_t total_acked = 0;
  for (int round = 0; round < kills; ++round) {
    // One kill in four lands anywhere from process start through RocksDB's
    // recovery; the others up to 30 ms into the saves.
    const bool after_ready = std::uniform_int_distribution<int>(0, 3)(rng) != 0;
    const std::chrono::microseconds wait(
        std::uniform_int_distribution<int>(0, after_ready ? 30000 : 40000)(rng));
    Child child = Spawn(db_dir);
    bool exited_early = false;
    const uint64_t acked = RunAndKill(child, wait, after_ready, &exited_early);
    ASSERT_FALSE(exited_early) << "round " << round << ": the child failed (see its stderr)";
    RocksOptions o;
    o.dir = db_dir;
    auto db = OpenRocksLogDB(o);
    ASSERT_TRUE(db.ok()) << "round " << round << ": " << db.status().ToString();
    auto k = Workload::Verify(db->get());
    ASSERT_TRUE(k.ok()) << "round " << round << ": torn or damaged: " << k.status().ToString();
    // Every save that returned is there, and at most the one in flight beyond it.
    if (acked != 0) {
      ASSERT_GE(k.value(), acked) << "round " << round << ": an acknowledged save was lost";
      ASSERT_LE(k.value(), acked + 1) << "round " << round;
    }
    ASSERT_GE(k.value(), last_seen) << "round " << round << ": the hard state moved backwards";
    total_acked += acked > last_seen ? acked - last_seen : 0;
    last_seen = k.value();
  }
  // The kills must have hit real work, not only process start-up.
  EXPECT_GT(total_acked, 0u);
  std::printf("crash test: %d kills, %llu saves acknowledged, final save %llu, seed %llu\n", kills,
              static_cast<unsigned long long>(total_acked),
              static_cast<unsigned long long>(last_seen), static_cast<unsigned long long>(seed));
}

}  // namespace
}  // namespace flotilla::logdb
