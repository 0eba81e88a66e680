#include "tests/transport/grpc_test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

namespace flotilla::transport::testing {

TransportConfig FastConfig(const std::string& snapshot_dir, uint64_t deployment_id) {
  TransportConfig c;
  c.listen_address = "127.0.0.1:0";
  c.deployment_id = deployment_id;
  c.snapshot_dir = snapshot_dir;
  c.connect_timeout_ms = 500;
  c.reconnect_backoff_initial_ms = 20;
  c.reconnect_backoff_max_ms = 200;
  c.shutdown_grace_ms = 50;
  c.snapshot_timeout_ms = 30000;
  return c;
}

LogCapture::LogCapture() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(512)) {
  spdlog::default_logger()->sinks().push_back(sink_);
}

LogCapture::~LogCapture() {
  auto& sinks = spdlog::default_logger()->sinks();
  sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
}

bool LogCapture::Contains(const std::string& needle) const {
  for (const std::string& line : sink_->last_formatted()) {
    if (line.find(needle) != std::string::npos) return true;
  }
  return false;
}

size_t LogCapture::Count(const std::string& needle) const {
  size_t n = 0;
  for (const std::string& line : sink_->last_formatted()) {
    n += line.find(needle) != std::string::npos;
  }
  return n;
}

TcpProxy::TcpProxy(std::string upstream) {
  size_t colon = upstream.rfind(':');
  upstream_host_ = upstream.substr(0, colon);
  upstream_port_ = std::stoi(upstream.substr(colon + 1));
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) std::abort();
  socklen_t len = sizeof(addr);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  ::listen(listen_fd_, 64);
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

TcpProxy::~TcpProxy() {
  stopping_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  ::close(listen_fd_);
  Cut();
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
  std::lock_guard lock(mu_);
  for (int fd : fds_) ::close(fd);
}

void TcpProxy::Cut() {
  std::lock_guard lock(mu_);
  for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
}

void TcpProxy::AcceptLoop() {
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    int client = ::accept(listen_fd_, nullptr, nullptr);
    if (client < 0) continue;
    std::this_thread::sleep_for(std::chrono::milliseconds(connect_delay_ms_.load()));
    int server = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    ::inet_pton(AF_INET, upstream_host_.c_str(), &addr.sin_addr);
    addr.sin_port = htons(static_cast<uint16_t>(upstream_port_));
    if (::connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(client);
      ::close(server);
      continue;
    }
    std::lock_guard lock(mu_);
    fds_.push_back(client);
    fds_.push_back(server);
    threads_.emplace_back([this, client, server] { Pump(client, server); });
    threads_.emplace_back([this, client, server] { Pump(server, client); });
  }
}

void TcpProxy::Pump(int from, int to) {
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::read(from, buf, sizeof(buf));
    if (n <= 0) break;
    ssize_t off = 0;
    while (off < n) {
      ssize_t w = ::send(to, buf + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
      if (w <= 0) return;
      off += w;
    }
  }
  ::shutdown(to, SHUT_RDWR);
}

}  // namespace flotilla::transport::testing
