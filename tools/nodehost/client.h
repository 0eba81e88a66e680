// Client: the nodehost client API over gRPC, used by the CLI and the tests.
// It fetches the shard map, sends each key's request to a daemon that hosts
// its shard, and follows the daemons' hints (x-flotilla-leader,
// x-flotilla-hosts) to the leader.
//
// Retries: reads are retried on another daemon after any failure; writes
// only when the request certainly did not reach a daemon (no connection) or
// was refused before being proposed (wrong daemon, busy), because a retried
// write whose first attempt was applied could be applied twice.
//
// Thread-safety: thread-safe (the channel cache and the leader hints are
// under a mutex); one Client may serve many threads.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "proto/kv.grpc.pb.h"
#include "tools/nodehost/shard_map.h"

namespace flotilla::nodehost {

struct ClientOptions {
  std::vector<std::string> endpoints;        // host:port of daemons' client addresses
  std::string token;                         // bearer token for admin operations
  std::string ca_file, cert_file, key_file;  // TLS (ca_file set: TLS on)
  std::chrono::milliseconds timeout{5000};   // per operation, retries included
  bool follow_leader = true;                 // admin: follow the leader hint
};

// How a call ended: the final gRPC status and where it went.
struct CallInfo {
  grpc::Status status;
  std::string endpoint;      // the daemon that answered last
  std::string leader_hint;   // x-flotilla-leader of the last answer, if any
  std::string hosts_hint;    // x-flotilla-hosts of the last answer, if any
  bool unreachable = false;  // no daemon could be reached at all
  bool retry_safe = false;   // refused before anything was proposed
  std::vector<std::string> unreachable_endpoints;
  bool ok() const { return status.ok(); }
};

// Splits "a,b,c" (empty items dropped).
std::vector<std::string> SplitList(const std::string& csv);

class Client {
 public:
  // Reads the TLS files; InvalidArgument-like errors come back as a status
  // with the file named.
  static std::unique_ptr<Client> Create(ClientOptions options, std::string* error);

  CallInfo Put(const std::string& key, const std::string& value, PutResponse* out);
  CallInfo Get(const std::string& key, bool stale, GetResponse* out);
  CallInfo Delete(const std::string& key, DeleteResponse* out);
  CallInfo Cas(const std::string& key, const std::optional<std::string>& expected,
               const std::string& value, CasResponse* out);
  // One shard (`shard` non-zero or a prefix with a hash tag) or every shard,
  // merged in key order; at most `limit` keys.
  CallInfo Scan(const std::string& prefix, uint32_t limit, uint64_t shard, bool stale,
                std::vector<KeyValue>* out, bool* more);
  CallInfo GetShardMap(ShardMapResponse* out);

  // Admin: `endpoint` empty means the first daemon that answers.
  CallInfo Status(const std::string& endpoint, StatusResponse* out);
  CallInfo Shards(const std::string& endpoint, ShardsResponse* out);
  CallInfo Shard(uint64_t shard, ShardResponse* out);
  CallInfo AddReplica(const AddReplicaRequest& req, MembershipResponse* out);
  CallInfo RemoveReplica(const RemoveReplicaRequest& req, MembershipResponse* out);
  CallInfo TransferLeader(const TransferLeaderRequest& req, TransferLeaderResponse* out);
  // On the daemon at `endpoint` (each replica snapshots its own log).
  CallInfo Snapshot(const std::string& endpoint, const SnapshotRequest& req, SnapshotResponse* out);

  const ClientOptions& options() const { return options_; }

 private:
  explicit Client(ClientOptions o) : options_(std::move(o)) {}

  // One RPC on `endpoint`; `fn` issues it on the stubs.
  using Rpc = std::function<grpc::Status(KV::Stub*, Admin::Stub*, grpc::ClientContext*)>;
  CallInfo CallOnce(const std::string& endpoint, const Rpc& fn,
                    std::chrono::steady_clock::time_point deadline, bool auth);
  // Tries `first` then the hints and the other endpoints until an answer
  // that is not a redirect, or the deadline. `retry_any` retries after any
  // failure (reads); otherwise only after failures that surely did nothing.
  CallInfo Routed(const std::string& first, const Rpc& fn, bool retry_any, bool auth);
  // A KV call routed by the shard of `key`.
  CallInfo Keyed(const std::string& key, const Rpc& fn, bool retry_any, bool auth);
  // An admin call on the shard's leader.
  CallInfo OnLeader(uint64_t shard, const Rpc& fn);
  std::string EndpointForShard(uint64_t shard);
  void RememberLeader(uint64_t shard, const CallInfo& info);
  CallInfo EnsureShardMap();

  struct Channel {
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<KV::Stub> kv;
    std::unique_ptr<Admin::Stub> admin;
  };
  std::shared_ptr<Channel> ChannelFor(const std::string& endpoint);
  void DropChannel(const std::string& endpoint);

  ClientOptions options_;
  std::shared_ptr<grpc::ChannelCredentials> creds_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Channel>> channels_;  // GUARDED_BY(mu_)
  std::map<uint64_t, std::string> leader_of_;                 // GUARDED_BY(mu_)
  std::optional<ShardMap> shard_map_;                         // GUARDED_BY(mu_)
  size_t next_endpoint_ = 0;                                  // GUARDED_BY(mu_)
};

}  // namespace flotilla::nodehost
