// Workload: the nemesis test's clients. Each thread runs a seeded mix of
// put, linearizable get, compare-and-set and session writes (put and cas in
// an exactly-once session) on a few shared keys, recorded in a lincheck
// History, and puts of keys of its own ("a<client>-<n>", written once) whose
// acknowledgements are kept for the final "every acknowledged write is
// there" check. Completed operations are counted per 100 ms, which gives the
// outage and recovery times of each fault.
//
// Thread-safe: Start/Stop/SetIdle from the nemesis thread; the counters and
// the history are safe to read while it runs.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/lincheck/lincheck.h"

namespace flotilla::nemesis {

struct WorkloadStats {
  uint64_t ok = 0, failed = 0, unknown = 0;
  uint64_t gets = 0, puts = 0, cas = 0, session_writes = 0, own_puts = 0;
  uint64_t session_resends = 0;      // session writes that needed a second attempt
  uint64_t session_result_lost = 0;  // DATA_LOSS: applied earlier, result lost
};

class Workload {
 public:
  static constexpr auto kBucket = std::chrono::milliseconds(100);
  static constexpr int kSharedKeys = 12;

  Workload(std::string endpoints, int clients, uint64_t seed);
  ~Workload();  // Stop()

  void Start();
  void Stop();
  // While idle the clients send nothing, so that snapshot gaps stay open.
  void SetIdle(bool idle) { idle_.store(idle); }

  lincheck::History& history() { return history_; }
  WorkloadStats stats() const;
  // Acknowledged puts of own keys: key -> value.
  std::map<std::string, std::string> Acknowledged() const;
  // Completed operations per kBucket since Start().
  std::vector<uint64_t> Buckets() const;
  std::chrono::steady_clock::time_point started() const { return started_; }

 private:
  void Run(int client);

  std::string endpoints_;
  int clients_;
  uint64_t seed_;
  lincheck::History history_;
  std::atomic<bool> stop_{false}, idle_{false};
  std::chrono::steady_clock::time_point started_;
  std::vector<std::thread> threads_;
  static constexpr size_t kMaxBuckets = 36000;  // an hour
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  mutable std::mutex mu_;
  WorkloadStats stats_;                      // GUARDED_BY(mu_)
  std::map<std::string, std::string> acks_;  // GUARDED_BY(mu_)
};

}  // namespace flotilla::nemesis
