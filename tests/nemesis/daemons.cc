#include "tests/nemesis/daemons.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tools/nodehost/client.h"

namespace flotilla::nemesis {
namespace {

using namespace std::chrono_literals;
constexpr int kMaxNodes = 8;
volatile pid_t g_pids[kMaxNodes + 1] = {};

constexpr int kRaftPort = 7100;
constexpr int kClientPort = 7200;

}  // namespace

const volatile pid_t* Daemons::AllPids() { return g_pids; }

Daemons::Daemons(const NetNs* net, DaemonOptions o, std::string dir)
    : net_(net),
      o_(o),
      dir_(std::move(dir)),
      pids_(static_cast<size_t>(o.nodes + 1), -1),
      paused_(static_cast<size_t>(o.nodes + 1), false) {
  std::filesystem::create_directories(dir_);
  token_file_ = dir_ + "/token";
  std::ofstream(token_file_) << "nemesis-token\n";
  // Plaintext raft traffic off loopback: the daemons authenticate each
  // other with the deployment secret, as docs/security.md tells operators to.
  std::ofstream(dir_ + "/secret") << "nemesis-deployment-secret-0123456789\n";
  for (const std::string& f : {token_file_, dir_ + "/secret"}) {
    std::filesystem::permissions(
        f, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  }
}

Daemons::~Daemons() {
  for (int i = 1; i <= o_.nodes; ++i) Kill(i);
}

std::string Daemons::client_address(int node) const {
  return net_->node_ip(node) + ":" + std::to_string(kClientPort);
}

std::string Daemons::endpoints() const {
  std::string out;
  for (int i = 1; i <= o_.nodes; ++i) out += (i > 1 ? "," : "") + client_address(i);
  return out;
}

std::string Daemons::WriteConfig(int node) const {
  const std::string path = dir_ + "/node" + std::to_string(node) + ".toml";
  std::ofstream f(path);
  f << "node_id = " << node << "\ndata_dir = \"" << dir_ << "/node" << node << "\"\n"
    << "metrics_address = \"\"\nlog_level = \"warn\"\nrtt_ms = 10\n"
    // Plaintext between the namespaces' private addresses.
    << "insecure = true\n\n"
    << "[raft]\nsnapshot_entries = " << o_.snapshot_entries
    << "\ncompaction_overhead = " << o_.compaction_overhead
    << "\nstep_workers = 1\napply_workers = 1\n\n"
    << "[auth]\ntoken_file = \"" << token_file_ << "\"\nsecret_file = \"" << dir_
    << "/secret\"\n\n[shards]\ncount = " << o_.shards << "\n\n";
  for (int n = 1; n <= o_.nodes; ++n) {
    f << "[[nodes]]\nid = " << n << "\nraft_address = \"" << net_->node_ip(n) << ":" << kRaftPort
      << "\"\nclient_address = \"" << client_address(n) << "\"\n\n";
  }
  return path;
}

bool Daemons::Start(int node) {
  pid_t& pid = pids_[static_cast<size_t>(node)];
  if (pid > 0) return true;
  const std::string config = WriteConfig(node);
  const std::string log = dir_ + "/node" + std::to_string(node) + ".log";
  const std::string ns = "/run/netns/" + net_->node_ns(node);
  pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(ns.c_str(), O_RDONLY);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) ::_exit(126);
    const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out >= 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
    }
    ::execl(FLOTILLA_NODEHOST, FLOTILLA_NODEHOST, "serve", "--config", config.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  if (pid < 0) return false;
  g_pids[node] = pid;
  paused_[static_cast<size_t>(node)] = false;
  return true;
}

void Daemons::Kill(int node) {
  pid_t& pid = pids_[static_cast<size_t>(node)];
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  pid = -1;
  g_pids[node] = 0;
  paused_[static_cast<size_t>(node)] = false;
}

int Daemons::Stop(int node) {
  pid_t& pid = pids_[static_cast<size_t>(node)];
  if (pid <= 0) return -1;
  if (paused_[static_cast<size_t>(node)]) Resume(node);
  ::kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      pid = -1;
      g_pids[node] = 0;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(10ms);
  }
  Kill(node);
  return -1;
}

void Daemons::Pause(int node) {
  if (pids_[static_cast<size_t>(node)] <= 0) return;
  ::kill(pids_[static_cast<size_t>(node)], SIGSTOP);
  paused_[static_cast<size_t>(node)] = true;
}

void Daemons::Resume(int node) {
  if (pids_[static_cast<size_t>(node)] <= 0) return;
  ::kill(pids_[static_cast<size_t>(node)], SIGCONT);
  paused_[static_cast<size_t>(node)] = false;
}

bool Daemons::Running(int node) const { return pids_[static_cast<size_t>(node)] > 0; }
bool Daemons::Paused(int node) const { return paused_[static_cast<size_t>(node)]; }

std::vector<std::string> Daemons::Reap() {
  std::vector<std::string> out;
  for (int i = 1; i <= o_.nodes; ++i) {
    pid_t& pid = pids_[static_cast<size_t>(i)];
    int status = 0;
    if (pid <= 0 || ::waitpid(pid, &status, WNOHANG) != pid) continue;
    pid = -1;
    g_pids[i] = 0;
    const std::string how = WIFEXITED(status)
                                ? "exited with " + std::to_string(WEXITSTATUS(status))
                                : "died of signal " + std::to_string(WTERMSIG(status));
    out.push_back("node " + std::to_string(i) + " " + how +
                  " (not by the nemesis); its log ends:\n" + LogTail(i));
  }
  return out;
}

bool Daemons::WaitServing(int node, std::chrono::milliseconds limit, std::string* why) {
  nodehost::ClientOptions o;
  o.endpoints = {client_address(node)};
  o.timeout = 500ms;
  std::string error;
  std::unique_ptr<nodehost::Client> c = nodehost::Client::Create(o, &error);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    pid_t& pid = pids_[static_cast<size_t>(node)];
    if (pid <= 0) break;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      pid = -1;
      g_pids[node] = 0;
      *why = "node " + std::to_string(node) + " exited with " +
             std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)) +
             " while starting; its log ends:\n" + LogTail(node);
      return false;
    }
    nodehost::StatusResponse res;
    if (c->Status(client_address(node), &res).ok()) return true;
    std::this_thread::sleep_for(50ms);
  }
  *why = "node " + std::to_string(node) + " did not serve within " + std::to_string(limit.count()) +
         " ms; its log ends:\n" + LogTail(node);
  return false;
}

std::string Daemons::LogTail(int node, size_t bytes) const {
  std::ifstream in(dir_ + "/node" + std::to_string(node) + ".log");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string all = ss.str();
  return all.size() <= bytes ? all : all.substr(all.size() - bytes);
}

}  // namespace flotilla::nemesis
