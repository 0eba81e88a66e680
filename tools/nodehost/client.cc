#include "tools/nodehost/client.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "tools/nodehost/service.h"

namespace flotilla::nodehost {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMaxAttempts = 64;
// By default an attempt gets this share of the request's budget, so that a
// daemon that cannot answer (paused, cut off) leaves time to ask another.
constexpr int kAttemptsPerBudget = 4;
constexpr auto kMinAttempt = std::chrono::milliseconds(250);
constexpr auto kRetryPause = std::chrono::milliseconds(50);
// How long a daemon that let an attempt time out is asked only when no
// other will do: long enough for the shard to elect another leader.
constexpr auto kSuspectFor = std::chrono::seconds(2);

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

std::string Trailer(const grpc::ClientContext& ctx, const char* key) {
  const auto& md = ctx.GetServerTrailingMetadata();
  const auto it = md.find(key);
  return it == md.end() ? "" : std::string(it->second.data(), it->second.size());
}

// gRPC failed before the request reached a daemon.
bool NotConnected(const grpc::Status& s) {
  if (s.error_code() != grpc::StatusCode::UNAVAILABLE) return false;
  const std::string& m = s.error_message();
  return m.find("failed to connect") != std::string::npos ||
         m.find("Connection refused") != std::string::npos ||
         m.find("DNS resolution failed") != std::string::npos ||
         m.find("connections to all backends failing") != std::string::npos;
}

}  // namespace

std::vector<std::string> SplitList(const std::string& csv) {
  std::vector<std::string> out;
  std::stringstream ss(csv);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::unique_ptr<Client> Client::Create(ClientOptions o, std::string* error) {
  if (o.endpoints.empty()) {
    *error = "no endpoints: pass --endpoints host:port[,host:port...]";
    return nullptr;
  }
  std::unique_ptr<Client> c(new Client(std::move(o)));
  const ClientOptions& opt = c->options_;
  if (opt.ca_file.empty()) {
    c->creds_ = grpc::InsecureChannelCredentials();
    return c;
  }
  grpc::SslCredentialsOptions ssl;
  if (!ReadFile(opt.ca_file, &ssl.pem_root_certs)) {
    *error = "cannot read the CA file " + opt.ca_file;
    return nullptr;
  }
  if (!opt.cert_file.empty() && !ReadFile(opt.cert_file, &ssl.pem_cert_chain)) {
    *error = "cannot read the certificate file " + opt.cert_file;
    return nullptr;
  }
  if (!opt.key_file.empty() && !ReadFile(opt.key_file, &ssl.pem_private_key)) {
    *error = "cannot read the key file " + opt.key_file;
    return nullptr;
  }
  c->creds_ = grpc::SslCredentials(ssl);
  return c;
}

std::shared_ptr<Client::Channel> Client::ChannelFor(const std::string& endpoint) {
  std::lock_guard<std::mutex> l(mu_);
  std::shared_ptr<Channel>& ch = channels_[endpoint];
  if (!ch) {
    ch = std::make_shared<Channel>();
    grpc::ChannelArguments args;
    // A channel of its own per endpoint (not gRPC's shared subchannel pool),
    // so that DropChannel really forgets a failed connection's backoff.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    // An exported shard comes in one message (ExportShard).
    args.SetMaxReceiveMessageSize(static_cast<int>(kMaxDumpBytes + (64 << 20)));
    ch->channel = grpc::CreateCustomChannel(endpoint, creds_, args);
    ch->kv = KV::NewStub(ch->channel);
    ch->admin = Admin::NewStub(ch->channel);
  }
  return ch;
}

void Client::DropChannel(const std::string& endpoint) {
  std::lock_guard<std::mutex> l(mu_);
  channels_.erase(endpoint);
}

CallInfo Client::CallOnce(const std::string& endpoint, const Rpc& fn, Clock::time_point deadline) {
  const std::shared_ptr<Channel> ch = ChannelFor(endpoint);
  grpc::ClientContext ctx;
  ctx.set_deadline(
      std::chrono::system_clock::now() +
      std::max<Clock::duration>(deadline - Clock::now(), std::chrono::milliseconds(1)));
  if (!options_.token.empty()) ctx.AddMetadata("authorization", "Bearer " + options_.token);
  CallInfo info;
  info.endpoint = endpoint;
  info.status = fn(ch->kv.get(), ch->admin.get(), &ctx);
  info.leader_hint = Trailer(ctx, kLeaderHeader);
  info.hosts_hint = Trailer(ctx, kHostsHeader);
  info.retry_safe = !Trailer(ctx, kRetrySafeHeader).empty();
  info.unreachable = NotConnected(info.status);
  if (info.unreachable) {
    info.unreachable_endpoints.push_back(endpoint);
    // A channel that failed to connect waits out gRPC's reconnect backoff
    // (seconds) before it tries again; a fresh one connects at once when
    // the daemon is back.
    DropChannel(endpoint);
  }
  return info;
}

Clock::duration Client::AttemptTimeout() const {
  if (options_.attempt_timeout.count() > 0) return options_.attempt_timeout;
  return std::max<Clock::duration>(options_.timeout / kAttemptsPerBudget, kMinAttempt);
}

void Client::MarkSuspect(const std::string& endpoint) {
  std::lock_guard<std::mutex> l(mu_);
  suspect_until_[endpoint] = Clock::now() + kSuspectFor;
}

bool Client::Suspect(const std::string& endpoint) {
  std::lock_guard<std::mutex> l(mu_);
  const auto it = suspect_until_.find(endpoint);
  return it != suspect_until_.end() && Clock::now() < it->second;
}

std::string Client::NextEndpoint(const CallInfo& info, const std::string& last,
                                 const std::set<std::string>& down) {
  std::vector<std::string> order;
  if (!info.leader_hint.empty()) order.push_back(info.leader_hint);
  for (const std::string& h : SplitList(info.hosts_hint)) order.push_back(h);
  for (const std::string& e : options_.endpoints) order.push_back(e);
  const bool timed_out = info.status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
  std::string fallback;
  for (const std::string& e : order) {
    if (down.count(e) != 0 || (e == last && (info.unreachable || timed_out))) continue;
    if (!Suspect(e)) return e;
    if (fallback.empty()) fallback = e;
  }
  if (!fallback.empty()) return fallback;
  // Only `last` is left: ask it again unless it is down.
  return timed_out && down.count(last) == 0 ? last : std::string();
}

CallInfo Client::Routed(const std::string& first, const Rpc& fn, bool retry_any) {
  const auto deadline = Clock::now() + options_.timeout;
  std::set<std::string> down;
  std::string next = first;
  CallInfo info;
  for (int attempt = 0; attempt < kMaxAttempts && Clock::now() < deadline; ++attempt) {
    info = CallOnce(next, fn, std::min(deadline, Clock::now() + AttemptTimeout()));
    if (info.ok()) break;
    if (info.unreachable) down.insert(next);
    const grpc::StatusCode code = info.status.error_code();
    if (code == grpc::StatusCode::DEADLINE_EXCEEDED) MarkSuspect(next);
    const bool redirect = code == grpc::StatusCode::FAILED_PRECONDITION &&
                          (!info.leader_hint.empty() || !info.hosts_hint.empty());
    if (redirect && !options_.follow_leader) break;
    const bool retry = info.unreachable || redirect || info.retry_safe ||
                       code == grpc::StatusCode::RESOURCE_EXHAUSTED ||
                       (retry_any && (code == grpc::StatusCode::UNAVAILABLE ||
                                      code == grpc::StatusCode::DEADLINE_EXCEEDED));
    if (!retry) break;
    const std::string chosen = NextEndpoint(info, next, down);
    if (chosen.empty()) break;  // every endpoint is down
    // Follow a hint at once; pause before asking again where the hint was
    // not usable (its daemon is down, or there was none).
    if (!redirect || chosen != info.leader_hint) std::this_thread::sleep_for(kRetryPause);
    next = chosen;
  }
  info.unreachable_endpoints.assign(down.begin(), down.end());
  info.unreachable = !info.ok() && info.unreachable;
  return info;
}

CallInfo Client::EnsureShardMap() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (shard_map_) return CallInfo();
  }
  ShardMapResponse res;
  CallInfo info = GetShardMap(&res);
  if (!info.ok()) return info;
  if (res.shard_ids().empty()) {
    info.status = {grpc::StatusCode::FAILED_PRECONDITION, "the daemon's shard map is empty"};
    return info;
  }
  std::lock_guard<std::mutex> l(mu_);
  if (!shard_map_)
    shard_map_ = nodehost::ShardMap({res.shard_ids().begin(), res.shard_ids().end()});
  return info;
}

std::string Client::EndpointForShard(uint64_t shard) {
  std::lock_guard<std::mutex> l(mu_);
  const auto now = Clock::now();
  const auto suspect = [&](const std::string& e) {
    const auto it = suspect_until_.find(e);
    return it != suspect_until_.end() && now < it->second;
  };
  const auto it = leader_of_.find(shard);
  if (it != leader_of_.end() && !suspect(it->second)) return it->second;
  // No leader known, or it stopped answering: any endpoint that answers.
  for (size_t i = 0; i < options_.endpoints.size(); ++i) {
    const std::string& e = options_.endpoints[next_endpoint_++ % options_.endpoints.size()];
    if (!suspect(e)) return e;
  }
  return options_.endpoints[next_endpoint_++ % options_.endpoints.size()];
}

void Client::RememberLeader(uint64_t shard, const CallInfo& info) {
  std::lock_guard<std::mutex> l(mu_);
  if (info.ok()) {
    leader_of_[shard] = info.endpoint;
  } else if (!info.leader_hint.empty()) {
    leader_of_[shard] = info.leader_hint;
  } else {
    leader_of_.erase(shard);
  }
}

CallInfo Client::GetShardMap(ShardMapResponse* out) {
  return Routed(
      options_.endpoints[0],
      [out](KV::Stub* kv, Admin::Stub*, grpc::ClientContext* ctx) {
        return kv->ShardMap(ctx, ShardMapRequest(), out);
      },
      /*retry_any=*/true);
}

CallInfo Client::Keyed(const std::string& key, const Rpc& fn, bool retry_any) {
  CallInfo info = EnsureShardMap();
  if (!info.ok()) return info;
  const uint64_t shard = shard_map_->ShardOf(key);  // set once, never changed after
  info = Routed(EndpointForShard(shard), fn, retry_any);
  RememberLeader(shard, info);
  return info;
}

namespace {

void FillSession(const ClientSession* session, SessionRef* out) {
  out->set_client_id(session->client_id);
  out->set_series_id(session->series_id);
  out->set_responded_to(session->responded_to);
}

}  // namespace

CallInfo Client::Put(const std::string& key, const std::string& value, PutResponse* out,
                     ClientSession* session) {
  PutRequest req;
  req.set_key(key);
  req.set_value(value);
  if (session != nullptr) FillSession(session, req.mutable_session());
  // A session write may be resent anywhere: the shard applies it once.
  CallInfo info = Keyed(
      key,
      [&](KV::Stub* kv, Admin::Stub*, grpc::ClientContext* ctx) { return kv->Put(ctx, req, out); },
      /*retry_any=*/session != nullptr);
  if (session != nullptr && info.ok()) session->Completed();
  return info;
}

CallInfo Client::RegisterSession(uint64_t shard, ClientSession* out) {
  RegisterSessionRequest req;
  req.set_shard(shard);
  RegisterSessionResponse res;
  // A resent registration at worst leaves an unused session behind.
  CallInfo info = Routed(
      EndpointForShard(shard),
      [&](KV::Stub* kv, Admin::Stub*, grpc::ClientContext* ctx) {
        return kv->RegisterSession(ctx, req, &res);
      },
      /*retry_any=*/true);
  RememberLeader(shard, info);
  if (info.ok()) *out = ClientSession{shard, res.client_id()};
  return info;
}

uint64_t Client::ShardOf(const std::string& key) {
  if (!EnsureShardMap().ok()) return 0;
  return shard_map_->ShardOf(key);  // set once, never changed after
}

CallInfo Client::Get(const std::string& key, bool stale, GetResponse* out) {
  GetRequest req;
  req.set_key(key);
  req.set_consistency(stale ? STALE : LINEARIZABLE);
  return Keyed(
      key,
      [&](KV::Stub* kv, Admin::Stub*, grpc::ClientContext* ctx) { return kv->Get(ctx, req, out); },
      /*retry_any=*/true);
}

CallInfo Client::Delete(const std::string& key, DeleteResponse* out) {
  DeleteRequest req;
  req.set_key(key);
  return Keyed(
      key,
      [&](KV::Stub* kv, Admin::Stub*, grpc::ClientContext* ctx) {
        return kv->Delete(ctx, req, out);
      },
      /*retry_any=*/false);
}

CallInfo Client::Cas(const std::string& key, const std::optional<std::string>& expected,
                     const std::string& value, CasResponse* out, ClientSession* session) {
  CasRequest req;
  req.set_key(key);
  req.set_expect_absent(!expected.has_value());
  if (expected) req.set_expected(*expected);
  req.set_value(value);
  if (session != nullptr) FillSession(session, req.mutable_session());
  CallInfo info = Keyed(
      key,
      [&](KV::Stub* kv, Admin::Stub*, grpc::ClientContext* ctx) { return kv->Cas(ctx, req, out); },
      /*retry_any=*/session != nullptr);
  if (session != nullptr && info.ok()) session->Completed();
  return info;
}

CallInfo Client::Scan(const ScanRange& range, uint32_t limit, uint64_t shard, bool stale,
                      std::vector<KeyValue>* out, bool* more) {
  const std::string& prefix = range.prefix;
  CallInfo info = EnsureShardMap();
  if (!info.ok()) return info;
  std::vector<uint64_t> shards;
  if (shard != 0) {
    shards.push_back(shard);
  } else {
    std::lock_guard<std::mutex> l(mu_);
    const std::optional<uint64_t> tagged = shard_map_->ShardOfPrefix(prefix);
    shards = tagged ? std::vector<uint64_t>{*tagged} : shard_map_->shard_ids();
  }
  out->clear();
  *more = false;
  for (uint64_t s : shards) {
    ScanRequest req;
    req.set_prefix(prefix);
    req.set_start_after(range.start_after);
    req.set_start(range.start);
    req.set_end(range.end);
    req.set_limit(limit);
    req.set_shard(s);
    req.set_consistency(stale ? STALE : LINEARIZABLE);
    ScanResponse res;
    info = Routed(
        EndpointForShard(s),
        [&](KV::Stub* kv, Admin::Stub*, grpc::ClientContext* ctx) {
          return kv->Scan(ctx, req, &res);
        },
        /*retry_any=*/true);
    RememberLeader(s, info);
    if (!info.ok()) return info;
    for (KeyValue& kv : *res.mutable_kvs()) out->push_back(std::move(kv));
    *more = *more || res.more();
  }
  std::sort(out->begin(), out->end(),
            [](const KeyValue& a, const KeyValue& b) { return a.key() < b.key(); });
  if (limit > 0 && out->size() > limit) {
    out->resize(limit);
    *more = true;
  }
  return info;
}

CallInfo Client::Status(const std::string& endpoint, StatusResponse* out) {
  const auto deadline = Clock::now() + options_.timeout;
  const Rpc fn = [out](KV::Stub*, Admin::Stub* admin, grpc::ClientContext* ctx) {
    return admin->Status(ctx, StatusRequest(), out);
  };
  if (!endpoint.empty()) return CallOnce(endpoint, fn, deadline);
  return Routed(options_.endpoints[0], fn, /*retry_any=*/true);
}

CallInfo Client::Shards(const std::string& endpoint, ShardsResponse* out) {
  return CallOnce(
      endpoint,
      [out](KV::Stub*, Admin::Stub* admin, grpc::ClientContext* ctx) {
        return admin->Shards(ctx, ShardsRequest(), out);
      },
      Clock::now() + options_.timeout);
}

CallInfo Client::OnLeader(uint64_t shard, const Rpc& fn) {
  CallInfo info = Routed(EndpointForShard(shard), fn, /*retry_any=*/false);
  RememberLeader(shard, info);
  return info;
}

CallInfo Client::Shard(uint64_t shard, ShardResponse* out) {
  ShardRequest req;
  req.set_shard(shard);
  return Routed(
      EndpointForShard(shard),
      [&](KV::Stub*, Admin::Stub* admin, grpc::ClientContext* ctx) {
        return admin->Shard(ctx, req, out);
      },
      /*retry_any=*/true);
}

CallInfo Client::AddReplica(const AddReplicaRequest& req, MembershipResponse* out) {
  return OnLeader(req.shard(), [&](KV::Stub*, Admin::Stub* admin, grpc::ClientContext* ctx) {
    return admin->AddReplica(ctx, req, out);
  });
}

CallInfo Client::RemoveReplica(const RemoveReplicaRequest& req, MembershipResponse* out) {
  return OnLeader(req.shard(), [&](KV::Stub*, Admin::Stub* admin, grpc::ClientContext* ctx) {
    return admin->RemoveReplica(ctx, req, out);
  });
}

CallInfo Client::TransferLeader(const TransferLeaderRequest& req, TransferLeaderResponse* out) {
  return OnLeader(req.shard(), [&](KV::Stub*, Admin::Stub* admin, grpc::ClientContext* ctx) {
    return admin->TransferLeader(ctx, req, out);
  });
}

CallInfo Client::Snapshot(const std::string& endpoint, const SnapshotRequest& req,
                          SnapshotResponse* out) {
  return CallOnce(
      endpoint,
      [&](KV::Stub*, Admin::Stub* admin, grpc::ClientContext* ctx) {
        return admin->Snapshot(ctx, req, out);
      },
      Clock::now() + options_.timeout);
}

CallInfo Client::ExportShard(const std::string& endpoint, const ExportShardRequest& req,
                             ExportShardResponse* out) {
  return CallOnce(
      endpoint,
      [&](KV::Stub*, Admin::Stub* admin, grpc::ClientContext* ctx) {
        return admin->ExportShard(ctx, req, out);
      },
      Clock::now() + options_.timeout);
}

CallInfo Client::ComputeHash(const ComputeHashRequest& req, ComputeHashResponse* out) {
  return OnLeader(req.shard(), [&](KV::Stub*, Admin::Stub* admin, grpc::ClientContext* ctx) {
    return admin->ComputeHash(ctx, req, out);
  });
}

CallInfo Client::GetHash(const std::string& endpoint, const GetHashRequest& req,
                         GetHashResponse* out) {
  return CallOnce(
      endpoint,
      [&](KV::Stub*, Admin::Stub* admin, grpc::ClientContext* ctx) {
        return admin->GetHash(ctx, req, out);
      },
      Clock::now() + options_.timeout);
}

}  // namespace flotilla::nodehost
