// TestCluster: real `nodehost serve` processes on loopback in a temporary
// directory, for the end-to-end tests. Ports are picked free; every process
// is stopped by its pid when the cluster is destroyed.
//
// Not thread-safe: one test thread drives it (the client threads of a test
// use their own nodehost::Client).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "tests/net_util.h"

namespace flotilla::nodehost::testing {

using flotilla::testing::FreePort;  // tests/net_util.h

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

class TestCluster {
 public:
  struct Options {
    int nodes = 3;        // nodes 1..nodes are started; `spare_nodes` more are only listed
    int spare_nodes = 0;  // listed in [[nodes]] (for add-replica), not started by Start()
    int shards = 4;
    uint64_t snapshot_entries = 10000;
    uint64_t compaction_overhead = 5000;
    bool token = true;  // write a token file and configure [auth]
    // Make a CA and certificates (openssl CLI) and configure [tls]: mutual
    // TLS between the daemons (peer_names: their CNs node1, node2, ...) and
    // on the client API. Files in dir(): ca.pem, client.pem/.key (signed by
    // the CA), rogue.pem/.key (another CA), and client-ca.pem and
    // kvclient.pem/.key (signed by client-ca).
    bool tls = false;
    // With tls: the client API trusts client-ca ([client_tls]), not ca.
    bool client_tls = false;
    // [auth] secret_file: secret_file(id), one per node, all alike at first.
    bool secret = false;
    bool every_call = false;  // [auth] every_call = true
    // Where the nodes' data directories go (<data_root>/node<id>); empty:
    // dir(). Configs and logs stay in dir() (a full-disk test fills this).
    std::string data_root;
    // Per node id: its own data root instead (a full disk on one node).
    std::map<int, std::string> node_data_root;
    // [storage] of every node; 0: the daemon's defaults.
    uint64_t min_free_bytes = 0;
    uint64_t storage_check_interval_ms = 0;
    // Top-level config lines added to every node's config ("key = value\n").
    std::string extra_top_level;
    // [raft] balance_leaders: off by default, so that the leaders a test
    // sets stay where it put them.
    bool balance_leaders = false;
    uint64_t balance_interval_ms = 200;
  };
  explicit TestCluster(Options o);
  ~TestCluster();
  TestCluster(const TestCluster&) = delete;
  TestCluster& operator=(const TestCluster&) = delete;

  // Writes every config and starts nodes 1..nodes; true once every shard of
  // every started node has a leader. False also when certificates could not
  // be made (no openssl CLI).
  bool Start();
  // Starts node `id` (1-based) with its config; `joining_shards` makes it
  // join those shards instead of being an initial member.
  bool StartNode(int id, const std::vector<int>& joining_shards = {});
  void KillNode(int id);  // SIGKILL, reaped
  // Sends `sig` (SIGSTOP, SIGCONT) to a running node; nothing else changes.
  void SignalNode(int id, int sig);
  // SIGTERM; returns the exit status (or -1 when it did not exit in time and
  // had to be killed).
  int StopNode(int id);
  bool Running(int id) const;
  // Every started node's replicas know a leader (polled up to `limit`);
  // with `not_led_by`, a leader other than that replica (a node just killed
  // is still believed to lead until its followers' election timeout).
  bool WaitReady(std::chrono::milliseconds limit, uint64_t not_led_by = 0);

  // Runs the nodehost CLI with --endpoints of the started nodes 1..nodes
  // prepended (unless `args` gives --endpoints itself).
  CliResult Cli(const std::vector<std::string>& args) const;

  std::string endpoints() const;  // client addresses of nodes 1..nodes
  std::string client_address(int id) const;
  std::string raft_address(int id) const;
  std::string metrics_address(int id) const;
  const std::string& token_file() const { return token_file_; }
  std::string secret_file(int id) const { return dir_ + "/node" + std::to_string(id) + ".secret"; }
  // The deployment secret written to every secret_file at construction.
  const std::string& secret() const { return secret_; }
  const std::string& dir() const { return dir_; }
  std::string log_of(int id) const;

 private:
  void PickPorts();
  std::string data_dir(int id) const;
  struct Node {
    int raft_port = 0;
    int client_port = 0;
    int metrics_port = 0;
    pid_t pid = -1;
  };
  std::string WriteConfig(int id, const std::vector<int>& joining_shards) const;
  bool MakeCertificates() const;

  Options o_;
  std::string dir_;
  std::string token_file_;
  std::string secret_;
  std::vector<Node> nodes_;  // index id-1
};

// The body `curl <flags> <url>` prints (empty when curl fails with -f).
std::string Curl(const std::string& url, const std::string& flags = "-sf");

}  // namespace flotilla::nodehost::testing
