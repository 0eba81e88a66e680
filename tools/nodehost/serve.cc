#include "tools/nodehost/serve.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tools/nodehost/config.h"
#include "tools/nodehost/http_server.h"
#include "tools/nodehost/kv_state_machine.h"
#include "tools/nodehost/service.h"

namespace flotilla::nodehost {
namespace {

constexpr auto kShutdownGrace = std::chrono::seconds(2);
constexpr int kMaxServerThreads = 256;

Result<std::string> ReadFileTrimmed(const std::string& path, std::string_view what) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot read " + std::string(what) + " " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.erase(0, 1);
  if (s.empty()) return Status::InvalidArgument(std::string(what) + " " + path + " is empty");
  return s;
}

Result<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const DaemonConfig& c) {
  if (!c.tls()) return grpc::InsecureServerCredentials();
  Result<std::string> ca = ReadFileTrimmed(c.tls_ca_file, "tls.ca_file");
  Result<std::string> cert = ReadFileTrimmed(c.tls_cert_file, "tls.cert_file");
  Result<std::string> key = ReadFileTrimmed(c.tls_key_file, "tls.key_file");
  for (const Status& s : {ca.status(), cert.status(), key.status()}) FLOTILLA_RETURN_IF_ERROR(s);
  // A client certificate is requested and verified when sent; the admin
  // operations that change membership or data require one (Authorize).
  grpc::SslServerCredentialsOptions o(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  o.pem_root_certs = *ca + "\n";
  o.pem_key_cert_pairs.push_back({*key + "\n", *cert + "\n"});
  return grpc::SslServerCredentials(o);
}

Status StartReplicas(NodeHost* nh, const DaemonConfig& c) {
  for (const ShardEntry& s : c.shards) {
    if (!c.Hosts(s)) continue;
    const std::string dir =
        c.data_dir + "/kv/shard-" + std::to_string(s.id) + "-replica-" + std::to_string(c.node_id);
    Status st = nh->StartOnDiskReplica(
        c.ToShardConfig(s.id), c.InitialMembers(s), c.Joins(s),
        [dir](uint64_t, uint64_t) { return std::make_unique<KvStateMachine>(dir); });
    if (!st.ok()) return Status(st.code(), "shard " + std::to_string(s.id) + ": " + st.message());
  }
  return Status::Ok();
}

void Gauges(NodeHost* nh, PromWriter* w, double uptime_seconds) {
  const NodeHostInfo info = nh->GetInfo();
  uint64_t no_leader = 0, max_lag = 0;
  for (const ReplicaInfo& r : info.replicas) {
    no_leader += r.leader_id == 0;
    max_lag = std::max(max_lag, r.commit_index - std::min(r.commit_index, r.applied_index));
  }
  const auto gauge = [w](std::string_view name, std::string_view help, uint64_t v) {
    w->Family(name, help, "gauge");
    w->Sample(name, "", v);
  };
  gauge("nodehost_replicas_without_leader", "Replicas of this daemon that know no leader.",
        no_leader);
  gauge("nodehost_max_apply_lag_entries",
        "The largest commit index minus applied index over this daemon's replicas.", max_lag);
  w->Family("nodehost_uptime_seconds", "Seconds since the daemon started.", "gauge");
  w->Sample("nodehost_uptime_seconds", "", uptime_seconds);
  w->Family("nodehost_build_info", "The daemon's version, as a label.", "gauge");
  w->Sample("nodehost_build_info", PromWriter::Label("version", FLOTILLA_NODEHOST_VERSION),
            uint64_t{1});
}

HttpResponse Handle(const std::string& target, NodeHost* nh, const DaemonMetrics* m,
                    std::chrono::steady_clock::time_point started) {
  const std::string path = target.substr(0, target.find('?'));
  if (path == "/metrics") {
    const double up =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return {200, "text/plain; version=0.0.4; charset=utf-8", RenderMetrics(nh, *m, up)};
  }
  if (path == "/healthz") return {200, "text/plain; charset=utf-8", "ok\n"};
  if (path == "/readyz") {
    std::string missing;
    for (const ReplicaInfo& r : nh->GetInfo().replicas)
      if (r.leader_id == 0) missing += "shard " + std::to_string(r.shard_id) + ": no leader\n";
    if (missing.empty()) return {200, "text/plain; charset=utf-8", "ready\n"};
    return {503, "text/plain; charset=utf-8", missing};
  }
  return {404, "text/plain; charset=utf-8", "not found: try /metrics, /healthz or /readyz\n"};
}

// Blocks SIGTERM and SIGINT in every thread started after this call, so that
// WaitForSignal receives them.
sigset_t BlockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

void SetUpLogging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("nodehost");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
}

}  // namespace

std::string RenderMetrics(NodeHost* nh, const DaemonMetrics& m, double uptime_seconds) {
  PromWriter w;
  m.Render(&w);
  Gauges(nh, &w, uptime_seconds);
  RenderEngineMetrics(nh->GetMetrics(), &w);
  return w.text();
}

int RunServe(const std::string& config_path) {
  const sigset_t stop_signals = BlockStopSignals();
  Result<DaemonConfig> cfg = LoadConfig(config_path);
  if (!cfg.ok()) {
    std::fprintf(stderr, "nodehost serve: %s\n", cfg.status().ToString().c_str());
    return kServeBadConfig;
  }
  const DaemonConfig& c = *cfg;
  SetUpLogging(c.log_level);
  ServiceContext ctx;
  ctx.config = &c;
  ctx.shard_map = c.shard_map();
  DaemonMetrics metrics;
  ctx.metrics = &metrics;
  if (!c.token_file.empty()) {
    Result<std::string> token = ReadFileTrimmed(c.token_file, "auth.token_file");
    if (!token.ok()) {
      std::fprintf(stderr, "nodehost serve: %s\n", token.status().ToString().c_str());
      return kServeBadConfig;
    }
    ctx.token = *token;
  }
  Result<std::shared_ptr<grpc::ServerCredentials>> creds = ServerCredentials(c);
  if (!creds.ok()) {
    std::fprintf(stderr, "nodehost serve: %s\n", creds.status().ToString().c_str());
    return kServeBadConfig;
  }
  NodeHostConfig nc = c.ToNodeHostConfig();
  nc.listener = std::make_shared<MetricsListener>(&metrics);
  Result<std::unique_ptr<NodeHost>> nh = NodeHost::Create(nc);
  if (!nh.ok()) {
    spdlog::critical("nodehost: cannot start the NodeHost: {}", nh.status().ToString());
    return kServeFailed;
  }
  ctx.nh = nh->get();
  if (Status s = StartReplicas(ctx.nh, c); !s.ok()) {
    spdlog::critical("nodehost: cannot start replicas: {}", s.ToString());
    (*nh)->Close();
    return kServeFailed;
  }
  HttpServer http;
  if (!c.metrics_address.empty()) {
    if (Status s = http.Start(c.metrics_address,
                              [n = ctx.nh, m = &metrics, t = ctx.started](const std::string& tg) {
                                return Handle(tg, n, m, t);
                              });
        !s.ok()) {
      spdlog::critical("nodehost: metrics endpoint: {}", s.ToString());
      (*nh)->Close();
      return kServeFailed;
    }
    ctx.metrics_address = http.address();
  }
  KvService kv(&ctx);
  AdminService admin(&ctx);
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort(c.client_address, *creds, &port);
  b.RegisterService(&kv);
  b.RegisterService(&admin);
  b.SetMaxReceiveMessageSize(static_cast<int>(c.max_request_bytes) + (64 << 10));
  b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  grpc::ResourceQuota quota("nodehost");
  quota.SetMaxThreads(kMaxServerThreads);
  b.SetResourceQuota(quota);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  if (server == nullptr || port == 0) {
    spdlog::critical("nodehost: cannot listen on client address {}", c.client_address);
    http.Stop();
    (*nh)->Close();
    return kServeFailed;
  }
  spdlog::info("nodehost: node {} serving: client {} raft {} metrics {} ({} shards hosted)",
               c.node_id, c.client_address, ctx.nh->raft_address(),
               ctx.metrics_address.empty() ? "off" : ctx.metrics_address,
               ctx.nh->GetInfo().replicas.size());
  int sig = 0;
  sigwait(&stop_signals, &sig);
  spdlog::info("nodehost: signal {}: shutting down", sig);
  server->Shutdown(std::chrono::system_clock::now() + kShutdownGrace);
  http.Stop();
  (*nh)->Close();
  spdlog::info("nodehost: stopped");
  server.reset();
  nh->reset();  // closes every replica's RocksDB
  spdlog::shutdown();
  return kServeOk;
}

}  // namespace flotilla::nodehost
