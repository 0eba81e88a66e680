// flotilla_sim: the deterministic simulation of whole NodeHosts over many seeds.
//
//   flotilla_sim --seeds N [--start S]     runs seeds S..S+N-1, prints seeds=N failures=F
//   flotilla_sim --seed S [--verbose]      replays one seed exactly
//   flotilla_sim --seed S --summary        one line of figures for the seed
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "tests/sim/simulator.h"

namespace {

// The seed being run, for the abort handler: a broken invariant inside the
// engine or the core aborts the process, and the seed must still be reported.
volatile uint64_t g_seed = 0;
char g_replay[256];

void OnAbort(int) {
  char buf[400];
  const int n = std::snprintf(buf, sizeof(buf),
                              "FAIL seed=%llu: the process aborted (an assertion in the engine)\n"
                              "  replay: %s --seed %llu --verbose\n",
                              static_cast<unsigned long long>(g_seed), g_replay,
                              static_cast<unsigned long long>(g_seed));
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
  std::signal(SIGSEGV, OnAbort);
  uint64_t seeds = 100;
  uint64_t start = 1;
  bool single = false;
  bool summary = false;
  flotilla::sim::SimOptions opt;
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
    } else if (a == "--chaos-ms") {
      opt.chaos_ms = next();
    } else if (a == "--areas") {
      if (i + 1 >= argc || !flotilla::sim::ParseAreas(argv[++i], &opt.areas)) {
        std::fprintf(stderr, "--areas takes all, default, none or a list of: %s\n",
                     flotilla::sim::AreaNames(flotilla::sim::kAllAreas).c_str());
        return 2;
      }
    } else if (a == "--address-book") {
      opt.address_book = true;
    } else if (a == "--no-faults") {
      opt.faults = false;
    } else if (a == "--verbose") {
      opt.verbose = true;
    } else if (a == "--summary") {
      summary = true;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--seeds N] [--start S] [--seed S] [--chaos-ms MS] [--no-faults] "
                   "[--address-book] [--areas LIST] "
                   "[--verbose] [--summary]\n",
                   argv[0]);
      return 2;
    }
  }
  std::fprintf(stderr, "areas: %s\n", flotilla::sim::AreaNames(opt.areas).c_str());
  // The replay command names the areas when they are not the default ones.
  if (opt.areas != flotilla::sim::DefaultAreas()) {
    std::snprintf(g_replay, sizeof(g_replay), "%s --areas %s", argv[0],
                  flotilla::sim::AreaNames(opt.areas).c_str());
  }
  uint64_t failures = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t s = start; s < start + seeds; ++s) {
    g_seed = s;
    if (!single) {
      // Each seed runs in a child process, so that an assertion that stops
      // the process fails that seed alone and the sweep goes on.
      std::fflush(stdout);
      const pid_t pid = fork();
      if (pid == 0) {
        const flotilla::sim::SimResult r = flotilla::sim::RunSim(s, opt);
        if (!r.ok) {
          std::printf("FAIL seed=%llu: %s\n  replay: %s --seed %llu --verbose\n",
                      static_cast<unsigned long long>(s), r.failure.c_str(), g_replay,
                      static_cast<unsigned long long>(s));
        }
        if (summary) {
          std::printf("seed=%llu %s %s\n", static_cast<unsigned long long>(s),
                      r.ok ? "ok" : "FAILED", r.Summary().c_str());
        }
        std::fflush(stdout);
        std::_Exit(r.ok ? 0 : 1);
      }
      int status = 0;
      waitpid(pid, &status, 0);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failures;
      // A child that aborted left its data behind.
      std::error_code ec;
      std::filesystem::remove_all(flotilla::sim::SimDataRoot(opt, s, pid), ec);
      continue;
    }
    const flotilla::sim::SimResult r = flotilla::sim::RunSim(s, opt);
    if (!r.ok) {
      ++failures;
      std::printf("FAIL seed=%llu: %s\n  replay: %s --seed %llu --verbose\n",
                  static_cast<unsigned long long>(s), r.failure.c_str(), g_replay,
                  static_cast<unsigned long long>(s));
    }
    if (single || summary) {
      std::printf("seed=%llu %s %s\n", static_cast<unsigned long long>(s), r.ok ? "ok" : "FAILED",
                  r.Summary().c_str());
    }
    std::fflush(stdout);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("seeds=%llu failures=%llu\n", static_cast<unsigned long long>(seeds),
              static_cast<unsigned long long>(failures));
  std::fprintf(stderr, "%.1f s wall, %.3f s per seed\n", secs, secs / static_cast<double>(seeds));
  return failures == 0 ? 0 : 1;
}
