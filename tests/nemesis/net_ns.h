// NetNs: a private network for the nemesis test, made of Linux network
// namespaces. One namespace holds a bridge (and the test's clients); each
// node gets a namespace of its own, joined to the bridge by a veth pair, with
// an address in 10.99.0.0/24, which exists only inside these namespaces. Packet
// loss between nodes is an nftables ruleset in the sender's namespace.
//
// Names carry the test's pid ("nem<pid>-br", "nem<pid>-n1", ...), so that
// runs do not collide and a later run can remove what a crashed one left
// (CleanStale). Needs root, `ip` (iproute2) and `nft` (nftables).
//
// Not thread-safe: the nemesis thread drives it.
#pragma once

#include <string>
#include <vector>

namespace flotilla::nemesis {

class NetNs {
 public:
  // Removes the namespaces of earlier runs whose process is gone.
  static void CleanStale();

  explicit NetNs(int nodes);
  ~NetNs();  // Remove()
  NetNs(const NetNs&) = delete;
  NetNs& operator=(const NetNs&) = delete;

  // Creates the namespaces, the bridge and the veth pairs; false (with the
  // failing command in `error`) when a step fails.
  bool Create(std::string* error);
  // Moves the calling thread into the bridge's namespace. Call before any
  // other thread starts: threads made later inherit it.
  bool EnterBridge(std::string* error);
  void Remove();

  // The shell command that removes everything, for a signal handler that
  // execs it.
  std::string RemoveCommand() const;

  std::string node_ns(int node) const;  // 1-based
  std::string node_ip(int node) const;
  static std::string client_ip() { return "10.99.0.1"; }

  // drop_percent[a][b] (0-based): the share of packets from node a to node b
  // dropped, 0 to 100. Installs the rulesets that changed.
  bool SetDrops(const std::vector<std::vector<int>>& drop_percent, std::string* error);
  bool Heal(std::string* error);

 private:
  int nodes_;
  std::string prefix_;
  bool created_ = false;
  std::vector<std::vector<int>> drops_;
};

// Runs `cmd` with /bin/sh; true when it exits 0. Its output goes to `out`
// when given, otherwise to /dev/null.
bool Run(const std::string& cmd, std::string* out = nullptr);

}  // namespace flotilla::nemesis
