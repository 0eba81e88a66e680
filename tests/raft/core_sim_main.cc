// raft_core_sim: runs the randomized simulation of the core over many seeds.
//
//   raft_core_sim --seeds N [--start S] [--steps K]   prints seeds=N failures=F
//   raft_core_sim --seed S [--verbose]                replays one seed exactly
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tests/raft/core_sim.h"

int main(int argc, char** argv) {
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
