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
#include "tools/nodehost/leader_balance.h"
#include "tools/nodehost/process_metrics.h"
#include "tools/nodehost/service.h"
#include "tools/nodehost/systemd_notify.h"

namespace flotilla::nodehost {
namespace {

constexpr auto kShutdownGrace = std::chrono::seconds(2);

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

// Whether the file at `path` holds `pem` (both trimmed as ReadFileTrimmed).
bool SameContents(const std::string& path, const std::string& pem) {
  Result<std::string> other = ReadFileTrimmed(path, "tls.ca_file");
  return other.ok() && *other == pem;
}

// The client API's credentials: [client_tls] when set, else [tls].
Result<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const DaemonConfig& c) {
  if (!c.client_tls()) return grpc::InsecureServerCredentials();
  const DaemonConfig::TlsFiles f = c.client_tls_files();
  const std::string table = c.client_ca_file.empty() ? "tls." : "client_tls.";
  Result<std::string> ca = ReadFileTrimmed(f.ca, table + "ca_file");
  Result<std::string> cert = ReadFileTrimmed(f.cert, table + "cert_file");
  Result<std::string> key = ReadFileTrimmed(f.key, table + "key_file");
  for (const Status& s : {ca.status(), cert.status(), key.status()}) FLOTILLA_RETURN_IF_ERROR(s);
  // The config check compared the two CA paths; a copy of the peer CA under
  // another name would let client certificates speak Raft just the same.
  if (c.tls() && c.tls_peer_names.empty() && !c.client_ca_file.empty() &&
      SameContents(c.tls_ca_file, *ca)) {
    return Status::InvalidArgument(
        "client_tls.ca_file holds the same CA as tls.ca_file and tls.peer_names is empty: any "
        "client certificate could speak Raft. List the daemons' names in tls.peer_names, or "
        "sign client certificates with another CA");
  }
  // A client certificate is requested and verified when sent; the calls
  // that need credentials require one (Authorize).
  grpc::SslServerCredentialsOptions o(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  o.pem_root_certs = *ca + "\n";
  o.pem_key_cert_pairs.push_back({*key + "\n", *cert + "\n"});
  return grpc::SslServerCredentials(o);
}

// Reads a token or secret file (ReadTokenFile's rules); adds a warning to
// `warnings` when other users may read it.
Result<std::string> ReadSecret(const std::string& path, std::string_view what,
                               std::vector<std::string>* warnings) {
  Result<std::string> v = ReadTokenFile(path, what);
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::perms p = fs::status(path, ec).permissions();
  if (v.ok() && !ec && (p & (fs::perms::group_all | fs::perms::others_all)) != fs::perms::none) {
    warnings->push_back(path + " is readable by other users; chmod 600 it");
  }
  return v;
}

// The files the config names that the daemon reads when it starts: the admin
// token, the deployment secret and the client API's credentials.
struct StartFiles {
  std::string token;
  std::string secret;
  std::shared_ptr<grpc::ServerCredentials> client_credentials;
  std::vector<std::string> warnings;  // for the operator; none stops a start
};

Result<StartFiles> ReadStartFiles(const DaemonConfig& c) {
  StartFiles f;
  if (!c.token_file.empty()) {
    Result<std::string> token = ReadSecret(c.token_file, "auth.token_file", &f.warnings);
    if (!token.ok()) return token.status();
    f.token = std::move(*token);
  }
  if (!c.secret_file.empty()) {
    Result<std::string> secret = ReadSecret(c.secret_file, "auth.secret_file", &f.warnings);
    if (!secret.ok()) return secret.status();
    if (secret->size() < kMinSecretBytes) {
      return Status::InvalidArgument(
          "auth.secret_file " + c.secret_file + ": the secret must be at least " +
          std::to_string(kMinSecretBytes) + " bytes (try: openssl rand -hex 32)");
    }
    f.secret = std::move(*secret);
  }
  // The raft port's own TLS files are read by NodeHost::Create; a check
  // reads them here so that it finds what the start would.
  if (c.tls()) {
    for (const auto& [file, field] :
         {std::pair{c.tls_ca_file, "tls.ca_file"}, std::pair{c.tls_cert_file, "tls.cert_file"},
          std::pair{c.tls_key_file, "tls.key_file"}}) {
      FLOTILLA_RETURN_IF_ERROR(ReadFileTrimmed(file, field).status());
    }
  }
  Result<std::shared_ptr<grpc::ServerCredentials>> creds = ServerCredentials(c);
  if (!creds.ok()) return creds.status();
  f.client_credentials = std::move(*creds);
  return f;
}

// Starts this daemon's replicas. A replica that cannot start is logged and
// listed in `failed` (reported by /readyz and the metrics), and the others
// start: one damaged shard never keeps the daemon's other shards down.
void StartReplicas(NodeHost* nh, const DaemonConfig& c, std::map<uint64_t, std::string>* failed) {
  for (const ShardEntry& s : c.shards) {
    if (!c.Hosts(s)) continue;
    const std::string dir =
        c.data_dir + "/kv/shard-" + std::to_string(s.id) + "-replica-" + std::to_string(c.node_id);
    Status st = nh->StartOnDiskReplica(
        c.ToShardConfig(s.id), c.InitialMembers(s),
        c.Joins(s) ? StartMode::kJoin : StartMode::kNewShard,
        [dir](uint64_t, uint64_t) { return std::make_unique<KvStateMachine>(dir); });
    if (!st.ok()) {
      spdlog::error("nodehost: shard {} cannot start and is not served by this node: {}", s.id,
                    st.ToString());
      (*failed)[s.id] = st.ToString();
    }
  }
}

// metrics_per_shard: one series per hosted replica and figure, labelled by
// shard, in shard order.
void ShardGauges(const NodeHostInfo& info, PromWriter* w) {
  std::vector<const ReplicaInfo*> replicas;
  for (const ReplicaInfo& r : info.replicas) replicas.push_back(&r);
  std::sort(replicas.begin(), replicas.end(),
            [](const ReplicaInfo* a, const ReplicaInfo* b) { return a->shard_id < b->shard_id; });
  struct Figure {
    const char* name;
    const char* help;
    uint64_t (*value)(const ReplicaInfo&);
  };
  static constexpr Figure kFigures[] = {
      {"nodehost_shard_is_leader", "1 when this daemon's replica leads the shard.",
       [](const ReplicaInfo& r) -> uint64_t {
         return r.leader_id != 0 && r.leader_id == r.replica_id;
       }},
      {"nodehost_shard_has_leader", "1 when this daemon's replica knows the shard's leader.",
       [](const ReplicaInfo& r) -> uint64_t { return r.leader_id != 0; }},
      {"nodehost_shard_term", "The replica's current term.",
       [](const ReplicaInfo& r) { return r.term; }},
      {"nodehost_shard_commit_index", "The replica's commit index.",
       [](const ReplicaInfo& r) { return r.commit_index; }},
      {"nodehost_shard_applied_index", "The replica's applied index.",
       [](const ReplicaInfo& r) { return r.applied_index; }},
      {"nodehost_shard_quiesced", "1 while the replica is quiesced (idle, not ticking).",
       [](const ReplicaInfo& r) -> uint64_t { return r.quiesced; }},
  };
  for (const Figure& f : kFigures) {
    w->Family(f.name, f.help, "gauge");
    for (const ReplicaInfo* r : replicas) {
      w->Sample(f.name, PromWriter::Label("shard", std::to_string(r->shard_id)), f.value(*r));
    }
  }
}

void Gauges(NodeHost* nh, const ServiceContext& ctx, PromWriter* w, double uptime_seconds) {
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
  gauge("nodehost_replicas_failed_to_start",
        "Replicas of this daemon that could not start (see /readyz and the log).",
        ctx.failed_shards.size());
  gauge("nodehost_max_apply_lag_entries",
        "The largest commit index minus applied index over this daemon's replicas.", max_lag);
  if (ctx.config->metrics_per_shard) ShardGauges(info, w);
  w->Family("nodehost_uptime_seconds", "Seconds since the daemon started.", "gauge");
  w->Sample("nodehost_uptime_seconds", "", uptime_seconds);
  w->Family("nodehost_build_info", "The daemon's version, as a label.", "gauge");
  w->Sample("nodehost_build_info", PromWriter::Label("version", FLOTILLA_NODEHOST_VERSION),
            uint64_t{1});
}

// /healthz: alive, unless storage keeps this daemon from taking writes (its
// free space below the reserve, or a failed LogDB). /readyz: that, and every
// hosted shard started and knows a leader.
HttpResponse Health(bool ready, const ServiceContext& ctx) {
  const NodeHostInfo info = ctx.nh->GetInfo();
  std::string missing;
  if (!info.storage.ok()) missing += "storage: " + info.storage.ToString() + "\n";
  if (ready) {
    for (const auto& [shard, why] : ctx.failed_shards) {
      missing += "shard " + std::to_string(shard) + ": failed to start: " + why + "\n";
    }
    for (const ReplicaInfo& r : info.replicas)
      if (r.leader_id == 0) missing += "shard " + std::to_string(r.shard_id) + ": no leader\n";
  }
  if (missing.empty()) return {200, "text/plain; charset=utf-8", ready ? "ready\n" : "ok\n"};
  return {503, "text/plain; charset=utf-8", missing};
}

HttpResponse Handle(const std::string& target, const ServiceContext& ctx) {
  const std::string path = target.substr(0, target.find('?'));
  if (path == "/metrics") {
    const double up =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - ctx.started).count();
    return {200, "text/plain; version=0.0.4; charset=utf-8", RenderMetrics(ctx, up)};
  }
  if (path == "/healthz" || path == "/readyz") return Health(path == "/readyz", ctx);
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

std::string RenderMetrics(const ServiceContext& ctx, double uptime_seconds) {
  PromWriter w;
  ctx.metrics->Render(&w);
  Gauges(ctx.nh, ctx, &w, uptime_seconds);
  RenderProcessMetrics(&w);
  RenderEngineMetrics(ctx.nh->GetMetrics(), &w);
  return w.text();
}

namespace {

// The daemon's parts, started in order and stopped in reverse.
// Not thread-safe: RunServe's thread drives it.
class Daemon {
 public:
  explicit Daemon(DaemonConfig config) : c_(std::move(config)) {
    ctx_.config = &c_;
    ctx_.shard_map = c_.shard_map();
    ctx_.metrics = &metrics_;
  }

  // Reads the token and TLS files (kServeBadConfig), then starts the
  // NodeHost, its replicas, the HTTP and the gRPC servers (kServeFailed).
  int Start() {
    Result<StartFiles> files = ReadStartFiles(c_);
    if (!files.ok()) return BadConfig(files.status());
    for (const std::string& w : files->warnings) spdlog::warn("nodehost: {}", w);
    ctx_.token = files->token;
    NodeHostConfig nc = c_.ToNodeHostConfig();
    if (!files->secret.empty()) {
      nc.deployment_secret = std::move(files->secret);
    } else if (!c_.tls()) {
      spdlog::warn(
          "nodehost: the raft port {} has neither [tls] nor [auth] secret_file: any process "
          "that reaches it can act as a member of every shard",
          c_.raft_address);
    }
    live_ = std::make_shared<PeerLiveness>(std::make_shared<MetricsListener>(&metrics_));
    nc.listener = live_;
    Result<std::unique_ptr<NodeHost>> nh = NodeHost::Create(nc);
    if (!nh.ok()) return Failed("cannot start the NodeHost", nh.status());
    nh_ = std::move(*nh);
    ctx_.nh = nh_.get();
    StartReplicas(ctx_.nh, c_, &ctx_.failed_shards);
    if (c_.balance_leaders) {
      balancer_ = std::make_unique<LeaderBalancer>(ctx_.nh, &c_, live_.get());
      balancer_->Start();
    }
    if (!c_.metrics_address.empty()) {
      Status s = http_.Start(c_.metrics_address,
                             [this](const std::string& target) { return Handle(target, ctx_); });
      if (!s.ok()) return Failed("metrics endpoint", s);
      ctx_.metrics_address = http_.address();
    }
    if (!StartGrpc(files->client_credentials)) {
      return Failed("client API",
                    Status::Unavailable("cannot listen on client address " + c_.client_address));
    }
    spdlog::info("nodehost: node {} serving: client {} raft {} metrics {} ({} shards hosted)",
                 c_.node_id, c_.client_address, ctx_.nh->raft_address(),
                 ctx_.metrics_address.empty() ? "off" : ctx_.metrics_address,
                 ctx_.nh->GetInfo().replicas.size());
    return kServeOk;
  }

  // The replicas running here and how many of them know a leader (shards
  // that failed to start are in /readyz, not here: they must not hold the
  // daemon's readiness back for ever).
  LeaderCount Leaders() const {
    LeaderCount c;
    if (ctx_.nh == nullptr) return c;
    for (const ReplicaInfo& r : ctx_.nh->GetInfo().replicas) {
      ++c.hosted;
      if (r.leader_id != 0) ++c.led;
    }
    return c;
  }

  // Stops what Start started: the gRPC server (in-flight requests get
  // kShutdownGrace), the HTTP server, then the NodeHost and every replica's
  // RocksDB.
  void Stop() {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + kShutdownGrace);
    balancer_.reset();
    http_.Stop();
    if (nh_) nh_->Close();
    server_.reset();
    nh_.reset();
  }

 private:
  bool StartGrpc(const std::shared_ptr<grpc::ServerCredentials>& creds) {
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort(c_.client_address, creds, &port);
    b.RegisterService(&kv_);
    b.RegisterService(&admin_);
    b.SetMaxReceiveMessageSize(static_cast<int>(c_.max_request_bytes) + (64 << 10));
    b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    server_ = b.BuildAndStart();
    if (server_ == nullptr || port == 0) server_.reset();
    return server_ != nullptr;
  }
  static int BadConfig(const Status& s) {
    std::fprintf(stderr, "nodehost serve: %s\n", s.ToString().c_str());
    return kServeBadConfig;
  }
  static int Failed(std::string_view what, const Status& s) {
    spdlog::critical("nodehost: {}: {}", what, s.ToString());
    return kServeFailed;
  }

  DaemonConfig c_;
  DaemonMetrics metrics_;
  ServiceContext ctx_;
  KvService kv_{&ctx_};
  AdminService admin_{&ctx_};
  std::shared_ptr<PeerLiveness> live_;
  std::unique_ptr<NodeHost> nh_;
  std::unique_ptr<LeaderBalancer> balancer_;  // stopped before nh_ closes
  HttpServer http_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace

int CheckServeConfig(const std::string& config_path) {
  Result<DaemonConfig> cfg = LoadConfig(config_path);
  Status s = cfg.status();
  if (s.ok()) {
    Result<StartFiles> files = ReadStartFiles(*cfg);
    s = files.status();
    if (s.ok()) {
      for (const std::string& w : files->warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    }
  }
  if (!s.ok()) {
    std::fprintf(stderr, "nodehost serve: %s\n", s.ToString().c_str());
    return kServeBadConfig;
  }
  std::printf(
      "%s: ok (node %llu, %zu shards, %zu hosted here)\n", config_path.c_str(),
      static_cast<unsigned long long>(cfg->node_id), cfg->shards.size(),
      static_cast<size_t>(std::count_if(cfg->shards.begin(), cfg->shards.end(),
                                        [&](const ShardEntry& e) { return cfg->Hosts(e); })));
  return kServeOk;
}

int RunServe(const std::string& config_path) {
  const sigset_t stop_signals = BlockStopSignals();
  Result<DaemonConfig> cfg = LoadConfig(config_path);
  if (!cfg.ok()) {
    std::fprintf(stderr, "nodehost serve: %s\n", cfg.status().ToString().c_str());
    return kServeBadConfig;
  }
  SetUpLogging(cfg->log_level);
  Daemon daemon(std::move(*cfg));
  const int rc = daemon.Start();
  // Under systemd (Type=notify): ready once every hosted shard is led.
  SystemdNotifier notifier([&daemon] { return daemon.Leaders(); });
  if (rc == kServeOk) {
    notifier.Start();
    int sig = 0;
    sigwait(&stop_signals, &sig);
    spdlog::info("nodehost: signal {}: shutting down", sig);
  }
  notifier.Stop();
  daemon.Stop();
  spdlog::info("nodehost: stopped");
  spdlog::shutdown();
  return rc;
}

}  // namespace flotilla::nodehost
