// raft_core_sim: runs the randomized simulation of the core over many seeds.
//
//   raft_core_sim --seeds N [--start S] [--steps K]   prints seeds=N failures=F
//   raft_core_sim --seed S [--verbose]                replays one seed exactly
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tests/raft/core_sim.h"

namespace {

// The seed being run, for the abort handler: a broken invariant inside the
// core aborts the process, and the seed must still be reported.
volatile uint64_t g_seed = 0;
char g_replay[256];

void OnAbort(int) {
  char buf[400];
  const int n = std::snprintf(
      buf, sizeof(buf),
      "FAIL seed=%llu: the core aborted on a broken invariant\n  replay: %s "
      "--seed %llu --verbose\n",
      static_cast<unsigned long long>(g_seed), g_replay, static_cast<unsigned long long>(g_seed));
  if (n > 0) {
    ssize_t ignored = write(STDOUT_FILENO, buf, static_cast<size_t>(n));
    (void)ignored;
  }
  std::_Exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  std::snprintf(g_replay, sizeof(g_replay), "%s", argv[0]);
  std::signal(SIGABRT, OnAbort);
  uint64_t seeds = 2000;
  uint64_t start = 1;
  bool single = false;
  flotilla::raft::testing::CoreSimOptions opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> uint64_t {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return std::strtoull(argv[++i], nullptr, 10);
    };
    if (a == "--seeds") {
      seeds = next();
    } else if (a == "--start") {
      start = next();
    } else if (a == "--seed") {
      start = next();
      seeds = 1;
      single = true;
    } else if (a == "--steps") {
      opt.steps = next();
    } else if (a == "--verbose") {
      opt.verbose = true;
    } else {
      std::fprintf(stderr, "usage: %s [--seeds N] [--start S] [--seed S] [--steps K] [--verbose]\n",
                   argv[0]);
      return 2;
    }
  }
  uint64_t failures = 0;
  for (uint64_t s = start; s < start + seeds; ++s) {
    g_seed = s;
    const auto r = flotilla::raft::testing::RunCoreSim(s, opt);
    if (!r.ok) {
      ++failures;
      std::printf("FAIL seed=%llu: %s\n  replay: %s --seed %llu --steps %llu --verbose\n",
                  static_cast<unsigned long long>(s), r.failure.c_str(), argv[0],
                  static_cast<unsigned long long>(s), static_cast<unsigned long long>(opt.steps));
    } else if (single) {
      std::printf("seed=%llu ok steps=%llu committed=%llu\n", static_cast<unsigned long long>(s),
                  static_cast<unsigned long long>(r.steps),
                  static_cast<unsigned long long>(r.committed));
    }
  }
  std::printf("seeds=%llu failures=%llu\n", static_cast<unsigned long long>(seeds),
              static_cast<unsigned long long>(failures));
  return failures == 0 ? 0 : 1;
}
