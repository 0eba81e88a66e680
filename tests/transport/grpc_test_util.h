// Helpers for the tests over real loopback gRPC: a NodeHost-like pair of
// transport + handler, a log capture, and a TCP proxy whose connections a
// test can cut.
#pragma once

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/transport/test_util.h"
#include "transport/grpc_transport.h"

namespace flotilla::transport::testing {

// Settings that keep the tests fast: short backoffs and timeouts.
TransportConfig FastConfig(const std::string& snapshot_dir, uint64_t deployment_id = 1);

// A transport with its own handler.
struct Node {
  Node(TransportConfig config, Registry* registry)
      : transport(NewGrpcTransport(std::move(config), registry, &handler)) {}
  ~Node() { transport->Stop(); }
  RecordingHandler handler;
  std::unique_ptr<Transport> transport;
};

// Captures spdlog lines while alive.
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  bool Contains(const std::string& needle) const;
  // Lines that hold `needle`.
  size_t Count(const std::string& needle) const;

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

// Forwards TCP connections from its own loopback port to `upstream`.
// Cut() breaks every open connection; new ones are accepted afterwards.
//
// Thread-safety: thread-safe.
class TcpProxy {
 public:
  explicit TcpProxy(std::string upstream);
  ~TcpProxy();
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void Cut();
  // Holds each new connection this long before joining it to the upstream,
  // as a far or overloaded peer would: its first bytes arrive that late.
  void SetConnectDelay(std::chrono::milliseconds delay) { connect_delay_ms_ = delay.count(); }

 private:
  void AcceptLoop();
  void Pump(int from, int to);

  std::string upstream_host_;
  int upstream_port_ = 0;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> connect_delay_ms_{0};
  std::mutex mu_;
  std::vector<int> fds_;              // guarded by mu_
  std::vector<std::thread> threads_;  // guarded by mu_
  std::thread acceptor_;
};

}  // namespace flotilla::transport::testing
