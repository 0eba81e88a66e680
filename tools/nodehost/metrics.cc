#include "tools/nodehost/metrics.h"

#include <charconv>
#include <cmath>

namespace flotilla::nodehost {
namespace {

std::string FormatDouble(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // The shortest text that reads back as the same double.
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

std::string Join(std::string_view labels, std::string_view extra) {
  std::string out(labels);
  if (!out.empty() && !extra.empty()) out.push_back(',');
  out.append(extra);
  return out;
}

}  // namespace

void PromWriter::Family(std::string_view name, std::string_view help, std::string_view type) {
  out_.append("# HELP ").append(name).append(" ");
  for (char c : help) {
    if (c == '\\')
      out_.append("\\\\");
    else if (c == '\n')
      out_.append("\\n");
    else
      out_.push_back(c);
  }
  out_.append("\n# TYPE ").append(name).append(" ").append(type).append("\n");
}

void PromWriter::Sample(std::string_view name, std::string_view labels, double value) {
  out_.append(name);
  if (!labels.empty()) out_.append("{").append(labels).append("}");
  out_.append(" ").append(FormatDouble(value)).append("\n");
}

void PromWriter::Sample(std::string_view name, std::string_view labels, uint64_t value) {
  out_.append(name);
  if (!labels.empty()) out_.append("{").append(labels).append("}");
  out_.append(" ").append(std::to_string(value)).append("\n");
}

void PromWriter::Histogram(std::string_view name, std::string_view labels,
                           const std::vector<double>& bounds, const std::vector<uint64_t>& counts,
                           double sum) {
  const std::string bucket = std::string(name) + "_bucket";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds.size(); ++i) {
    cumulative += i < counts.size() ? counts[i] : 0;
    Sample(bucket, Join(labels, Label("le", FormatDouble(bounds[i]))), cumulative);
  }
  for (size_t i = bounds.size(); i < counts.size(); ++i) cumulative += counts[i];
  Sample(bucket, Join(labels, Label("le", "+Inf")), cumulative);
  Sample(std::string(name) + "_sum", labels, sum);
  Sample(std::string(name) + "_count", labels, cumulative);
}

std::string PromWriter::Label(std::string_view name, std::string_view value) {
  std::string out(name);
  out.append("=\"");
  for (char c : value) {
    if (c == '\\')
      out.append("\\\\");
    else if (c == '"')
      out.append("\\\"");
    else if (c == '\n')
      out.append("\\n");
    else
      out.push_back(c);
  }
  out.push_back('"');
  return out;
}

const std::vector<double>& LatencyHistogram::BoundsSeconds() {
  static const std::vector<double> bounds = [] {
    std::vector<double> b;
    double v = 0.0001;
    for (size_t i = 0; i < kBuckets; ++i, v *= 2) b.push_back(v);
    return b;
  }();
  return bounds;
}

void LatencyHistogram::Observe(double seconds) {
  const std::vector<double>& b = BoundsSeconds();
  size_t i = 0;
  while (i < b.size() && seconds > b[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_nanos_.fetch_add(static_cast<uint64_t>(seconds * 1e9), std::memory_order_relaxed);
}

uint64_t LatencyHistogram::count() const {
  uint64_t n = 0;
  for (const auto& c : counts_) n += c.load(std::memory_order_relaxed);
  return n;
}

void LatencyHistogram::Render(PromWriter* w, std::string_view name, std::string_view labels) const {
  std::vector<uint64_t> counts;
  for (const auto& c : counts_) counts.push_back(c.load(std::memory_order_relaxed));
  w->Histogram(name, labels, BoundsSeconds(), counts,
               static_cast<double>(sum_nanos_.load(std::memory_order_relaxed)) / 1e9);
}

std::string_view MethodName(Method m) {
  static constexpr std::array<std::string_view, static_cast<size_t>(Method::kCount)> kNames = {
      "Put",    "Get",   "Delete",     "Cas",           "Scan",           "ShardMap", "Status",
      "Shards", "Shard", "AddReplica", "RemoveReplica", "TransferLeader", "Snapshot"};
  return kNames[static_cast<size_t>(m)];
}

std::string_view GrpcCodeName(int code) {
  static constexpr std::array<std::string_view, 17> kNames = {"OK",
                                                              "CANCELLED",
                                                              "UNKNOWN",
                                                              "INVALID_ARGUMENT",
                                                              "DEADLINE_EXCEEDED",
                                                              "NOT_FOUND",
                                                              "ALREADY_EXISTS",
                                                              "PERMISSION_DENIED",
                                                              "RESOURCE_EXHAUSTED",
                                                              "FAILED_PRECONDITION",
                                                              "ABORTED",
                                                              "OUT_OF_RANGE",
                                                              "UNIMPLEMENTED",
                                                              "INTERNAL",
                                                              "UNAVAILABLE",
                                                              "DATA_LOSS",
                                                              "UNAUTHENTICATED"};
  return code >= 0 && code < 17 ? kNames[static_cast<size_t>(code)] : "UNKNOWN";
}

void DaemonMetrics::CountRequest(Method m, int grpc_code, double seconds) {
  const size_t mi = static_cast<size_t>(m);
  const size_t ci = grpc_code >= 0 && grpc_code < static_cast<int>(kCodes)
                        ? static_cast<size_t>(grpc_code)
                        : 2;  // UNKNOWN
  requests_[mi][ci].fetch_add(1, std::memory_order_relaxed);
  latency_[mi].Observe(seconds);
}

uint64_t DaemonMetrics::requests(Method m, int grpc_code) const {
  return requests_[static_cast<size_t>(m)][static_cast<size_t>(grpc_code)].load(
      std::memory_order_relaxed);
}

void DaemonMetrics::Render(PromWriter* w) const {
  w->Family("nodehost_client_requests_total",
            "Client and admin requests the daemon answered, by method and gRPC code.", "counter");
  for (size_t m = 0; m < kMethods; ++m) {
    for (size_t c = 0; c < kCodes; ++c) {
      const uint64_t n = requests_[m][c].load(std::memory_order_relaxed);
      // Every method's OK sample is always present, so that rates start at 0.
      if (n == 0 && c != 0) continue;
      w->Sample("nodehost_client_requests_total",
                PromWriter::Label("method", MethodName(static_cast<Method>(m))) + "," +
                    PromWriter::Label("code", GrpcCodeName(static_cast<int>(c))),
                n);
    }
  }
  w->Family("nodehost_client_request_duration_seconds",
            "Time from receiving a client or admin request to answering it.", "histogram");
  for (size_t m = 0; m < kMethods; ++m) {
    latency_[m].Render(w, "nodehost_client_request_duration_seconds",
                       PromWriter::Label("method", MethodName(static_cast<Method>(m))));
  }
  const auto counter = [w](std::string_view name, std::string_view help,
                           const std::atomic<uint64_t>& v) {
    w->Family(name, help, "counter");
    w->Sample(name, "", v.load(std::memory_order_relaxed));
  };
  counter("nodehost_leader_changes_observed_total",
          "Leader changes the engine reported for the replicas of this daemon.", leader_changes);
  counter("nodehost_snapshots_sent_total", "Snapshot streams this daemon sent.", snapshots_sent);
  counter("nodehost_snapshots_send_failed_total", "Snapshot streams that failed.",
          snapshots_send_failed);
  counter("nodehost_snapshots_received_total", "Snapshots this daemon received and installed.",
          snapshots_received);
  counter("nodehost_connections_up_total", "Connections to other daemons established.",
          connections_up);
  counter("nodehost_connections_down_total", "Connections to other daemons lost.",
          connections_down);
}

void MetricsListener::LeaderChanged(uint64_t, uint64_t, uint64_t, uint64_t) {
  m_->leader_changes.fetch_add(1, std::memory_order_relaxed);
}
void MetricsListener::SnapshotSent(uint64_t, uint64_t, bool failed) {
  (failed ? m_->snapshots_send_failed : m_->snapshots_sent).fetch_add(1, std::memory_order_relaxed);
}
void MetricsListener::SnapshotReceived(uint64_t, uint64_t, uint64_t) {
  m_->snapshots_received.fetch_add(1, std::memory_order_relaxed);
}
void MetricsListener::ConnectionUp(const std::string&) {
  m_->connections_up.fetch_add(1, std::memory_order_relaxed);
}
void MetricsListener::ConnectionDown(const std::string&) {
  m_->connections_down.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace flotilla::nodehost
