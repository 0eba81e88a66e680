#include "tools/nodehost/check_perf.h"

#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "tools/nodehost/bench.h"
#include "tools/nodehost/cli.h"
#include "tools/nodehost/client.h"
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
  bool load = false;
  double load_seconds = 3;
  uint32_t load_clients = 16;
  double min_puts_per_second = 150;
  double max_put_p99_ms = 100;
};

// The load's keys: a few, under one prefix, overwritten again and again,
// and deleted afterwards.
constexpr char kLoadKeyPrefix[] = "__nodehost_check_perf/";
constexpr uint64_t kLoadKeys = 64;
constexpr uint32_t kLoadKeySize = 16;
constexpr uint32_t kLoadValueSize = 256;

[[gnu::format(printf, 1, 2)]] std::string Format(const char* fmt, ...) {
  char buf[256];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, args);
  va_end(args);
  return buf;
}

// The disk part: "" when it passes, else why; `line` what it measured.
int CheckDisk(CheckArgs* a, json* out, std::string* line, std::string* why) {
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
  if (r.p99_ms > a->max_fsync_p99_ms) {
    *why = Format(
        "fsync p99 %.2f ms is above %.2f ms: every write waits for one; use a faster disk (or "
        "wal_dir on one)",
        r.p99_ms, a->max_fsync_p99_ms);
  }
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "disk %s: %zu fsyncs of 4 KiB appends, p50 %.2f ms, p99 %.2f ms, max %.2f ms",
                a->dir.c_str(), r.syncs, r.p50_ms, r.p99_ms, r.max_ms);
  *line = buf;
  *out = {{"dir", a->dir},
          {"fsyncs", r.syncs},
          {"fsync_p50_ms", r.p50_ms},
          {"fsync_p99_ms", r.p99_ms},
          {"fsync_max_ms", r.max_ms},
          {"max_fsync_p99_ms", a->max_fsync_p99_ms}};
  return kExitOk;
}

// Deletes the load's keys (best effort: a key left behind is reported).
size_t DeleteLoadKeys(const PerfLoadTarget& t) {
  ClientOptions o;
  o.endpoints = t.endpoints;
  o.token = t.token;
  o.timeout = std::chrono::milliseconds(t.timeout_ms);
  std::string error;
  std::unique_ptr<Client> c = Client::Create(std::move(o), &error);
  size_t left = 0;
  for (uint64_t i = 0; i < kLoadKeys; ++i) {
    char key[64];
    std::snprintf(key, sizeof(key), "%s%016llx", kLoadKeyPrefix,
                  static_cast<unsigned long long>(i));
    DeleteResponse res;
    if (c == nullptr || !c->Delete(key, &res).ok()) ++left;
  }
  return left;
}

// The load part: closed-loop puts from `load_clients` clients for
// `load_seconds` against the daemons of `t`.
int CheckLoad(const CheckArgs& a, const PerfLoadTarget& t, json* out, std::string* line,
              std::string* why) {
  BenchOptions o;
  o.endpoints = t.endpoints;
  o.token = t.token;
  o.timeout_ms = t.timeout_ms;
  o.op = "mixed";  // writes the key space first, then overwrites it
  o.read_ratio = 0;
  o.key_space = kLoadKeys;
  o.key_size = kLoadKeySize;
  o.val_size = kLoadValueSize;
  o.key_prefix = kLoadKeyPrefix;
  o.clients = a.load_clients;
  o.seconds = a.load_seconds;
  o.warmup = 0.5;
  BenchResult r;
  std::string error;
  if (!MeasureBench(o, &r, &error)) {
    std::cerr << "nodehost check perf: " << error << "\n";
    return kExitUnreachable;
  }
  const size_t left = DeleteLoadKeys(t);
  std::vector<std::string> whys;
  if (r.errors > 0)
    whys.push_back(std::to_string(r.errors) + " of " + std::to_string(r.ok + r.errors) +
                   " puts failed");
  if (r.ops_per_second < a.min_puts_per_second)
    whys.push_back(Format("%.0f puts/s is below %.0f", r.ops_per_second, a.min_puts_per_second));
  if (r.p99_ms > a.max_put_p99_ms)
    whys.push_back(Format("put p99 %.2f ms is above %.2f ms", r.p99_ms, a.max_put_p99_ms));
  for (const std::string& w : whys) *why += (why->empty() ? "" : "; ") + w;
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "load: %u clients, %.1f s of puts: %.0f puts/s, p50 %.2f ms, p99 %.2f ms, %llu "
                "errors",
                a.load_clients, r.seconds, r.ops_per_second, r.p50_ms, r.p99_ms,
                static_cast<unsigned long long>(r.errors));
  *line = buf;
  if (left > 0) *line += "\n(" + std::to_string(left) + " keys under " + kLoadKeyPrefix + " left)";
  *out = {{"clients", a.load_clients},
          {"seconds", r.seconds},
          {"puts", r.ok},
          {"errors", r.errors},
          {"error_codes", r.error_codes},
          {"puts_per_second", r.ops_per_second},
          {"put_p50_ms", r.p50_ms},
          {"put_p99_ms", r.p99_ms},
          {"keys_left", left},
          {"min_puts_per_second", a.min_puts_per_second},
          {"max_put_p99_ms", a.max_put_p99_ms}};
  return kExitOk;
}

int CmdCheckPerf(CheckArgs* a, bool json_out, const std::function<PerfLoadTarget()>& target) {
  // The disk is measured unless only the load was asked for.
  const bool disk = !a->load || !a->dir.empty() || !a->config.empty();
  json out = json::object();
  std::string lines, why;
  const auto part = [&](const char* name,
                        const std::function<int(json*, std::string*, std::string*)>& fn) {
    json j;
    std::string line, w;
    if (const int rc = fn(&j, &line, &w); rc != kExitOk) return rc;
    out[name] = j;
    lines += line + "\n";
    if (!w.empty()) why += (why.empty() ? "" : "; ") + w;
    return static_cast<int>(kExitOk);
  };
  if (disk) {
    const int rc = part(
        "disk", [a](json* j, std::string* l, std::string* w) { return CheckDisk(a, j, l, w); });
    if (rc != kExitOk) return rc;
  }
  if (a->load) {
    const PerfLoadTarget t = target();
    if (!t.error.empty()) {
      std::cerr << "nodehost check perf: " << t.error << "\n";
      return kExitUsage;
    }
    const int rc = part(
        "load", [&](json* j, std::string* l, std::string* w) { return CheckLoad(*a, t, j, l, w); });
    if (rc != kExitOk) return rc;
  }
  const bool pass = why.empty();
  if (json_out) {
    out["result"] = pass ? "PASS" : "FAIL";
    out["reason"] = why;
    // The disk's figures stay at the top level, where they always were.
    if (out.contains("disk")) out.update(out["disk"]);
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << lines << (pass ? "PASS" : "FAIL: " + why) << "\n";
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

void AddCheckCommands(CLI::App* app, const std::string* output,
                      std::function<PerfLoadTarget()> target, int* rc) {
  auto a = std::make_shared<CheckArgs>();
  auto* check = app->add_subcommand("check", "checks of this machine and cluster");
  check->require_subcommand(1);
  auto* perf = check->add_subcommand(
      "perf", "is this disk (and, with --load, this cluster) fast enough? PASS or FAIL, and why");
  perf->add_option("--dir", a->dir, "directory on the disk to measure (default: the current one)");
  perf->add_option("--config", a->config,
                   "measure the disk of this daemon config's wal_dir or data_dir");
  perf->add_option("--seconds", a->seconds, "how long to measure")->check(CLI::Range(0.1, 600.0));
  perf->add_option("--max-fsync-p99-ms", a->max_fsync_p99_ms, "FAIL above this fsync p99");
  perf->add_flag("--load", a->load,
                 "also put to the daemons at --endpoints for --load-seconds (closed loop); alone, "
                 "without --dir or --config, only that");
  perf->add_option("--load-seconds", a->load_seconds, "how long the load runs")
      ->check(CLI::Range(0.1, 600.0));
  perf->add_option("--load-clients", a->load_clients, "clients, each one put in flight")
      ->check(CLI::Range(1u, 10000u));
  perf->add_option("--min-puts-per-second", a->min_puts_per_second, "FAIL below this rate");
  perf->add_option("--max-put-p99-ms", a->max_put_p99_ms, "FAIL above this put p99");
  perf->callback([=] { *rc = CmdCheckPerf(a.get(), *output == "json", target); });
}

}  // namespace flotilla::nodehost
