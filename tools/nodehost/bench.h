// `nodehost bench`: a closed-loop load generator for running daemons, shaped
// like etcd's `tools/benchmark put`: --clients concurrent clients over
// --conns connections per daemon, each sending its next request when the
// previous one is answered, for --seconds after --warmup. It routes each key
// to its shard's leader itself (the shard map and the leaders from the
// daemons), and prints requests per second, latency percentiles, errors by
// gRPC code and, given the daemons' pids, their CPU time per request
// (docs/benchmark.md, "The daemon").
//
// Thread-safety: RunBench is a blocking call; it uses gRPC's callback client
// API, whose threads run the clients.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace flotilla::nodehost {

struct BenchOptions {
  std::vector<std::string> endpoints;  // any daemons of the cluster
  std::string token;                   // bearer token, when the daemons want one
  std::string op = "put";              // put, get (linearizable), mixed
  uint32_t clients = 1;
  uint32_t conns = 1;  // connections per daemon
  double seconds = 10;
  double warmup = 1;
  uint32_t key_size = 16;
  uint32_t val_size = 16;
  // get and mixed read (and mixed writes) keys of this many; they are
  // written before the warmup.
  uint64_t key_space = 10000;
  double read_ratio = 0.5;  // mixed: the share of gets
  uint32_t timeout_ms = 5000;
  std::vector<int> pids;  // daemons whose CPU time per request is reported
  bool json = false;
  // Put before every key (after which key_size bytes follow): `check perf`
  // writes its keys under one prefix, to delete them afterwards.
  std::string key_prefix;
};

// What a run measured.
struct BenchResult {
  double seconds = 0;  // measured
  uint64_t ok = 0;
  uint64_t errors = 0;
  std::map<std::string, uint64_t> error_codes;  // by gRPC code name
  double ops_per_second = 0;
  double p50_ms = 0, p99_ms = 0, p999_ms = 0;
  double server_cpu_seconds = 0, client_cpu_seconds = 0;
};

// Runs the load and returns what it measured; false with `error` when the
// daemons could not be reached.
bool MeasureBench(const BenchOptions& o, BenchResult* out, std::string* error);

// Runs the benchmark and prints its result; returns a CLI exit code (0 when
// it ran, whatever errors the requests met).
int RunBench(const BenchOptions& o);

// Latency percentiles from a log-linear histogram of microseconds (within
// 1/32 of the value). Thread-safe: Add is a relaxed atomic increment.
class LatencyHistogram {
 public:
  void Add(uint64_t micros);
  uint64_t count() const;
  // The smallest recorded bucket's lower bound at or above fraction q of
  // the samples, in microseconds; 0 when empty.
  uint64_t Percentile(double q) const;

  static size_t Index(uint64_t micros);
  static uint64_t LowerBound(size_t index);
  static constexpr size_t kLinear = 64;  // exact below 64 µs
  static constexpr size_t kSub = 32;     // buckets per power of two above
  static constexpr size_t kBuckets = kLinear + 58 * kSub;

 private:
  std::vector<std::atomic<uint64_t>> buckets_ = std::vector<std::atomic<uint64_t>>(kBuckets);
};

}  // namespace flotilla::nodehost
