// Three NodeHosts as separate processes (tools/testd.cc) on loopback: one is
// killed with SIGKILL under load and restarted from its disk; no
// acknowledged write is lost, on any replica.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "tests/net_util.h"

namespace flotilla {
namespace {

using namespace std::chrono_literals;

using testing::FreePort;

// One daemon process, driven over its stdin/stdout. Used by one thread.
class Daemon {
 public:
  Daemon(int id, std::string dir, std::string members)
      : id_(id), dir_(std::move(dir)), members_(std::move(members)) {}
  ~Daemon() { Kill(); }

  bool Start() {
    int in[2];
    int out[2];
    if (::pipe(in) != 0 || ::pipe(out) != 0) return false;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::close(in[1]);
      ::close(out[0]);
      const std::string id = std::to_string(id_);
      ::execl(FLOTILLA_TESTD, FLOTILLA_TESTD, "--id", id.c_str(), "--dir", dir_.c_str(),
              "--members", members_.c_str(), "--shards", "4", "--rtt-ms", "10",
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    to_ = in[1];
    from_ = out[0];
    buf_.clear();
    return ReadLine(20s).rfind("ready", 0) == 0;
  }

  // Sends one command; returns its answer ("" when the process is gone).
  std::string Call(const std::string& cmd) {
    const std::string line = cmd + "\n";
    if (::write(to_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return "";
    return ReadLine(30s);
  }

  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    ::close(to_);
    ::close(from_);
  }

  void Quit() {
    if (pid_ <= 0) return;
    Call("quit");
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    ::close(to_);
    ::close(from_);
  }

 private:
  std::string ReadLine(std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (true) {
      const auto nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return "";
      pollfd p{from_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return "";
      char tmp[4096];
      const ssize_t n = ::read(from_, tmp, sizeof(tmp));
      if (n <= 0) return "";
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }

  int id_;
  std::string dir_;
  std::string members_;
  pid_t pid_ = -1;
  int to_ = -1;
  int from_ = -1;
  std::string buf_;
};

TEST(Processes, SigkillUnderLoadLosesNoAcknowledgedWrite) {
  std::random_device rd;
  const std::string root =
      (std::filesystem::temp_directory_path() / ("flotilla-procs-" + std::to_string(rd())))
          .string();
  std::string members;
  for (int i = 1; i <= 3; ++i) {
    members += (i > 1 ? "," : "") + std::to_string(i) + "=127.0.0.1:" + std::to_string(FreePort());
  }
  std::vector<std::unique_ptr<Daemon>> d;
  for (int i = 1; i <= 3; ++i) {
    d.push_back(std::make_unique<Daemon>(i, root + "/n" + std::to_string(i), members));
    ASSERT_TRUE(d.back()->Start()) << "daemon " << i << " did not start";
  }
  std::mutex mu;
  std::map<std::string, std::string> acked;  // key -> value, unique keys
  std::atomic<bool> stop{false};
  std::atomic<int> n_acked{0};
  // The writer uses daemons 1 and 2 only; daemon 3 is killed and restarted.
  std::thread writer([&] {
    for (int i = 0; !stop.load(); ++i) {
      const std::string key = "k" + std::to_string(i);
      const std::string value = "v" + std::to_string(i);
      const int shard = 1 + i % 4;
      const std::string answer = d[static_cast<size_t>(i % 2)]->Call(
          "put " + std::to_string(shard) + " " + key + " " + value);
      if (answer.rfind("ok", 0) == 0) {
        std::lock_guard<std::mutex> l(mu);
        acked[key] = value;
        ++n_acked;
      }
    }
  });
  auto wait_for = [&](int n) {
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (n_acked.load() < n && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(10ms);
  };
  wait_for(150);
  d[2]->Kill();  // SIGKILL in the middle of the load
  const int at_kill = n_acked.load();
  wait_for(at_kill + 300);  // the two others keep serving (and snapshot)
  ASSERT_GE(n_acked.load(), at_kill + 300) << "the surviving majority stopped serving";
  ASSERT_TRUE(d[2]->Start()) << "daemon 3 did not restart";
  wait_for(n_acked.load() + 150);
  stop.store(true);
  writer.join();
  // Every acknowledged write is readable, linearizably, on every replica.
  std::lock_guard<std::mutex> l(mu);
  ASSERT_GT(acked.size(), 500u);
  for (int i = 0; i < 3; ++i) {
    size_t checked = 0;
    for (const auto& [key, value] : acked) {
      if (checked++ % 7 != 0) continue;  // a sample keeps the test short
      const int shard = 1 + std::stoi(key.substr(1)) % 4;
      std::string answer;
      for (int attempt = 0; attempt < 50; ++attempt) {
        answer = d[static_cast<size_t>(i)]->Call("get " + std::to_string(shard) + " " + key);
        if (answer.rfind("val", 0) == 0) break;
        std::this_thread::sleep_for(50ms);
      }
      ASSERT_EQ(answer, "val " + value) << "daemon " << i + 1 << " key " << key;
    }
  }
  for (auto& x : d) x->Quit();
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace flotilla
