// Transport micro-benchmark: two NodeHosts (gRPC transports) in one process
// over loopback; one sends appends of many shards to the other as fast as the
// bounded queues take them, batching on. Prints messages/s and MB/s.
//
//   transport_bench [--seconds=5] [--shards=1000] [--payload_bytes=16]
//                   [--pass_messages=1024] [--max_batch_bytes=1048576]
//
// The figures and the command that produced them are in docs/transport.md.
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include <unistd.h>

#include "transport/grpc_transport.h"

namespace {

using flotilla::transport::DroppedTarget;
using flotilla::transport::Registry;
using flotilla::transport::TransportConfig;
namespace raft = flotilla::raft;

// Counts what arrives. Thread-safety: thread-safe (atomics).
class CountingHandler final : public flotilla::transport::Handler {
 public:
  void HandleBatch(std::vector<raft::Message>&& messages, const std::string&) override {
    uint64_t bytes = 0;
    for (const raft::Message& m : messages) {
      for (const raft::Entry& e : m.entries) bytes += e.cmd.size();
    }
    messages_.fetch_add(messages.size(), std::memory_order_relaxed);
    payload_bytes_.fetch_add(bytes, std::memory_order_relaxed);
    batches_.fetch_add(1, std::memory_order_relaxed);
  }
  void HandleUnreachable(raft::ShardId, raft::ReplicaId) override {}
  void HandleSnapshot(raft::Message, std::string) override {}
  void HandleSnapshotStatus(raft::ShardId, raft::ReplicaId, bool) override {}

  uint64_t messages() const { return messages_.load(); }
  uint64_t payload_bytes() const { return payload_bytes_.load(); }
  uint64_t batches() const { return batches_.load(); }

 private:
  std::atomic<uint64_t> messages_{0};
  std::atomic<uint64_t> payload_bytes_{0};
  std::atomic<uint64_t> batches_{0};
};

uint64_t Flag(int argc, char** argv, const std::string& name, uint64_t fallback) {
  const std::string prefix = "--" + name + "=";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind(prefix, 0) == 0) return std::strtoull(a.c_str() + prefix.size(), nullptr, 10);
  }
  return fallback;
}

TransportConfig Config(const std::string& dir, uint64_t max_batch_bytes) {
  TransportConfig c;
  c.listen_address = "127.0.0.1:0";
  c.deployment_id = 1;
  c.snapshot_dir = dir;
  c.max_batch_bytes = max_batch_bytes;
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t seconds = Flag(argc, argv, "seconds", 5);
  const uint64_t shards = std::max<uint64_t>(Flag(argc, argv, "shards", 1000), 1);
  const uint64_t payload_bytes = Flag(argc, argv, "payload_bytes", 16);
  const uint64_t pass_messages = std::max<uint64_t>(Flag(argc, argv, "pass_messages", 1024), 1);
  const uint64_t max_batch_bytes = Flag(argc, argv, "max_batch_bytes", 1u << 20);
  spdlog::set_level(spdlog::level::warn);

  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("flotilla-transport-bench-" + std::to_string(::getpid()));
  Registry registry;
  CountingHandler ha, hb;
  auto a =
      flotilla::transport::NewGrpcTransport(Config(dir / "a", max_batch_bytes), &registry, &ha);
  auto b =
      flotilla::transport::NewGrpcTransport(Config(dir / "b", max_batch_bytes), &registry, &hb);
  for (auto* t : {a.get(), b.get()}) {
    if (flotilla::Status s = t->Start(); !s.ok()) {
      std::fprintf(stderr, "start: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  for (raft::ShardId s = 1; s <= shards; ++s) {
    registry.Add(s, 1, a->address());
    registry.Add(s, 2, b->address());
  }

  std::vector<raft::Index> next_index(shards + 1, 1);
  std::vector<raft::Message> pass;
  std::vector<DroppedTarget> dropped;
  const std::string payload(payload_bytes, 'p');
  uint64_t shard = 0, sent = 0, drops = 0;
  auto send_pass = [&] {
    for (uint64_t i = 0; i < pass_messages; ++i) {
      shard = shard % shards + 1;
      raft::Message m;
      m.type = raft::MessageType::kReplicate;
      m.shard_id = shard;
      m.from = 1;
      m.to = 2;
      m.term = 2;
      raft::Index idx = next_index[shard]++;
      m.log_index = idx - 1;
      m.log_term = 2;
      m.commit = idx - 1;
      raft::Entry e;
      e.term = 2;
      e.index = idx;
      e.cmd = payload;
      m.entries.push_back(std::move(e));
      pass.push_back(std::move(m));
    }
    dropped.clear();
    a->SendBatch(pass, &dropped);
    sent += pass_messages;
    if (!dropped.empty()) {
      // The queue is full: the receiver is the bottleneck. Back off briefly,
      // as an engine would until its next pass.
      ++drops;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  };

  // Warm up until the connection is up and messages flow.
  const auto warm_until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (std::chrono::steady_clock::now() < warm_until) send_pass();

  const uint64_t m0 = hb.messages(), p0 = hb.payload_bytes(), b0 = hb.batches();
  const auto t0 = std::chrono::steady_clock::now();
  const auto end = t0 + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < end) send_pass();
  const auto t1 = std::chrono::steady_clock::now();
  const uint64_t m1 = hb.messages(), p1 = hb.payload_bytes(), b1 = hb.batches();

  const double secs = std::chrono::duration<double>(t1 - t0).count();
  const double msgs = static_cast<double>(m1 - m0);
  std::printf(
      "transport_bench: shards=%llu payload_bytes=%llu pass_messages=%llu max_batch_bytes=%llu "
      "seconds=%.1f\n",
      static_cast<unsigned long long>(shards), static_cast<unsigned long long>(payload_bytes),
      static_cast<unsigned long long>(pass_messages),
      static_cast<unsigned long long>(max_batch_bytes), secs);
  std::printf(
      "  delivered %.0f messages/s, payload %.2f MB/s, %.0f batches/s, %.0f messages/batch\n",
      msgs / secs, static_cast<double>(p1 - p0) / secs / 1e6, static_cast<double>(b1 - b0) / secs,
      msgs / std::max<double>(1, static_cast<double>(b1 - b0)));
  std::printf("  passes that hit a full queue: %llu of %llu\n",
              static_cast<unsigned long long>(drops),
              static_cast<unsigned long long>(sent / pass_messages));
  a->Stop();
  b->Stop();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}
