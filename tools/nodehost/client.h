// Client: the nodehost client API over gRPC, used by the CLI and the tests.
// It fetches the shard map, sends each key's request to a daemon that hosts
// its shard, and follows the daemons' hints (x-flotilla-leader,
// x-flotilla-hosts) to the leader.
//
// Retries: each attempt has its own deadline (attempt_timeout), shorter than
// the request's, so that a daemon that does not answer (paused, cut off)
// costs one attempt, not the whole request; a daemon that did not answer in
// time is avoided for a while. Reads and session writes (the shard applies a
// session's write at most once) are retried on another daemon after any
// failure; other writes only when the request certainly did not reach a
// daemon (no connection) or was refused before being proposed (wrong
// daemon, no leader, busy), because a retried write whose first attempt was
// applied could be applied twice: such a write that timed out ends with
// DEADLINE_EXCEEDED, its outcome unknown.
//
// Thread-safety: thread-safe (the channel cache and the leader hints are
// under a mutex); one Client may serve many threads.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "proto/kv.grpc.pb.h"
#include "tools/nodehost/shard_map.h"

namespace flotilla::nodehost {

struct ClientOptions {
  std::vector<std::string> endpoints;  // host:port of daemons' client addresses
  // Bearer token, sent with every call: admin operations need it, and so
  // does every call of a daemon with [auth] every_call.
  std::string token;
  std::string ca_file, cert_file, key_file;  // TLS (ca_file set: TLS on)
  std::chrono::milliseconds timeout{5000};   // per operation, retries included
  // One attempt on one daemon; zero: a quarter of `timeout`, at least 250 ms.
  std::chrono::milliseconds attempt_timeout{0};
  bool follow_leader = true;  // admin: follow the leader hint
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

// An exactly-once session on one shard (Client::RegisterSession). Pass it
// with each write; after a write succeeds the client moves it to the next
// series. After a failed write, resend the same write with the session
// unchanged until it succeeds (it is applied at most once), or abandon the
// session: its next write would otherwise take the failed one's series.
// Not thread-safe: one thread uses a session at a time.
struct ClientSession {
  uint64_t shard = 0;
  uint64_t client_id = 0;  // 0: not registered
  uint64_t series_id = 1;
  uint64_t responded_to = 0;
  void Completed() { responded_to = series_id++; }
};

// Splits "a,b,c" (empty items dropped).
std::vector<std::string> SplitList(const std::string& csv);

class Client {
 public:
  // Reads the TLS files; InvalidArgument-like errors come back as a status
  // with the file named.
  static std::unique_ptr<Client> Create(ClientOptions options, std::string* error);

  // `session` (optional) makes the write exactly-once and safe to resend.
  CallInfo Put(const std::string& key, const std::string& value, PutResponse* out,
               ClientSession* session = nullptr);
  CallInfo Get(const std::string& key, bool stale, GetResponse* out);
  CallInfo Delete(const std::string& key, DeleteResponse* out);
  CallInfo Cas(const std::string& key, const std::optional<std::string>& expected,
               const std::string& value, CasResponse* out, ClientSession* session = nullptr);
  // Registers a new session on `shard` (a write on its leader).
  CallInfo RegisterSession(uint64_t shard, ClientSession* out);
  // The shard of `key` (fetches the shard map first if needed); 0 when the
  // map cannot be had.
  uint64_t ShardOf(const std::string& key);
  // What a scan reads: keys with `prefix` in [start, end) (empty: no
  // bound), after `start_after` (the last key of the previous page).
  struct ScanRange {
    std::string prefix, start, end, start_after;
  };
  // One shard (`shard` non-zero or a prefix with a hash tag) or every shard,
  // merged in key order; at most `limit` keys.
  CallInfo Scan(const ScanRange& range, uint32_t limit, uint64_t shard, bool stale,
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
  // The replica of the daemon at `endpoint`, in one attempt of the whole
  // timeout (a large shard takes a while).
  CallInfo ExportShard(const std::string& endpoint, const ExportShardRequest& req,
                       ExportShardResponse* out);
  // Proposed through the shard's leader.
  CallInfo ComputeHash(const ComputeHashRequest& req, ComputeHashResponse* out);
  CallInfo GetHash(const std::string& endpoint, const GetHashRequest& req, GetHashResponse* out);

  const ClientOptions& options() const { return options_; }

 private:
  explicit Client(ClientOptions o) : options_(std::move(o)) {}

  // One RPC on `endpoint`; `fn` issues it on the stubs.
  using Rpc = std::function<grpc::Status(KV::Stub*, Admin::Stub*, grpc::ClientContext*)>;
  CallInfo CallOnce(const std::string& endpoint, const Rpc& fn,
                    std::chrono::steady_clock::time_point deadline);
  std::chrono::steady_clock::duration AttemptTimeout() const;
  // A daemon that let an attempt time out is tried last for kSuspectFor.
  void MarkSuspect(const std::string& endpoint);
  bool Suspect(const std::string& endpoint);
  // Where to go after a failed attempt on `last`: the leader named, a host
  // named, then the other endpoints; those down or suspect last. Empty:
  // every endpoint is down.
  std::string NextEndpoint(const CallInfo& info, const std::string& last,
                           const std::set<std::string>& down);
  // Tries `first` then the hints and the other endpoints until an answer
  // that is not a redirect, or the deadline. `retry_any` retries after any
  // failure (reads); otherwise only after failures that surely did nothing.
  CallInfo Routed(const std::string& first, const Rpc& fn, bool retry_any);
  // A KV call routed by the shard of `key`.
  CallInfo Keyed(const std::string& key, const Rpc& fn, bool retry_any);
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
  std::map<std::string, std::shared_ptr<Channel>> channels_;                    // GUARDED_BY(mu_)
  std::map<uint64_t, std::string> leader_of_;                                   // GUARDED_BY(mu_)
  std::map<std::string, std::chrono::steady_clock::time_point> suspect_until_;  // GUARDED_BY(mu_)
  std::optional<ShardMap> shard_map_;                                           // GUARDED_BY(mu_)
  size_t next_endpoint_ = 0;                                                    // GUARDED_BY(mu_)
};

}  // namespace flotilla::nodehost
