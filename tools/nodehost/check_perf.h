// `nodehost check perf`: is this machine fit to run a daemon? Like etcd's
// `etcdctl check perf`, it measures and answers PASS or FAIL with the reason:
// the fsync latency of the data disk (every write waits for one), and, with
// daemons at --endpoints, a short closed-loop load (docs/operations.md).
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace CLI {
class App;
}  // namespace CLI

namespace flotilla::nodehost {

// fsync latency of 4 KiB appends to a file in a directory, as the LogDB's
// write-ahead log does them.
struct FsyncReport {
  std::string error;  // set when the directory could not be written
  size_t syncs = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
};
FsyncReport MeasureFsync(const std::string& dir, std::chrono::milliseconds duration);

// The daemons `check perf --load` puts to, from the global flags.
struct PerfLoadTarget {
  std::vector<std::string> endpoints;
  std::string token;
  uint32_t timeout_ms = 5000;
  std::string error;  // set when the flags are wrong (an unreadable token file)
};

// Adds `check perf` to `app`; its exit code goes to *rc. `target` is asked
// for the daemons when --load is given.
void AddCheckCommands(CLI::App* app, const std::string* output,
                      std::function<PerfLoadTarget()> target, int* rc);

}  // namespace flotilla::nodehost
