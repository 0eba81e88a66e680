// The daemon's gRPC services on its client address: KV (Put, Get, Delete,
// Cas, Scan, ShardMap, RegisterSession) and Admin (Status, Shards, Shard, AddReplica,
// RemoveReplica, TransferLeader, Snapshot). docs/cli.md describes them.
//
// Thread-safety: gRPC calls the handlers from many threads; the services
// hold only immutable state and thread-safe pointers (NodeHost, metrics).
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

class KvService final : public KV::Service {
 public:
  explicit KvService(const ServiceContext* ctx) : c_(ctx) {}
  grpc::Status Put(grpc::ServerContext* ctx, const PutRequest* req, PutResponse* res) override;
  grpc::Status Get(grpc::ServerContext* ctx, const GetRequest* req, GetResponse* res) override;
  grpc::Status Delete(grpc::ServerContext* ctx, const DeleteRequest* req,
                      DeleteResponse* res) override;
  grpc::Status Cas(grpc::ServerContext* ctx, const CasRequest* req, CasResponse* res) override;
  grpc::Status Scan(grpc::ServerContext* ctx, const ScanRequest* req, ScanResponse* res) override;
  grpc::Status ShardMap(grpc::ServerContext* ctx, const ShardMapRequest* req,
                        ShardMapResponse* res) override;
  grpc::Status RegisterSession(grpc::ServerContext* ctx, const RegisterSessionRequest* req,
                               RegisterSessionResponse* res) override;

 private:
  const ServiceContext* c_;
};

class AdminService final : public Admin::Service {
 public:
  explicit AdminService(const ServiceContext* ctx) : c_(ctx) {}
  grpc::Status Status(grpc::ServerContext* ctx, const StatusRequest* req,
                      StatusResponse* res) override;
  grpc::Status Shards(grpc::ServerContext* ctx, const ShardsRequest* req,
                      ShardsResponse* res) override;
  grpc::Status Shard(grpc::ServerContext* ctx, const ShardRequest* req,
                     ShardResponse* res) override;
  grpc::Status AddReplica(grpc::ServerContext* ctx, const AddReplicaRequest* req,
                          MembershipResponse* res) override;
  grpc::Status RemoveReplica(grpc::ServerContext* ctx, const RemoveReplicaRequest* req,
                             MembershipResponse* res) override;
  grpc::Status TransferLeader(grpc::ServerContext* ctx, const TransferLeaderRequest* req,
                              TransferLeaderResponse* res) override;
  grpc::Status Snapshot(grpc::ServerContext* ctx, const SnapshotRequest* req,
                        SnapshotResponse* res) override;

 private:
  const ServiceContext* c_;
};

// Whether the caller may change membership or data: a verified client
// certificate when the client API has TLS ([client_tls] or [tls]), holding
// one of client_tls.client_names when that is set; otherwise the configured
// bearer token. UNAUTHENTICATED / PERMISSION_DENIED with what to do
// otherwise.
grpc::Status Authorize(const ServiceContext& c, const grpc::ServerContext& ctx);

// Authorize for the calls that need credentials only with [auth] every_call
// (key-value reads and writes, Status, Shards, Shard, ShardMap); OK without.
grpc::Status AuthorizeEveryCall(const ServiceContext& c, const grpc::ServerContext& ctx);

// Whether a request that the engine finished with `code` was certainly never
// applied, so that resending it, even a write, cannot apply it twice: such
// an answer carries kRetrySafeHeader and the client resends it.
bool RetrySafe(RequestCode code);

}  // namespace flotilla::nodehost
