#include "tools/nodehost/check_perf.h"

#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "tools/nodehost/cli.h"
#include "tools/nodehost/config.h"

namespace flotilla::nodehost {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double Percentile(std::vector<double>* v, double q) {
  if (v->empty()) return 0;
  const size_t i = std::min(v->size() - 1, static_cast<size_t>(q * static_cast<double>(v->size())));
  std::nth_element(v->begin(), v->begin() + static_cast<std::ptrdiff_t>(i), v->end());
  return (*v)[i];
}

struct CheckArgs {
  std::string dir;
  std::string config;
  double seconds = 3;
  double max_fsync_p99_ms = 10;
};

int CmdCheckPerf(CheckArgs* a, bool json_out) {
  if (a->dir.empty() && !a->config.empty()) {
    Result<DaemonConfig> c = LoadConfig(a->config);
    if (!c.ok()) {
      std::cerr << "nodehost check perf: " << c.status().message() << "\n";
      return kExitUsage;
    }
    a->dir = c->wal_dir.empty() ? c->data_dir : c->wal_dir;
  }
  if (a->dir.empty()) a->dir = ".";
  const FsyncReport r =
      MeasureFsync(a->dir, std::chrono::milliseconds(static_cast<int64_t>(a->seconds * 1000)));
  if (!r.error.empty()) {
    std::cerr << "nodehost check perf: " << r.error << "\n";
    return kExitError;
  }
  const bool pass = r.p99_ms <= a->max_fsync_p99_ms;
  char why_buf[256] = "";
  if (!pass) {
    std::snprintf(why_buf, sizeof(why_buf),
                  "fsync p99 %.2f ms is above %.2f ms: every write waits for one; use a faster "
                  "disk (or wal_dir on one)",
                  r.p99_ms, a->max_fsync_p99_ms);
  }
  const std::string why = why_buf;
  if (json_out) {
    std::cout << json({{"result", pass ? "PASS" : "FAIL"},
                       {"dir", a->dir},
                       {"fsyncs", r.syncs},
                       {"fsync_p50_ms", r.p50_ms},
                       {"fsync_p99_ms", r.p99_ms},
                       {"fsync_max_ms", r.max_ms},
                       {"max_fsync_p99_ms", a->max_fsync_p99_ms},
                       {"reason", why}})
                     .dump(2)
              << "\n";
  } else {
    std::printf("disk %s: %zu fsyncs of 4 KiB appends, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n%s\n",
                a->dir.c_str(), r.syncs, r.p50_ms, r.p99_ms, r.max_ms,
                pass ? "PASS" : ("FAIL: " + why).c_str());
  }
  return pass ? kExitOk : kExitCheckFailed;
}

}  // namespace

FsyncReport MeasureFsync(const std::string& dir, std::chrono::milliseconds duration) {
  FsyncReport out;
  const std::string path = dir + "/.nodehost-check-perf-" + std::to_string(getpid());
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    out.error = "cannot create a file in " + dir + ": " + std::strerror(errno);
    return out;
  }
  const std::string block(4096, 'x');
  std::vector<double> ms;
  const auto end = Clock::now() + duration;
  while (Clock::now() < end) {
    const auto t0 = Clock::now();
    if (::write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size()) ||
        ::fdatasync(fd) != 0) {
      out.error = "writing " + path + ": " + std::strerror(errno);
      break;
    }
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  ::close(fd);
  ::unlink(path.c_str());
  out.syncs = ms.size();
  if (!ms.empty()) {
    out.max_ms = *std::max_element(ms.begin(), ms.end());
    out.p50_ms = Percentile(&ms, 0.50);
    out.p99_ms = Percentile(&ms, 0.99);
  }
  return out;
}

void AddCheckCommands(CLI::App* app, const std::string* output, int* rc) {
  auto a = std::make_shared<CheckArgs>();
  auto* check = app->add_subcommand("check", "checks of this machine and cluster");
  check->require_subcommand(1);
  auto* perf = check->add_subcommand(
      "perf", "is this disk fast enough for a daemon? PASS or FAIL with the reason");
  perf->add_option("--dir", a->dir, "directory on the disk to measure (default: the current one)");
  perf->add_option("--config", a->config,
                   "measure the disk of this daemon config's wal_dir or data_dir");
  perf->add_option("--seconds", a->seconds, "how long to measure")->check(CLI::Range(0.1, 600.0));
  perf->add_option("--max-fsync-p99-ms", a->max_fsync_p99_ms, "FAIL above this fsync p99");
  perf->callback([=] { *rc = CmdCheckPerf(a.get(), *output == "json"); });
}

}  // namespace flotilla::nodehost
