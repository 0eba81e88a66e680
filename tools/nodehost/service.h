// The daemon's gRPC services on its client address: KV (Put, Get, Delete,
// Cas, Scan, ShardMap, RegisterSession) and Admin (Status, Shards, Shard, AddReplica,
// RemoveReplica, TransferLeader, Snapshot, ExportShard, ComputeHash,
// GetHash). docs/cli.md describes them.
//
// Thread-safety: gRPC calls the handlers from many threads, and the engine
// finishes them from its own; the services hold only immutable state and
// thread-safe pointers (NodeHost, metrics).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "flotilla/node_host.h"
#include "proto/kv.grpc.pb.h"
#include "tools/nodehost/config.h"
#include "tools/nodehost/kv_state_machine.h"
#include "tools/nodehost/metrics.h"
#include "tools/nodehost/shard_map.h"

namespace flotilla::nodehost {

// Trailing metadata keys that tell a client where to go instead.
inline constexpr char kLeaderHeader[] = "x-flotilla-leader";
inline constexpr char kHostsHeader[] = "x-flotilla-hosts";
// Set when the request was refused before anything was proposed, so that
// resending it (even a write) cannot apply it twice.
inline constexpr char kRetrySafeHeader[] = "x-flotilla-retry-safe";

// What both services share. Outlives them.
struct ServiceContext {
  NodeHost* nh = nullptr;
  const DaemonConfig* config = nullptr;
  ShardMap shard_map;
  DaemonMetrics* metrics = nullptr;
  std::string token;  // empty: no token configured
  std::string metrics_address;
  // Shards whose replica could not start, with the reason: the daemon
  // serves the others (one replica's damage never stops the rest). Written
  // before serving starts, read-only afterwards.
  std::map<uint64_t, std::string> failed_shards;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

// The services run on gRPC's callback API: a handler checks and routes the
// request on the gRPC thread that received it, hands it to the engine and
// returns; the engine's completion (RequestHandle::OnComplete) finishes the
// call on the engine's thread. No thread waits for a request, so the number
// of requests in flight is bounded by the engine's queues (docs/cli.md,
// "Back-pressure"), not by a thread pool. Session registration and leader
// transfer, which the engine offers only as waits, run on a thread of their
// own per call.
class KvService final : public KV::CallbackService {
 public:
  explicit KvService(const ServiceContext* ctx) : c_(ctx) {}
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* ctx, const PutRequest* req,
                                PutResponse* res) override;
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx, const GetRequest* req,
                                GetResponse* res) override;
  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* ctx, const DeleteRequest* req,
                                   DeleteResponse* res) override;
  grpc::ServerUnaryReactor* Cas(grpc::CallbackServerContext* ctx, const CasRequest* req,
                                CasResponse* res) override;
  grpc::ServerUnaryReactor* Scan(grpc::CallbackServerContext* ctx, const ScanRequest* req,
                                 ScanResponse* res) override;
  grpc::ServerUnaryReactor* ShardMap(grpc::CallbackServerContext* ctx, const ShardMapRequest* req,
                                     ShardMapResponse* res) override;
  grpc::ServerUnaryReactor* RegisterSession(grpc::CallbackServerContext* ctx,
                                            const RegisterSessionRequest* req,
                                            RegisterSessionResponse* res) override;

 private:
  const ServiceContext* c_;
};

class AdminService final : public Admin::CallbackService {
 public:
  explicit AdminService(const ServiceContext* ctx) : c_(ctx) {}
  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* ctx, const StatusRequest* req,
                                   StatusResponse* res) override;
  grpc::ServerUnaryReactor* Shards(grpc::CallbackServerContext* ctx, const ShardsRequest* req,
                                   ShardsResponse* res) override;
  grpc::ServerUnaryReactor* Shard(grpc::CallbackServerContext* ctx, const ShardRequest* req,
                                  ShardResponse* res) override;
  grpc::ServerUnaryReactor* AddReplica(grpc::CallbackServerContext* ctx,
                                       const AddReplicaRequest* req,
                                       MembershipResponse* res) override;
  grpc::ServerUnaryReactor* RemoveReplica(grpc::CallbackServerContext* ctx,
                                          const RemoveReplicaRequest* req,
                                          MembershipResponse* res) override;
  grpc::ServerUnaryReactor* TransferLeader(grpc::CallbackServerContext* ctx,
                                           const TransferLeaderRequest* req,
                                           TransferLeaderResponse* res) override;
  grpc::ServerUnaryReactor* Snapshot(grpc::CallbackServerContext* ctx, const SnapshotRequest* req,
                                     SnapshotResponse* res) override;
  grpc::ServerUnaryReactor* ExportShard(grpc::CallbackServerContext* ctx,
                                        const ExportShardRequest* req,
                                        ExportShardResponse* res) override;
  grpc::ServerUnaryReactor* ComputeHash(grpc::CallbackServerContext* ctx,
                                        const ComputeHashRequest* req,
                                        ComputeHashResponse* res) override;
  grpc::ServerUnaryReactor* GetHash(grpc::CallbackServerContext* ctx, const GetHashRequest* req,
                                    GetHashResponse* res) override;

 private:
  const ServiceContext* c_;
};

// Whether the caller may change membership or data: a verified client
// certificate when the client API has TLS ([client_tls] or [tls]), holding
// one of client_tls.client_names when that is set; otherwise the configured
// bearer token. UNAUTHENTICATED / PERMISSION_DENIED with what to do
// otherwise.
grpc::Status Authorize(const ServiceContext& c, const grpc::ServerContextBase& ctx);

// Authorize for the calls that need credentials only with [auth] every_call
// (key-value reads and writes, Status, Shards, Shard, ShardMap); OK without.
grpc::Status AuthorizeEveryCall(const ServiceContext& c, const grpc::ServerContextBase& ctx);

// Whether a request that the engine finished with `code` was certainly never
// applied, so that resending it, even a write, cannot apply it twice: such
// an answer carries kRetrySafeHeader and the client resends it.
bool RetrySafe(RequestCode code);

}  // namespace flotilla::nodehost
