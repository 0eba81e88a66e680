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

const std::vector<double>& DurationHistogram::BoundsSeconds() {
  static const std::vector<double> bounds = [] {
    std::vector<double> b;
    double v = 0.0001;
    for (size_t i = 0; i < kBuckets; ++i, v *= 2) b.push_back(v);
    return b;
  }();
  return bounds;
}

void DurationHistogram::Observe(double seconds) {
  const std::vector<double>& b = BoundsSeconds();
  size_t i = 0;
  while (i < b.size() && seconds > b[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_nanos_.fetch_add(static_cast<uint64_t>(seconds * 1e9), std::memory_order_relaxed);
}

uint64_t DurationHistogram::count() const {
  uint64_t n = 0;
  for (const auto& c : counts_) n += c.load(std::memory_order_relaxed);
  return n;
}

void DurationHistogram::Render(PromWriter* w, std::string_view name,
                               std::string_view labels) const {
  std::vector<uint64_t> counts;
  for (const auto& c : counts_) counts.push_back(c.load(std::memory_order_relaxed));
  w->Histogram(name, labels, BoundsSeconds(), counts,
               static_cast<double>(sum_nanos_.load(std::memory_order_relaxed)) / 1e9);
}

std::string_view MethodName(Method m) {
  static constexpr std::array<std::string_view, static_cast<size_t>(Method::kCount)> kNames = {
      "Put",           "Get",
      "Delete",        "Cas",
      "Scan",          "ShardMap",
      "Status",        "Shards",
      "Shard",         "AddReplica",
      "RemoveReplica", "TransferLeader",
      "Snapshot",      "RegisterSession",
      "ExportShard",   "ComputeHash",
      "GetHash"};
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
  counter("nodehost_snapshots_send_failed_total", "Snapshot streams to followers that failed.",
          snapshots_send_failed);
  counter("nodehost_connections_up_total", "Connections to other daemons established.",
          connections_up);
  counter("nodehost_connections_down_total", "Connections to other daemons lost.",
          connections_down);
}

void MetricsListener::SnapshotSent(uint64_t, uint64_t, bool failed) {
  if (failed) m_->snapshots_send_failed.fetch_add(1, std::memory_order_relaxed);
}
void MetricsListener::ConnectionUp(const std::string&) {
  m_->connections_up.fetch_add(1, std::memory_order_relaxed);
}
void MetricsListener::ConnectionDown(const std::string&) {
  m_->connections_down.fetch_add(1, std::memory_order_relaxed);
}

namespace {

void EngineHistogram(PromWriter* w, std::string_view name, std::string_view help,
                     const LatencyHistogram& h) {
  std::vector<double> bounds;
  for (uint64_t us : LatencyHistogram::kBoundsUs) bounds.push_back(static_cast<double>(us) / 1e6);
  w->Family(name, help, "histogram");
  w->Histogram(name, "", bounds, std::vector<uint64_t>(h.counts.begin(), h.counts.end()),
               static_cast<double>(h.sum_us) / 1e6);
}

}  // namespace

void RenderEngineMetrics(const NodeHostMetrics& m, PromWriter* w) {
  struct Field {
    const char* name;
    const char* help;
    uint64_t value;
  };
  const Field counters[] = {
      {"flotilla_proposals_total", "Proposals accepted into a shard's queue.", m.proposals},
      {"flotilla_proposals_refused_total",
       "Proposals refused at once (busy, too large, storage failed).", m.proposals_refused},
      {"flotilla_proposals_dropped_total", "Proposals completed as dropped (no leader, limits).",
       m.proposals_dropped},
      {"flotilla_reads_total", "Linearizable reads accepted.", m.reads},
      {"flotilla_entries_committed_total", "Committed entries handed to the apply workers.",
       m.entries_committed},
      {"flotilla_entries_applied_total", "Entries applied to state machines.", m.entries_applied},
      {"flotilla_logdb_saves_total", "LogDB writes by the step workers (one per pass).", m.saves},
      {"flotilla_logdb_saved_entries_total", "Entries in those LogDB writes.", m.saved_entries},
      {"flotilla_logdb_saved_bytes_total", "Payload bytes of the entries in those writes.",
       m.saved_bytes},
      {"flotilla_messages_sent_total", "Raft messages handed to the transport.", m.messages_sent},
      {"flotilla_messages_received_total", "Raft messages received for local replicas.",
       m.messages_received},
      {"flotilla_messages_dropped_total",
       "Raft messages dropped (unknown replica, full queue, or unsent).", m.messages_dropped},
      {"flotilla_snapshots_sent_total", "Snapshots streamed to followers.", m.snapshots_sent},
      {"flotilla_snapshots_received_total", "Snapshots received from leaders.",
       m.snapshots_received},
      {"flotilla_snapshot_bytes_sent_total", "Bytes of snapshots streamed to followers.",
       m.snapshot_bytes_sent},
      {"flotilla_snapshot_bytes_received_total", "Bytes of snapshots received.",
       m.snapshot_bytes_received},
      {"flotilla_snapshots_taken_total", "Local snapshots taken.", m.snapshots_taken},
      {"flotilla_leader_changes_total", "Leader changes seen by local replicas.", m.leader_changes},
      {"flotilla_campaigns_total", "Elections started by local replicas.", m.campaigns},
      {"flotilla_replica_steps_total", "Replicas visited by the step workers.", m.replica_steps},
      {"flotilla_storage_corruptions_total",
       "Damaged data at rest found by a checksum; each stops the one replica it belongs to.",
       m.corruptions},
      {"flotilla_storage_resumes_total",
       "Times the LogDB resumed writing after its RocksDB had failed for want of space.",
       m.storage_resumes},
      {"flotilla_snapshots_damaged_total",
       "Own snapshots that failed their checksums while sent; each is dropped and taken anew.",
       m.snapshots_damaged},
  };
  for (const Field& f : counters) {
    w->Family(f.name, f.help, "counter");
    w->Sample(f.name, "", f.value);
  }
  w->Family("flotilla_messages_rejected_total",
            "Raft messages from peers that failed validation and were dropped, by reason.",
            "counter");
  for (const auto& [reason, n] : m.messages_rejected) {
    w->Sample("flotilla_messages_rejected_total", PromWriter::Label("reason", reason), n);
  }
  w->Family("flotilla_streams_refused_total",
            "Raft and snapshot streams from peers, or connections to them, refused by peer "
            "authentication, by reason.",
            "counter");
  for (const auto& [reason, n] : m.streams_refused) {
    w->Sample("flotilla_streams_refused_total", PromWriter::Label("reason", reason), n);
  }
  w->Family("flotilla_snapshot_receives_ended_total",
            "Incoming snapshot streams refused or ended by their limits, by reason (busy, "
            "peer_streams, peer_bytes, idle, total, evicted).",
            "counter");
  for (const auto& [reason, n] : m.snapshot_receives_ended) {
    w->Sample("flotilla_snapshot_receives_ended_total", PromWriter::Label("reason", reason), n);
  }
  EngineHistogram(w, "flotilla_logdb_save_duration_seconds",
                  "One LogDB save, from encoding to its durable return.", m.save_latency);
  EngineHistogram(w, "flotilla_logdb_fsync_duration_seconds",
                  "One fsync of the LogDB's write-ahead log.", m.fsync_latency);
  const Field gauges[] = {
      {"flotilla_shards", "Replicas running on this NodeHost.", m.shards},
      {"flotilla_leaders", "Replicas of this NodeHost that lead their shard.", m.leaders},
      {"flotilla_quiesced_shards", "Replicas of this NodeHost that are quiesced.", m.quiesced},
      {"flotilla_campaigning_shards", "Replicas of this NodeHost holding a campaign slot.",
       m.campaigning},
      {"flotilla_proposal_queue_depth", "Proposals and reads waiting for a step worker.",
       m.proposal_queue_depth},
      {"flotilla_apply_queue_depth", "Batches of committed entries waiting to be applied.",
       m.apply_queue_depth},
      {"flotilla_log_cache_bytes", "Bytes of entries kept in memory for replication and applying.",
       m.log_cache_bytes},
      {"flotilla_storage_failed", "1 when the LogDB failed and writes are refused.",
       m.storage_failed ? 1u : 0u},
      {"flotilla_storage_low",
       "1 while free space is below min_free_bytes and writes are refused (clears by itself).",
       m.storage_low ? 1u : 0u},
      {"flotilla_storage_free_bytes", "Least free space of the data and WAL directories.",
       m.storage_free_bytes},
      {"flotilla_snapshot_receives_active", "Incoming snapshot streams open now.",
       m.snapshot_receives_active},
  };
  for (const Field& f : gauges) {
    w->Family(f.name, f.help, "gauge");
    w->Sample(f.name, "", f.value);
  }
  // Entries and bytes per save, as averages since start (the counters above
  // give them over any window: rate(saved_entries) / rate(saves)).
  const double saves = m.saves == 0 ? 1.0 : static_cast<double>(m.saves);
  w->Family("flotilla_logdb_entries_per_save", "Average entries per LogDB save since start.",
            "gauge");
  w->Sample("flotilla_logdb_entries_per_save", "", static_cast<double>(m.saved_entries) / saves);
  w->Family("flotilla_logdb_bytes_per_save", "Average payload bytes per LogDB save since start.",
            "gauge");
  w->Sample("flotilla_logdb_bytes_per_save", "", static_cast<double>(m.saved_bytes) / saves);
}

}  // namespace flotilla::nodehost
