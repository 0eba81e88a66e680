#include "tools/nodehost/service.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <thread>

#include "transport/peer_auth.h"

namespace flotilla::nodehost {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kMinTimeout = std::chrono::milliseconds(10);
constexpr auto kTransferPoll = std::chrono::milliseconds(20);
constexpr auto kWakeReadTimeout = std::chrono::milliseconds(1000);

// Counts the request's outcome and latency when it leaves scope.
class Timed {
 public:
  Timed(const ServiceContext* c, Method m) : c_(c), m_(m), start_(Clock::now()) {}
  grpc::Status Done(grpc::Status s) const {
    c_->metrics->CountRequest(m_, static_cast<int>(s.error_code()),
                              std::chrono::duration<double>(Clock::now() - start_).count());
    return s;
  }

 private:
  const ServiceContext* c_;
  Method m_;
  Clock::time_point start_;
};

// The request's time budget: the configured one, shortened by the client's
// deadline.
Timeout Budget(const ServiceContext& c, const grpc::ServerContextBase& ctx) {
  Timeout t(c.config->request_timeout_ms);
  const auto deadline = ctx.deadline();
  const auto left =
      std::chrono::duration_cast<Timeout>(deadline - std::chrono::system_clock::now());
  if (deadline != std::chrono::system_clock::time_point::max() && left < t) t = left;
  return std::max<Timeout>(t, kMinTimeout);
}

std::string ClientAddressOf(const ServiceContext& c, uint64_t node) {
  const NodeEntry* n = c.config->FindNode(node);
  return n == nullptr ? "" : n->client_address;
}

// Client addresses of the daemons the config says host `shard`.
std::string HostsOf(const ServiceContext& c, uint64_t shard) {
  std::string out;
  for (const ShardEntry& s : c.config->shards) {
    if (s.id != shard) continue;
    std::vector<uint64_t> ids = s.members;
    ids.insert(ids.end(), s.joining.begin(), s.joining.end());
    for (uint64_t id : ids) {
      const std::string a = ClientAddressOf(c, id);
      if (a.empty() || id == c.config->node_id) continue;
      out += (out.empty() ? "" : ",") + a;
    }
  }
  return out;
}

// Adds the leader's client address (when known) to the trailing metadata
// and returns a sentence naming it for error messages.
std::string LeaderHint(const ServiceContext& c, grpc::ServerContextBase* ctx, uint64_t shard) {
  Result<ReplicaInfo> info = c.nh->GetReplicaInfo(shard);
  if (!info.ok() || info->leader_id == 0) return "; the shard has no known leader now, retry";
  const std::string addr = ClientAddressOf(c, info->leader_id);
  if (addr.empty()) return "; the leader is replica " + std::to_string(info->leader_id);
  ctx->AddTrailingMetadata(kLeaderHeader, addr);
  return "; the leader is node " + std::to_string(info->leader_id) + " at " + addr;
}

grpc::Status NotHosted(const ServiceContext& c, grpc::ServerContextBase* ctx, uint64_t shard) {
  const std::string hosts = HostsOf(c, shard);
  if (!hosts.empty()) ctx->AddTrailingMetadata(kHostsHeader, hosts);
  return {grpc::StatusCode::FAILED_PRECONDITION,
          "shard " + std::to_string(shard) + " is not hosted on node " +
              std::to_string(c.config->node_id) +
              (hosts.empty() ? "" : "; it is hosted at " + hosts)};
}

grpc::Status FromStatus(const ServiceContext& c, grpc::ServerContextBase* ctx, uint64_t shard,
                        const Status& s) {
  switch (s.code()) {
    case StatusCode::kNotFound:
      return NotHosted(c, ctx, shard);
    case StatusCode::kBusy:
      return {grpc::StatusCode::RESOURCE_EXHAUSTED, s.ToString() + "; retry later"};
    case StatusCode::kTooLarge:
    case StatusCode::kInvalidArgument:
      return {grpc::StatusCode::INVALID_ARGUMENT, s.ToString()};
    case StatusCode::kTimeout:
      return {grpc::StatusCode::DEADLINE_EXCEEDED, s.ToString()};
    case StatusCode::kNotLeader:
      return {grpc::StatusCode::FAILED_PRECONDITION, s.ToString() + LeaderHint(c, ctx, shard)};
    case StatusCode::kTerminated:
    case StatusCode::kUnavailable:
    case StatusCode::kIOError:
    case StatusCode::kNoSpace:
      return {grpc::StatusCode::UNAVAILABLE, s.ToString()};
    default:
      return {grpc::StatusCode::INTERNAL, s.ToString()};
  }
}

}  // namespace

bool RetrySafe(RequestCode code) { return code == RequestCode::kDropped; }

namespace {

// Maps a finished request that did not complete. It runs on the engine
// thread that completed the request, so it asks the NodeHost nothing (the
// client learns the leader from its next attempt).
grpc::Status FromResult(grpc::ServerContextBase* ctx, uint64_t shard, const RequestResult& r,
                        Timeout t) {
  const std::string where = "shard " + std::to_string(shard);
  if (RetrySafe(r.code)) ctx->AddTrailingMetadata(kRetrySafeHeader, "1");
  switch (r.code) {
    case RequestCode::kCompleted:
      return grpc::Status::OK;
    case RequestCode::kTimeout:
      return {grpc::StatusCode::DEADLINE_EXCEEDED, where + ": no answer within " +
                                                       std::to_string(t.count()) +
                                                       " ms (a write's outcome is unknown)"};
    case RequestCode::kDropped:
      return {grpc::StatusCode::UNAVAILABLE,
              where + ": dropped by Raft (no leader or leader changed) before it was logged, " +
                  "so it was not applied; retry"};
    case RequestCode::kTerminated:
      return {grpc::StatusCode::UNAVAILABLE, where + ": the replica is stopping"};
    case RequestCode::kRejected:
      return {grpc::StatusCode::FAILED_PRECONDITION, where + ": rejected: " + r.error};
    case RequestCode::kAborted:
      return {grpc::StatusCode::ABORTED, where + ": aborted"};
    case RequestCode::kAppliedResultUnknown:
      return {grpc::StatusCode::DATA_LOSS,
              where + ": the session write was applied earlier; its result is no longer known"};
  }
  return {grpc::StatusCode::INTERNAL, where + ": unknown request code"};
}

grpc::Status CheckKey(const ServiceContext& c, const std::string& key, size_t value_bytes) {
  if (key.empty()) return {grpc::StatusCode::INVALID_ARGUMENT, "the key is empty"};
  if (key.size() + value_bytes > c.config->max_request_bytes)
    return {grpc::StatusCode::INVALID_ARGUMENT, "key and value exceed client.max_request_bytes (" +
                                                    std::to_string(c.config->max_request_bytes) +
                                                    ")"};
  return grpc::Status::OK;
}

// A quiesced follower stops its election timer, so it would never notice
// that the leader it knows has died; and the requests it redirects to that
// leader never reach its engine. A read (its ReadIndex goes to the leader)
// wakes it and the leader: a live leader answers with heartbeats, a dead one
// lets this replica's election timer fire. The read's result is not needed.
void WakeFollower(const ServiceContext& c, uint64_t shard) {
  static const std::string kNoopRead = [] {
    nodehost::Query q;
    q.mutable_get()->set_key("");
    return q.SerializeAsString();
  }();
  Result<RequestHandle> h = c.nh->Read(shard, kNoopRead, kWakeReadTimeout);
  h.status().IgnoreError();
}

// Writes and linearizable reads are served by the shard's leader: a daemon
// whose replica is a follower answers with the leader's address (nothing was
// proposed, so the client may resend anywhere), and UNAVAILABLE marked
// retry-safe while the shard has no leader. Serving through the leader also
// keeps a request from waiting for its timeout on a follower that forwarded
// it to a leader that has just died.
grpc::Status RouteToLeader(const ServiceContext& c, grpc::ServerContextBase* ctx, uint64_t shard) {
  Result<ReplicaInfo> info = c.nh->GetReplicaInfo(shard);
  if (!info.ok()) return FromStatus(c, ctx, shard, info.status());
  if (info->role == ReplicaRole::kLeader) return grpc::Status::OK;
  if (info->quiesced) WakeFollower(c, shard);
  if (info->leader_id == 0) {
    ctx->AddTrailingMetadata(kRetrySafeHeader, "1");
    return {grpc::StatusCode::UNAVAILABLE,
            "shard " + std::to_string(shard) + " has no leader now (an election is running)"};
  }
  const std::string addr = ClientAddressOf(c, info->leader_id);
  if (addr.empty() || info->leader_id == c.config->node_id) return grpc::Status::OK;
  ctx->AddTrailingMetadata(kLeaderHeader, addr);
  return {grpc::StatusCode::FAILED_PRECONDITION,
          "node " + std::to_string(c.config->node_id) + " is not the leader of shard " +
              std::to_string(shard) + "; the leader is node " + std::to_string(info->leader_id) +
              " at " + addr};
}

// Proposes `cmd` on `shard` (in the client's session when `session` names
// one) and calls done(status, the state machine's result code, its decoded
// answer) once: at once when it is refused, otherwise from the engine's
// completion, on the engine's thread. No thread waits for it.
template <typename Done>
void StartWrite(const ServiceContext& c, grpc::CallbackServerContext* ctx, uint64_t shard,
                const Command& cmd, const SessionRef* session, Done done) {
  if (grpc::Status s = RouteToLeader(c, ctx, shard); !s.ok()) return done(s, 0, CommandResult());
  const Timeout t = Budget(c, *ctx);
  const bool in_session = session != nullptr && session->client_id() != 0;
  // The engine copies the command into its entry, so one buffer per
  // thread serves every request of that thread.
  thread_local std::string encoded;
  cmd.SerializeToString(&encoded);
  Result<RequestHandle> h =
      in_session ? c.nh->ProposeInSession(Session(shard, session->client_id(), session->series_id(),
                                                  session->responded_to()),
                                          encoded, t)
                 : c.nh->Propose(shard, encoded, t);
  if (!h.ok()) return done(FromStatus(c, ctx, shard, h.status()), 0, CommandResult());
  h->OnComplete([ctx, shard, t, done = std::move(done)](const RequestResult& r) {
    CommandResult out;
    if (!r.ok()) return done(FromResult(ctx, shard, r, t), 0, out);
    if (!out.ParseFromString(r.data))
      return done({grpc::StatusCode::INTERNAL, "the state machine's answer does not parse"}, 0,
                  out);
    if (r.value == kMalformed) return done({grpc::StatusCode::INTERNAL, out.error()}, r.value, out);
    done(grpc::Status::OK, r.value, out);
  });
}

// Runs `q` on `shard`, linearizably (completing from the engine's thread)
// or on the local state now, and calls done(status, answer) once.
template <typename Done>
void StartQuery(const ServiceContext& c, grpc::CallbackServerContext* ctx, uint64_t shard,
                const nodehost::Query& q, Consistency consistency, Done done) {
  thread_local std::string encoded;
  q.SerializeToString(&encoded);
  QueryResult out;
  if (consistency == STALE) {
    Result<std::string> r = c.nh->StaleRead(shard, encoded);
    if (!r.ok()) return done(FromStatus(c, ctx, shard, r.status()), &out);
    if (!out.ParseFromString(*r))
      return done({grpc::StatusCode::INTERNAL, "the state machine's answer does not parse"}, &out);
    return done(grpc::Status::OK, &out);
  }
  if (grpc::Status s = RouteToLeader(c, ctx, shard); !s.ok()) return done(s, &out);
  const Timeout t = Budget(c, *ctx);
  Result<RequestHandle> h = c.nh->Read(shard, encoded, t);
  if (!h.ok()) return done(FromStatus(c, ctx, shard, h.status()), &out);
  h->OnComplete([ctx, shard, t, done = std::move(done)](const RequestResult& r) {
    QueryResult answer;
    if (!r.ok()) return done(FromResult(ctx, shard, r, t), &answer);
    if (!answer.ParseFromString(r.data))
      return done({grpc::StatusCode::INTERNAL, "the state machine's answer does not parse"},
                  &answer);
    done(grpc::Status::OK, &answer);
  });
}

// Finishes a membership change or snapshot request from the engine's
// completion: its index, and how it ended.
template <typename Response>
void FinishOnComplete(const ServiceContext& c, grpc::CallbackServerContext* ctx,
                      grpc::ServerUnaryReactor* reactor, const Timed& timed, uint64_t shard,
                      Result<RequestHandle> h, Timeout t, Response* res) {
  if (!h.ok()) return reactor->Finish(timed.Done(FromStatus(c, ctx, shard, h.status())));
  h->OnComplete([ctx, reactor, timed, shard, t, res](const RequestResult& r) {
    res->set_index(r.value);
    reactor->Finish(timed.Done(FromResult(ctx, shard, r, t)));
  });
}

// Finishes the call with `s` unless it is OK; true when it did.
bool FinishIfFailed(grpc::ServerUnaryReactor* reactor, const Timed& timed, const grpc::Status& s) {
  if (s.ok()) return false;
  reactor->Finish(timed.Done(s));
  return true;
}

// Runs `fn` (which returns the call's status) on a thread of its own and
// finishes the call with it: for the rare calls that must wait on the
// NodeHost (session registration, a leader transfer), which a gRPC
// callback thread may not. The server's shutdown waits for the call to
// finish, so the NodeHost outlives the thread's use of it.
template <typename Fn>
void FinishOnThread(grpc::ServerUnaryReactor* reactor, const Timed& timed, Fn fn) {
  std::thread([reactor, timed, fn = std::move(fn)] { reactor->Finish(timed.Done(fn())); }).detach();
}

void FillReplica(const ServiceContext& c, const ReplicaInfo& i, ReplicaStatus* out) {
  out->set_shard(i.shard_id);
  out->set_replica(i.replica_id);
  out->set_role(std::string(ReplicaRoleName(i.role)));
  out->set_leader(i.leader_id);
  out->set_term(i.term);
  out->set_commit_index(i.commit_index);
  out->set_applied_index(i.applied_index);
  out->set_quiesced(i.quiesced);
  out->set_leader_client_address(ClientAddressOf(c, i.leader_id));
  out->set_node_id(c.config->node_id);
  const auto add = [out](const Members& members, MemberKind kind) {
    for (const auto& [id, address] : members) {
      Member* m = out->add_members();
      m->set_replica(id);
      m->set_raft_address(address);
      m->set_kind(kind);
    }
  };
  Result<ShardMembership> m = c.nh->GetMembership(i.shard_id);
  if (!m.ok()) return;
  add(m->voters, VOTER);
  add(m->non_voting, NON_VOTING);
  add(m->witnesses, WITNESS);
}

// Membership changes and leader transfer go through the shard's leader.
grpc::Status RequireLeader(const ServiceContext& c, grpc::ServerContextBase* ctx, uint64_t shard) {
  Result<ReplicaInfo> info = c.nh->GetReplicaInfo(shard);
  if (!info.ok()) return FromStatus(c, ctx, shard, info.status());
  if (info->role == ReplicaRole::kLeader) return grpc::Status::OK;
  return {grpc::StatusCode::FAILED_PRECONDITION,
          "node " + std::to_string(c.config->node_id) + " is not the leader of shard " +
              std::to_string(shard) + LeaderHint(c, ctx, shard)};
}

grpc::Status AuthorizeCertificate(const ServiceContext& c, const grpc::ServerContextBase& ctx) {
  const std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) {
    return {grpc::StatusCode::UNAUTHENTICATED,
            "this operation needs a client certificate signed by the daemon's client CA "
            "(--cacert, --cert, --key)"};
  }
  const std::vector<std::string>& allowed = c.config->client_names;
  if (allowed.empty() || transport::AnyListed(transport::CertificateNames(*auth), allowed))
    return grpc::Status::OK;
  return {grpc::StatusCode::PERMISSION_DENIED,
          "the client certificate holds none of the names in client_tls.client_names"};
}

}  // namespace

grpc::Status AuthorizeEveryCall(const ServiceContext& c, const grpc::ServerContextBase& ctx) {
  return c.config->every_call ? Authorize(c, ctx) : grpc::Status::OK;
}

grpc::Status Authorize(const ServiceContext& c, const grpc::ServerContextBase& ctx) {
  if (c.config->client_tls()) return AuthorizeCertificate(c, ctx);
  if (c.token.empty()) {
    return {grpc::StatusCode::PERMISSION_DENIED,
            "this daemon has no credentials configured ([auth] token_file or [tls]), so it "
            "refuses operations that change membership or data"};
  }
  const auto& md = ctx.client_metadata();
  const auto it = md.find("authorization");
  if (it == md.end()) {
    return {grpc::StatusCode::UNAUTHENTICATED,
            "this operation needs credentials: pass --token-file FILE"};
  }
  const std::string_view got(it->second.data(), it->second.size());
  if (!transport::ConstantTimeEqual(got, "Bearer " + c.token))
    return {grpc::StatusCode::PERMISSION_DENIED, "the token is not valid for this daemon"};
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* KvService::Put(grpc::CallbackServerContext* ctx, const PutRequest* req,
                                         PutResponse* res) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Timed timed(c_, Method::kPut);
  grpc::Status s = AuthorizeEveryCall(*c_, *ctx);
  if (s.ok()) s = CheckKey(*c_, req->key(), req->value().size());
  if (FinishIfFailed(reactor, timed, s)) return reactor;
  const uint64_t shard = c_->shard_map.ShardOf(req->key());
  res->set_shard(shard);
  thread_local Command cmd;
  cmd.mutable_put()->set_key(req->key());
  cmd.mutable_put()->set_value(req->value());
  StartWrite(*c_, ctx, shard, cmd, req->has_session() ? &req->session() : nullptr,
             [reactor, timed, res](const grpc::Status& st, uint64_t, const CommandResult& out) {
               res->set_index(out.index());
               reactor->Finish(timed.Done(st));
             });
  return reactor;
}

grpc::ServerUnaryReactor* KvService::Get(grpc::CallbackServerContext* ctx, const GetRequest* req,
                                         GetResponse* res) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Timed timed(c_, Method::kGet);
  grpc::Status s = AuthorizeEveryCall(*c_, *ctx);
  if (s.ok()) s = CheckKey(*c_, req->key(), 0);
  if (FinishIfFailed(reactor, timed, s)) return reactor;
  const uint64_t shard = c_->shard_map.ShardOf(req->key());
  res->set_shard(shard);
  thread_local nodehost::Query q;
  q.mutable_get()->set_key(req->key());
  StartQuery(*c_, ctx, shard, q, req->consistency(),
             [reactor, timed, res](const grpc::Status& st, QueryResult* out) {
               res->set_found(out->found());
               res->set_value(std::move(*out->mutable_value()));
               reactor->Finish(timed.Done(st));
             });
  return reactor;
}

grpc::ServerUnaryReactor* KvService::Delete(grpc::CallbackServerContext* ctx,
                                            const DeleteRequest* req, DeleteResponse* res) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Timed timed(c_, Method::kDelete);
  grpc::Status s = AuthorizeEveryCall(*c_, *ctx);
  if (s.ok()) s = CheckKey(*c_, req->key(), 0);
  if (FinishIfFailed(reactor, timed, s)) return reactor;
  const uint64_t shard = c_->shard_map.ShardOf(req->key());
  res->set_shard(shard);
  thread_local Command cmd;
  cmd.mutable_del()->set_key(req->key());
  StartWrite(*c_, ctx, shard, cmd, nullptr,
             [reactor, timed, res](const grpc::Status& st, uint64_t, const CommandResult& out) {
               res->set_existed(out.found());
               res->set_index(out.index());
               reactor->Finish(timed.Done(st));
             });
  return reactor;
}

grpc::ServerUnaryReactor* KvService::Cas(grpc::CallbackServerContext* ctx, const CasRequest* req,
                                         CasResponse* res) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Timed timed(c_, Method::kCas);
  grpc::Status s = AuthorizeEveryCall(*c_, *ctx);
  if (s.ok()) s = CheckKey(*c_, req->key(), req->value().size() + req->expected().size());
  if (FinishIfFailed(reactor, timed, s)) return reactor;
  const uint64_t shard = c_->shard_map.ShardOf(req->key());
  res->set_shard(shard);
  thread_local Command cmd;
  CasOp* op = cmd.mutable_cas();
  op->set_key(req->key());
  op->set_expect_absent(req->expect_absent());
  op->set_expected(req->expected());
  op->set_value(req->value());
  StartWrite(
      *c_, ctx, shard, cmd, req->has_session() ? &req->session() : nullptr,
      [reactor, timed, res](const grpc::Status& st, uint64_t applied, const CommandResult& out) {
        res->set_swapped(applied == kApplied);
        res->set_found(out.found());
        res->set_current(out.previous());
        res->set_index(out.index());
        reactor->Finish(timed.Done(st));
      });
  return reactor;
}

grpc::ServerUnaryReactor* KvService::Scan(grpc::CallbackServerContext* ctx, const ScanRequest* req,
                                          ScanResponse* res) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Timed timed(c_, Method::kScan);
  if (FinishIfFailed(reactor, timed, AuthorizeEveryCall(*c_, *ctx))) return reactor;
  uint64_t shard = req->shard();
  if (shard == 0) {
    const std::optional<uint64_t> tagged = c_->shard_map.ShardOfPrefix(req->prefix());
    if (!tagged) {
      reactor->Finish(
          timed.Done({grpc::StatusCode::INVALID_ARGUMENT,
                      "the prefix has no {hash tag}, so its keys may be on any shard: name "
                      "a shard (the CLI scans every shard when none is given)"}));
      return reactor;
    }
    shard = *tagged;
  }
  const auto& ids = c_->shard_map.shard_ids();
  if (!std::binary_search(ids.begin(), ids.end(), shard)) {
    reactor->Finish(timed.Done({grpc::StatusCode::INVALID_ARGUMENT,
                                "shard " + std::to_string(shard) + " is not in the shard map"}));
    return reactor;
  }
  res->set_shard(shard);
  nodehost::Query q;
  ScanQuery* sq = q.mutable_scan();
  sq->set_prefix(req->prefix());
  sq->set_start_after(req->start_after());
  sq->set_limit(req->limit());
  sq->set_start(req->start());
  sq->set_end(req->end());
  StartQuery(*c_, ctx, shard, q, req->consistency(),
             [reactor, timed, res](const grpc::Status& st, QueryResult* out) {
               *res->mutable_kvs() = std::move(*out->mutable_kvs());
               res->set_more(out->more());
               reactor->Finish(timed.Done(st));
             });
  return reactor;
}

grpc::ServerUnaryReactor* KvService::ShardMap(grpc::CallbackServerContext* ctx,
                                              const ShardMapRequest*, ShardMapResponse* res) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Timed timed(c_, Method::kShardMap);
  if (FinishIfFailed(reactor, timed, AuthorizeEveryCall(*c_, *ctx))) return reactor;
  for (uint64_t id : c_->shard_map.shard_ids()) res->add_shard_ids(id);
  for (const NodeEntry& n : c_->config->nodes) {
    NodeAddress* a = res->add_nodes();
    a->set_node_id(n.id);
    a->set_raft_address(n.raft_address);
    a->set_client_address(n.client_address);
  }
  reactor->Finish(timed.Done(grpc::Status::OK));
  return reactor;
}

grpc::ServerUnaryReactor* KvService::RegisterSession(grpc::CallbackServerContext* ctx,
                                                     const RegisterSessionRequest* req,
                                                     RegisterSessionResponse* res) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Timed timed(c_, Method::kRegisterSession);
  const uint64_t shard = req->shard();
  grpc::Status s = AuthorizeEveryCall(*c_, *ctx);
  if (s.ok()) s = RouteToLeader(*c_, ctx, shard);
  if (FinishIfFailed(reactor, timed, s)) return reactor;
  const ServiceContext* c = c_;
  const Timeout t = Budget(*c_, *ctx);
  FinishOnThread(reactor, timed, [c, ctx, res, shard, t]() -> grpc::Status {
    Result<Session> session = c->nh->SyncRegisterSession(shard, t);
    if (!session.ok()) return FromStatus(*c, ctx, shard, session.status());
    res->set_shard(shard);
    res->set_client_id(session->client_id());
    return grpc::Status::OK;
  });
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::Status(grpc::CallbackServerContext* ctx,
                                               const StatusRequest*, StatusResponse* res) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Timed timed(c_, Method::kStatus);
  if (FinishIfFailed(reactor, timed, AuthorizeEveryCall(*c_, *ctx))) return reactor;
  const NodeHostInfo info = c_->nh->GetInfo();
  res->set_node_id(c_->config->node_id);
  res->set_raft_address(c_->nh->raft_address());
  res->set_client_address(c_->config->client_address);
  res->set_metrics_address(c_->metrics_address);
  res->set_deployment_id(c_->config->deployment_id);
  res->set_replicas(info.replicas.size());
  res->set_leaders(static_cast<uint64_t>(
      std::count_if(info.replicas.begin(), info.replicas.end(),
                    [](const ReplicaInfo& r) { return r.role == ReplicaRole::kLeader; })));
  res->set_uptime_seconds(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - c_->started).count()));
  res->set_version(FLOTILLA_NODEHOST_VERSION);
  res->set_tls(c_->config->tls());
  reactor->Finish(timed.Done(grpc::Status::OK));
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::Shards(grpc::CallbackServerContext* ctx,
                                               const ShardsRequest*, ShardsResponse* res) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Timed timed(c_, Method::kShards);
  grpc::Status s = AuthorizeEveryCall(*c_, *ctx);
  if (s.ok()) {
    for (const ReplicaInfo& i : c_->nh->GetInfo().replicas)
      FillReplica(*c_, i, res->add_replicas());
  }
  reactor->Finish(timed.Done(s));
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::Shard(grpc::CallbackServerContext* ctx,
                                              const ShardRequest* req, ShardResponse* res) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Timed timed(c_, Method::kShard);
  grpc::Status s = AuthorizeEveryCall(*c_, *ctx);
  Result<ReplicaInfo> info = c_->nh->GetReplicaInfo(req->shard());
  if (s.ok() && !info.ok()) s = FromStatus(*c_, ctx, req->shard(), info.status());
  if (s.ok()) {
    FillReplica(*c_, *info, res->mutable_replica());
    for (const ShardEntry& e : c_->config->shards) {
      if (e.id != req->shard()) continue;
      for (uint64_t m : e.members) res->add_configured_members(m);
    }
  }
  reactor->Finish(timed.Done(s));
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::AddReplica(grpc::CallbackServerContext* ctx,
                                                   const AddReplicaRequest* req,
                                                   MembershipResponse* res) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Timed timed(c_, Method::kAddReplica);
  grpc::Status s = Authorize(*c_, *ctx);
  if (s.ok() && (req->replica() == 0 || req->raft_address().empty()))
    s = {grpc::StatusCode::INVALID_ARGUMENT, "add-replica needs a replica id and a raft address"};
  if (s.ok()) s = RequireLeader(*c_, ctx, req->shard());
  if (FinishIfFailed(reactor, timed, s)) return reactor;
  const NodeHost::MemberKind kind = req->kind() == NON_VOTING ? NodeHost::MemberKind::kNonVoting
                                    : req->kind() == WITNESS  ? NodeHost::MemberKind::kWitness
                                                              : NodeHost::MemberKind::kVoter;
  const Timeout t = req->timeout_ms() > 0 ? Timeout(req->timeout_ms()) : Budget(*c_, *ctx);
  FinishOnComplete(*c_, ctx, reactor, timed, req->shard(),
                   c_->nh->AddReplica(req->shard(), req->replica(), req->raft_address(), kind, t),
                   t, res);
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::RemoveReplica(grpc::CallbackServerContext* ctx,
                                                      const RemoveReplicaRequest* req,
                                                      MembershipResponse* res) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Timed timed(c_, Method::kRemoveReplica);
  grpc::Status s = Authorize(*c_, *ctx);
  if (s.ok()) s = RequireLeader(*c_, ctx, req->shard());
  if (FinishIfFailed(reactor, timed, s)) return reactor;
  const Timeout t = req->timeout_ms() > 0 ? Timeout(req->timeout_ms()) : Budget(*c_, *ctx);
  FinishOnComplete(*c_, ctx, reactor, timed, req->shard(),
                   c_->nh->RemoveReplica(req->shard(), req->replica(), t), t, res);
  return reactor;
}

namespace {

// Waits until `target` leads `shard` (polling, on a thread of its own).
grpc::Status AwaitLeader(const ServiceContext& c, const TransferLeaderRequest& req, Timeout t,
                         TransferLeaderResponse* res) {
  const auto deadline = Clock::now() + t;
  while (Clock::now() < deadline) {
    Result<ReplicaInfo> info = c.nh->GetReplicaInfo(req.shard());
    if (info.ok() && info->leader_id == req.target()) {
      res->set_leader(info->leader_id);
      res->set_term(info->term);
      return grpc::Status::OK;
    }
    std::this_thread::sleep_for(kTransferPoll);
  }
  return {grpc::StatusCode::DEADLINE_EXCEEDED,
          "replica " + std::to_string(req.target()) + " did not become leader of shard " +
              std::to_string(req.shard()) + " within " + std::to_string(t.count()) +
              " ms; check that it is a caught-up voter (nodehost shards)"};
}

}  // namespace

grpc::ServerUnaryReactor* AdminService::TransferLeader(grpc::CallbackServerContext* ctx,
                                                       const TransferLeaderRequest* req,
                                                       TransferLeaderResponse* res) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Timed timed(c_, Method::kTransferLeader);
  grpc::Status s = Authorize(*c_, *ctx);
  if (s.ok()) s = RequireLeader(*c_, ctx, req->shard());
  if (s.ok()) {
    const flotilla::Status st = c_->nh->TransferLeader(req->shard(), req->target());
    if (!st.ok()) s = FromStatus(*c_, ctx, req->shard(), st);
  }
  if (FinishIfFailed(reactor, timed, s)) return reactor;
  const Timeout t = req->timeout_ms() > 0 ? Timeout(req->timeout_ms()) : Budget(*c_, *ctx);
  const ServiceContext* c = c_;
  FinishOnThread(reactor, timed, [c, req, t, res] { return AwaitLeader(*c, *req, t, res); });
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::Snapshot(grpc::CallbackServerContext* ctx,
                                                 const SnapshotRequest* req,
                                                 SnapshotResponse* res) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Timed timed(c_, Method::kSnapshot);
  if (FinishIfFailed(reactor, timed, Authorize(*c_, *ctx))) return reactor;
  // The snapshot is taken by this daemon's replica, whatever its role: every
  // replica snapshots and compacts its own log.
  const Timeout t = req->timeout_ms() > 0 ? Timeout(req->timeout_ms()) : Budget(*c_, *ctx);
  res->set_node_id(c_->config->node_id);
  FinishOnComplete(*c_, ctx, reactor, timed, req->shard(), c_->nh->RequestSnapshot(req->shard(), t),
                   t, res);
  return reactor;
}

}  // namespace flotilla::nodehost

namespace flotilla::nodehost {

grpc::ServerUnaryReactor* AdminService::ExportShard(grpc::CallbackServerContext* ctx,
                                                    const ExportShardRequest* req,
                                                    ExportShardResponse* res) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Timed timed(c_, Method::kExportShard);
  // The whole shard's data leaves the cluster: an admin operation.
  if (FinishIfFailed(reactor, timed, Authorize(*c_, *ctx))) return reactor;
  const uint64_t shard = req->shard();
  Result<ReplicaInfo> info = c_->nh->GetReplicaInfo(shard);
  if (!info.ok()) {
    reactor->Finish(timed.Done(FromStatus(*c_, ctx, shard, info.status())));
    return reactor;
  }
  // The membership and term as this replica knows them now; the completion
  // runs on the engine's thread, which may not ask the NodeHost.
  ReplicaStatus now;
  FillReplica(*c_, *info, &now);
  res->set_node_id(c_->config->node_id);
  res->set_replica(now.replica());
  res->set_term(now.term());
  *res->mutable_members() = now.members();
  // A linearizable read of this replica (a follower asks the leader for the
  // read index): the dump holds every write acknowledged before the call.
  nodehost::Query q;
  q.mutable_dump();
  const Timeout t = req->timeout_ms() > 0 ? Timeout(req->timeout_ms()) : Budget(*c_, *ctx);
  Result<RequestHandle> h = c_->nh->Read(shard, q.SerializeAsString(), t);
  if (!h.ok()) {
    reactor->Finish(timed.Done(FromStatus(*c_, ctx, shard, h.status())));
    return reactor;
  }
  h->OnComplete([ctx, reactor, timed, shard, t, res](const RequestResult& r) {
    QueryResult answer;
    if (!r.ok()) return reactor->Finish(timed.Done(FromResult(ctx, shard, r, t)));
    if (!answer.ParseFromString(r.data)) {
      return reactor->Finish(
          timed.Done({grpc::StatusCode::INTERNAL, "the state machine's answer does not parse"}));
    }
    res->set_applied_index(answer.applied_index());
    res->set_state(std::move(*answer.mutable_state()));
    reactor->Finish(timed.Done(grpc::Status::OK));
  });
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::ComputeHash(grpc::CallbackServerContext* ctx,
                                                    const ComputeHashRequest* req,
                                                    ComputeHashResponse* res) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Timed timed(c_, Method::kComputeHash);
  if (FinishIfFailed(reactor, timed, Authorize(*c_, *ctx))) return reactor;
  Command cmd;
  cmd.mutable_hash();
  res->set_node_id(c_->config->node_id);
  StartWrite(*c_, ctx, req->shard(), cmd, nullptr,
             [reactor, timed, res](const grpc::Status& st, uint64_t, const CommandResult& out) {
               res->set_index(out.index());
               res->set_hash(out.hash());
               reactor->Finish(timed.Done(st));
             });
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::GetHash(grpc::CallbackServerContext* ctx,
                                                const GetHashRequest* req, GetHashResponse* res) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Timed timed(c_, Method::kGetHash);
  grpc::Status s = AuthorizeEveryCall(*c_, *ctx);
  Result<ReplicaInfo> info = c_->nh->GetReplicaInfo(req->shard());
  if (s.ok() && !info.ok()) s = FromStatus(*c_, ctx, req->shard(), info.status());
  nodehost::Query q;
  q.mutable_hash();
  QueryResult out;
  if (s.ok() && info->role == ReplicaRole::kWitness) {
    res->set_node_id(c_->config->node_id);
    res->set_replica(info->replica_id);
    res->set_witness(true);
    reactor->Finish(timed.Done(s));
    return reactor;
  }
  if (s.ok()) {
    Result<std::string> r = c_->nh->StaleRead(req->shard(), q.SerializeAsString());
    if (!r.ok()) {
      s = FromStatus(*c_, ctx, req->shard(), r.status());
    } else if (!out.ParseFromString(*r)) {
      s = {grpc::StatusCode::INTERNAL, "the state machine's answer does not parse"};
    }
  }
  if (s.ok()) {
    res->set_node_id(c_->config->node_id);
    res->set_replica(info->replica_id);
    res->set_index(out.hash_index());
    res->set_hash(out.hash());
    res->set_applied_index(out.applied_index());
  }
  reactor->Finish(timed.Done(s));
  return reactor;
}

}  // namespace flotilla::nodehost
