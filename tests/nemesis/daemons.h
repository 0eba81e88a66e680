// Daemons: the nemesis test's `nodehost serve` processes, node i in network
// namespace NetNs::node_ns(i), its data and log in dir()/node<i>. It knows
// which exits it caused (Kill, Stop) and reports any other (Reap).
//
// Not thread-safe: the nemesis thread drives it. The pids are also kept in a
// table that a signal handler may read (AllPids).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "tests/nemesis/net_ns.h"

namespace flotilla::nemesis {

struct DaemonOptions {
  int nodes = 3;
  int shards = 2;
  uint64_t snapshot_entries = 24;
  uint64_t compaction_overhead = 8;
};

class Daemons {
 public:
  Daemons(const NetNs* net, DaemonOptions o, std::string dir);
  ~Daemons();  // SIGKILLs whatever still runs
  Daemons(const Daemons&) = delete;
  Daemons& operator=(const Daemons&) = delete;

  bool Start(int node);   // forks and execs; does not wait for it to serve
  void Kill(int node);    // SIGKILL (SIGCONT first when paused), reaped
  int Stop(int node);     // SIGTERM; its exit status, -1 if it had to be killed
  void Pause(int node);   // SIGSTOP
  void Resume(int node);  // SIGCONT
  bool Running(int node) const;
  bool Paused(int node) const;
  // Waits until `node` answers Status on its client port; false (with the
  // log's tail in `why`) when it exits or does not answer within `limit`.
  bool WaitServing(int node, std::chrono::milliseconds limit, std::string* why);
  // Exits nobody asked for since the last call, each with its log's tail.
  std::vector<std::string> Reap();

  std::string client_address(int node) const;
  std::string endpoints() const;  // every node's client address
  const std::string& token_file() const { return token_file_; }
  const std::string& dir() const { return dir_; }
  std::string LogTail(int node, size_t bytes = 1500) const;
  int nodes() const { return o_.nodes; }
  int shards() const { return o_.shards; }

  // For a signal handler: the pids of running daemons (0 where none).
  static const volatile pid_t* AllPids();

 private:
  std::string WriteConfig(int node) const;

  const NetNs* net_;
  DaemonOptions o_;
  std::string dir_;
  std::string token_file_;
  std::vector<pid_t> pids_;
  std::vector<bool> paused_;
};

}  // namespace flotilla::nemesis
