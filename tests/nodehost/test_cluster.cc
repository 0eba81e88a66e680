#include "tests/nodehost/test_cluster.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "tools/nodehost/client.h"

namespace flotilla::nodehost::testing {
namespace {

using namespace std::chrono_literals;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out.push_back(c);
  }
  return out + "'";
}

}  // namespace

TestCluster::TestCluster(Options o) : o_(o) {
  std::random_device rd;
  dir_ = (std::filesystem::temp_directory_path() / ("flotilla-nodehost-" + std::to_string(rd())))
             .string();
  std::filesystem::create_directories(dir_);
  nodes_.resize(static_cast<size_t>(o_.nodes + o_.spare_nodes));
  PickPorts();
  if (o_.token) {
    token_file_ = dir_ + "/token";
    std::ofstream(token_file_) << "test-token-" << rd() << "\n";
  }
  if (o_.secret) {
    secret_ = "test-secret-" + std::to_string(rd()) + "-" + std::to_string(rd());
    for (size_t i = 0; i < nodes_.size(); ++i) {
      std::ofstream(secret_file(static_cast<int>(i + 1))) << secret_ << "\n";
    }
  }
}

TestCluster::~TestCluster() {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].pid > 0) StopNode(static_cast<int>(i + 1));
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string TestCluster::client_address(int id) const {
  return "127.0.0.1:" + std::to_string(nodes_[static_cast<size_t>(id - 1)].client_port);
}
std::string TestCluster::raft_address(int id) const {
  return "127.0.0.1:" + std::to_string(nodes_[static_cast<size_t>(id - 1)].raft_port);
}
std::string TestCluster::metrics_address(int id) const {
  return "127.0.0.1:" + std::to_string(nodes_[static_cast<size_t>(id - 1)].metrics_port);
}
std::string TestCluster::log_of(int id) const {
  return ReadAll(dir_ + "/node" + std::to_string(id) + ".log");
}

std::string TestCluster::endpoints() const {
  std::string out;
  for (int i = 1; i <= o_.nodes; ++i) out += (i > 1 ? "," : "") + client_address(i);
  return out;
}

std::string TestCluster::WriteConfig(int id, const std::vector<int>& joining_shards) const {
  const std::string path = dir_ + "/node" + std::to_string(id) + ".toml";
  std::ofstream f(path);
  f << "node_id = " << id << "\n"
    << "data_dir = \"" << data_dir(id) << "\"\n"
    << "metrics_address = \"" << metrics_address(id) << "\"\n"
    << "log_level = \"warn\"\n"
    << "rtt_ms = 10\n"
    << o_.extra_top_level << "\n"
    << "[raft]\nsnapshot_entries = " << o_.snapshot_entries
    << "\ncompaction_overhead = " << o_.compaction_overhead
    << "\nstep_workers = 1\napply_workers = 1\nbalance_leaders = "
    << (o_.balance_leaders ? "true" : "false")
    << "\nbalance_interval_ms = " << o_.balance_interval_ms << "\n\n";
  f << "[auth]\n";
  if (o_.token) f << "token_file = \"" << token_file_ << "\"\n";
  if (o_.secret) f << "secret_file = \"" << secret_file(id) << "\"\n";
  if (o_.every_call) f << "every_call = true\n";
  if (o_.tls) {
    const std::string p = dir_ + "/node" + std::to_string(id);
    std::string names;
    for (size_t i = 0; i < nodes_.size(); ++i)
      names += (i > 0 ? ", \"node" : "\"node") + std::to_string(i + 1) + "\"";
    f << "\n[tls]\nca_file = \"" << dir_ << "/ca.pem\"\ncert_file = \"" << p
      << ".pem\"\nkey_file = \"" << p << ".key\"\npeer_names = [" << names << "]\n";
    if (o_.client_tls) {
      f << "\n[client_tls]\nca_file = \"" << dir_ << "/client-ca.pem\"\ncert_file = \"" << p
        << ".pem\"\nkey_file = \"" << p << ".key\"\n";
    }
  }
  f << "\n";
  if (o_.min_free_bytes != 0 || o_.storage_check_interval_ms != 0) {
    f << "[storage]\n";
    if (o_.min_free_bytes != 0) f << "min_free_bytes = " << o_.min_free_bytes << "\n";
    if (o_.storage_check_interval_ms != 0)
      f << "check_interval_ms = " << o_.storage_check_interval_ms << "\n";
    f << "\n";
  }
  std::string members;
  for (int i = 1; i <= o_.nodes; ++i) members += (i > 1 ? ", " : "") + std::to_string(i);
  for (int s = 1; s <= o_.shards; ++s) {
    f << "[[shards]]\nid = " << s << "\nmembers = [" << members << "]\n";
    if (std::find(joining_shards.begin(), joining_shards.end(), s) != joining_shards.end())
      f << "joining = [" << id << "]\n";
    f << "\n";
  }
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const int n = static_cast<int>(i + 1);
    f << "[[nodes]]\nid = " << n << "\nraft_address = \"" << raft_address(n)
      << "\"\nclient_address = \"" << client_address(n) << "\"\n\n";
  }
  return path;
}

bool TestCluster::StartNode(int id, const std::vector<int>& joining_shards) {
  Node& n = nodes_[static_cast<size_t>(id - 1)];
  if (n.pid > 0) return true;
  const std::string config = WriteConfig(id, joining_shards);
  const std::string log = dir_ + "/node" + std::to_string(id) + ".log";
  n.pid = ::fork();
  if (n.pid == 0) {
    FILE* out = std::fopen(log.c_str(), "a");
    if (out != nullptr) {
      ::dup2(fileno(out), 1);
      ::dup2(fileno(out), 2);
    }
    ::execl(FLOTILLA_NODEHOST, FLOTILLA_NODEHOST, "serve", "--config", config.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return n.pid > 0;
}

bool TestCluster::MakeCertificates() const {
  // Test-only certificates, valid for two days: a CA, one certificate per
  // node (server and client use, for 127.0.0.1), a client certificate, and
  // one from a CA the daemons do not trust.
  std::string script = "set -e; cd '" + dir_ + "'\n" +
                       "key='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'\n"
                       "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n"
                       "extendedKeyUsage=serverAuth,clientAuth\\n' > ext\n"
                       "for ca in ca rogue-ca client-ca; do openssl req -x509 $key -keyout "
                       "$ca.key -out $ca.pem -days 2 -subj /CN=$ca; done\n"
                       "cert() { openssl req $key -keyout $1.key -out $1.csr -subj /CN=$1; "
                       "openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial "
                       "-out $1.pem -days 2 -extfile ext; }\n"
                       "cert client ca; cert rogue rogue-ca; cert kvclient client-ca\n";
  for (size_t i = 0; i < nodes_.size(); ++i)
    script += "cert node" + std::to_string(i + 1) + " ca\n";
  return std::system(("bash -c " + ShellQuote(script) + " >/dev/null 2>&1").c_str()) == 0;
}

void TestCluster::PickPorts() {
  // Distinct ports: a port just released may be handed out again.
  std::set<int> taken;
  const auto pick = [&taken] {
    int p = FreePort();
    while (!taken.insert(p).second) p = FreePort();
    return p;
  };
  for (Node& n : nodes_) {
    n.raft_port = pick();
    n.client_port = pick();
    n.metrics_port = pick();
  }
}

std::string TestCluster::data_dir(int id) const {
  const std::string root = o_.node_data_root.count(id) != 0 ? o_.node_data_root.at(id)
                           : o_.data_root.empty()           ? dir_
                                                            : o_.data_root;
  return root + "/node" + std::to_string(id);
}

bool TestCluster::Start() {
  if (o_.tls && !MakeCertificates()) return false;
  // A port FreePort chose can be taken by another test before a daemon binds
  // it (ctest runs tests side by side). When a daemon says it cannot listen,
  // the whole cluster starts again from nothing on new ports, at most twice
  // more: its peers' configurations name its ports.
  for (int attempt = 1;; ++attempt) {
    for (int i = 1; i <= o_.nodes; ++i)
      if (!StartNode(i)) return false;
    if (WaitReady(30s)) return true;
    bool port_taken = false;
    for (int i = 1; i <= o_.nodes; ++i)
      port_taken |= log_of(i).find("cannot listen on") != std::string::npos;
    if (!port_taken || attempt == 3) return false;
    std::fprintf(stderr, "test cluster: a port was taken before its daemon bound it; restarting\n");
    for (int i = 1; i <= o_.nodes; ++i) {
      KillNode(i);
      std::filesystem::remove_all(data_dir(i));
      std::filesystem::remove(dir_ + "/node" + std::to_string(i) + ".log");
    }
    PickPorts();
  }
}

void TestCluster::KillNode(int id) {
  Node& n = nodes_[static_cast<size_t>(id - 1)];
  if (n.pid <= 0) return;
  ::kill(n.pid, SIGKILL);
  ::waitpid(n.pid, nullptr, 0);
  n.pid = -1;
}

void TestCluster::SignalNode(int id, int sig) {
  const Node& n = nodes_[static_cast<size_t>(id - 1)];
  if (n.pid > 0) ::kill(n.pid, sig);
}

int TestCluster::StopNode(int id) {
  Node& n = nodes_[static_cast<size_t>(id - 1)];
  if (n.pid <= 0) return -1;
  ::kill(n.pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(n.pid, &status, WNOHANG) == n.pid) {
      n.pid = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(20ms);
  }
  KillNode(id);
  return -1;
}

bool TestCluster::Running(int id) const { return nodes_[static_cast<size_t>(id - 1)].pid > 0; }

bool TestCluster::WaitReady(std::chrono::milliseconds limit, uint64_t not_led_by) {
  ClientOptions o;
  for (size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].pid > 0) o.endpoints.push_back(client_address(static_cast<int>(i + 1)));
  o.timeout = 1s;
  // Credentials, in case the daemons want them for every call.
  if (o_.tls) {
    const std::string client = dir_ + (o_.client_tls ? "/kvclient" : "/client");
    o.ca_file = dir_ + "/ca.pem";
    o.cert_file = client + ".pem";
    o.key_file = client + ".key";
  }
  if (o_.token) {
    o.token = ReadAll(token_file_);
    o.token.pop_back();  // its newline
  }
  std::string error;
  std::unique_ptr<Client> c = Client::Create(o, &error);
  if (!c) return false;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    bool ready = true;
    for (const std::string& e : o.endpoints) {
      ShardsResponse res;
      if (!c->Shards(e, &res).ok() || res.replicas().empty()) {
        ready = false;
        break;
      }
      for (const ReplicaStatus& r : res.replicas())
        ready = ready && r.leader() != 0 && r.leader() != not_led_by;
    }
    if (ready) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

CliResult TestCluster::Cli(const std::vector<std::string>& args) const {
  static int counter = 0;
  const std::string base = dir_ + "/cli" + std::to_string(++counter);
  std::string cmd = ShellQuote(FLOTILLA_NODEHOST);
  bool has_endpoints = false;
  for (const std::string& a : args) has_endpoints = has_endpoints || a == "--endpoints";
  if (!has_endpoints) cmd += " --endpoints " + ShellQuote(endpoints());
  for (const std::string& a : args) cmd += " " + ShellQuote(a);
  cmd += " >" + base + ".out 2>" + base + ".err </dev/null";
  const int status = std::system(cmd.c_str());
  CliResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = ReadAll(base + ".out");
  r.err = ReadAll(base + ".err");
  return r;
}

std::string Curl(const std::string& url, const std::string& flags) {
  std::string out;
  FILE* p = ::popen(("curl " + flags + " " + url).c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

}  // namespace flotilla::nodehost::testing
