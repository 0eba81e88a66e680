#include "tests/nemesis/net_ns.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace flotilla::nemesis {
namespace {

constexpr char kPrefix[] = "nem";

}  // namespace

bool Run(const std::string& cmd, std::string* out) {
  const std::string full = cmd + (out == nullptr ? " >/dev/null 2>&1" : " 2>&1");
  FILE* p = ::popen(full.c_str(), "r");
  if (p == nullptr) return false;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0)
    if (out != nullptr) out->append(buf, n);
  return ::pclose(p) == 0;
}

void NetNs::CleanStale() {
  std::string list;
  if (!Run("ip netns list", &list)) return;
  std::istringstream in(list);
  std::string line;
  while (std::getline(in, line)) {
    const std::string name = line.substr(0, line.find(' '));
    if (name.rfind(kPrefix, 0) != 0) continue;
    const size_t dash = name.find('-');
    if (dash == std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::atol(name.substr(3, dash - 3).c_str()));
    if (pid <= 0 || (::kill(pid, 0) != 0 && errno == ESRCH)) {
      std::fprintf(stderr, "nemesis: removing the stale namespace %s\n", name.c_str());
      Run("ip netns pids " + name + " | xargs -r kill -9; ip netns del " + name);
    }
  }
}

NetNs::NetNs(int nodes)
    : nodes_(nodes),
      prefix_(kPrefix + std::to_string(::getpid())),
      drops_(static_cast<size_t>(nodes), std::vector<int>(static_cast<size_t>(nodes), 0)) {}

NetNs::~NetNs() { Remove(); }

std::string NetNs::node_ns(int node) const { return prefix_ + "-n" + std::to_string(node); }
std::string NetNs::node_ip(int node) const { return "10.99.0." + std::to_string(10 + node); }

bool NetNs::Create(std::string* error) {
  created_ = true;
  const std::string br = prefix_ + "-br";
  std::vector<std::string> cmds = {
      "ip netns add " + br,
      "ip -n " + br + " link set lo up",
      "ip -n " + br + " link add br0 type bridge",
      "ip -n " + br + " addr add " + client_ip() + "/24 dev br0",
      "ip -n " + br + " link set br0 up",
  };
  for (int i = 1; i <= nodes_; ++i) {
    const std::string ns = node_ns(i);
    const std::string veth = "v" + std::to_string(i);
    cmds.push_back("ip netns add " + ns);
    cmds.push_back("ip -n " + ns + " link set lo up");
    cmds.push_back("ip -n " + br + " link add " + veth + " type veth peer name eth0 netns " + ns);
    cmds.push_back("ip -n " + br + " link set " + veth + " master br0 up");
    cmds.push_back("ip -n " + ns + " addr add " + node_ip(i) + "/24 dev eth0");
    cmds.push_back("ip -n " + ns + " link set eth0 up");
  }
  for (const std::string& c : cmds) {
    std::string out;
    if (!Run(c, &out)) {
      *error = "'" + c + "' failed: " + out;
      return false;
    }
  }
  return true;
}

bool NetNs::EnterBridge(std::string* error) {
  const std::string path = "/run/netns/" + prefix_ + "-br";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = "cannot open " + path;
    return false;
  }
  const int rc = ::setns(fd, CLONE_NEWNET);
  ::close(fd);
  if (rc != 0) *error = "setns(" + path + ") failed";
  return rc == 0;
}

std::string NetNs::RemoveCommand() const {
  std::string cmd;
  for (int i = 1; i <= nodes_; ++i) {
    cmd += "ip netns pids " + node_ns(i) + " 2>/dev/null | xargs -r kill -9; ";
    cmd += "ip netns del " + node_ns(i) + " 2>/dev/null; ";
  }
  return cmd + "ip netns del " + prefix_ + "-br 2>/dev/null; true";
}

void NetNs::Remove() {
  if (!created_) return;
  created_ = false;
  Run(RemoveCommand());
}

bool NetNs::SetDrops(const std::vector<std::vector<int>>& drop_percent, std::string* error) {
  for (int a = 0; a < nodes_; ++a) {
    const auto& row = drop_percent[static_cast<size_t>(a)];
    if (row == drops_[static_cast<size_t>(a)]) continue;
    std::string rules =
        "flush ruleset\ntable inet nemesis {\n  chain output {\n"
        "    type filter hook output priority 0; policy accept;\n";
    for (int b = 0; b < nodes_; ++b) {
      const int p = row[static_cast<size_t>(b)];
      if (p <= 0 || a == b) continue;
      rules += "    ip daddr " + node_ip(b + 1) +
               (p >= 100 ? std::string(" drop;\n")
                         : " numgen random mod 100 < " + std::to_string(p) + " drop;\n");
    }
    rules += "  }\n}\n";
    std::string out;
    const std::string file = "/tmp/" + node_ns(a + 1) + ".nft";
    std::ofstream(file) << rules;
    const bool ok = Run("ip netns exec " + node_ns(a + 1) + " nft -f " + file, &out);
    std::remove(file.c_str());
    if (!ok) {
      *error = "nft in " + node_ns(a + 1) + " failed: " + out;
      return false;
    }
    drops_[static_cast<size_t>(a)] = row;
  }
  return true;
}

bool NetNs::Heal(std::string* error) {
  return SetDrops(std::vector<std::vector<int>>(static_cast<size_t>(nodes_),
                                                std::vector<int>(static_cast<size_t>(nodes_), 0)),
                  error);
}

}  // namespace flotilla::nemesis
