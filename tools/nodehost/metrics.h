// Prometheus text exposition (format 0.0.4) for the daemon: a writer for the
// text format, a fixed-bucket latency histogram, and the daemon's own
// counters (client requests by method and code, engine events).
//
// Label sets are bounded by construction: methods and codes are enums, and
// nothing is labelled by key, client or shard.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "flotilla/events.h"
#include "flotilla/metrics.h"

namespace flotilla::nodehost {

// Builds one exposition. Not thread-safe; use one per scrape.
class PromWriter {
 public:
  // Starts a metric family. `type`: counter, gauge or histogram.
  void Family(std::string_view name, std::string_view help, std::string_view type);
  // One sample. `labels` is empty or `a="x",b="y"` (values escaped by Label).
  void Sample(std::string_view name, std::string_view labels, double value);
  void Sample(std::string_view name, std::string_view labels, uint64_t value);
  // A histogram: `bounds` are the buckets' upper bounds (ascending, no +Inf),
  // `counts` the per-bucket (not cumulative) counts with one more element
  // for +Inf; `sum` in the histogram's unit.
  void Histogram(std::string_view name, std::string_view labels, const std::vector<double>& bounds,
                 const std::vector<uint64_t>& counts, double sum);
  // `name="value"` with the value escaped as the format requires.
  static std::string Label(std::string_view name, std::string_view value);
  const std::string& text() const { return out_; }

 private:
  std::string out_;
};

// A histogram of durations with fixed exponential buckets from 100 us to
// about 13 s. Thread-safe (relaxed atomics).
class DurationHistogram {
 public:
  static const std::vector<double>& BoundsSeconds();
  void Observe(double seconds);
  void Render(PromWriter* w, std::string_view name, std::string_view labels) const;
  uint64_t count() const;

 private:
  static constexpr size_t kBuckets = 18;  // + one for +Inf
  std::array<std::atomic<uint64_t>, kBuckets + 1> counts_{};
  std::atomic<uint64_t> sum_nanos_{0};
};

// Client-facing methods of the daemon (the label values of "method").
enum class Method : uint8_t {
  kPut,
  kGet,
  kDelete,
  kCas,
  kScan,
  kShardMap,
  kStatus,
  kShards,
  kShard,
  kAddReplica,
  kRemoveReplica,
  kTransferLeader,
  kSnapshot,
  kRegisterSession,
  kExportShard,
  kComputeHash,
  kGetHash,
  kCount,
};
std::string_view MethodName(Method m);

// The daemon's own counters. Thread-safe.
class DaemonMetrics {
 public:
  // `grpc_code` is the gRPC status code (0..16) the request ended with.
  void CountRequest(Method m, int grpc_code, double seconds);
  uint64_t requests(Method m, int grpc_code) const;
  void Render(PromWriter* w) const;

  // Engine events the engine's own metrics do not count (an EventListener
  // forwards them here).
  std::atomic<uint64_t> snapshots_send_failed{0};
  std::atomic<uint64_t> connections_up{0};
  std::atomic<uint64_t> connections_down{0};

 private:
  static constexpr size_t kMethods = static_cast<size_t>(Method::kCount);
  static constexpr size_t kCodes = 17;
  std::array<std::array<std::atomic<uint64_t>, kCodes>, kMethods> requests_{};
  std::array<DurationHistogram, kMethods> latency_{};
};

// Counts the engine's events into DaemonMetrics (no per-shard state).
class MetricsListener final : public EventListener {
 public:
  explicit MetricsListener(DaemonMetrics* m) : m_(m) {}
  void SnapshotSent(uint64_t, uint64_t, bool failed) override;
  void ConnectionUp(const std::string&) override;
  void ConnectionDown(const std::string&) override;

 private:
  DaemonMetrics* m_;
};

// Renders the engine's NodeHostMetrics (families named flotilla_*): totals
// per NodeHost, no per-shard labels.
void RenderEngineMetrics(const NodeHostMetrics& m, PromWriter* w);

// gRPC's canonical code names ("OK", "NOT_FOUND", ...), the label values of
// "code".
std::string_view GrpcCodeName(int code);

}  // namespace flotilla::nodehost
