// NodeHost: one per process. Runs many shard replicas on fixed worker pools,
// with one LogDB and one transport shared by all of them.
//
// Thread-safe: every method may be called from any thread.
//
//   NodeHostConfig nc; nc.data_dir = "/var/lib/app"; nc.raft_address = "10.0.0.1:7000";
//   auto nh = NodeHost::Create(nc).value();
//   ShardConfig sc; sc.shard_id = 1; sc.replica_id = 1;
//   nh->StartReplica(sc, {{1, "10.0.0.1:7000"}, {2, ...}, {3, ...}}, false,
//   MakeMySM).IgnoreError(); RequestResult r = nh->SyncPropose(1, "set x 1",
//   std::chrono::seconds(2));
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "flotilla/config.h"
#include "flotilla/metrics.h"
#include "flotilla/request.h"
#include "flotilla/session.h"
#include "flotilla/state_machine.h"
#include "flotilla/status.h"

namespace flotilla {

// A replica's part in its shard, as the engine last saw it.
enum class ReplicaRole : uint8_t {
  kFollower,
  kCandidate,
  kPreCandidate,
  kLeader,
  kNonVoting,
  kWitness,
};
// "follower", "candidate", "pre-candidate", "leader", "non-voting", "witness".
std::string_view ReplicaRoleName(ReplicaRole role);

struct ReplicaInfo {
  uint64_t shard_id = 0;
  uint64_t replica_id = 0;
  uint64_t leader_id = 0;  // 0: unknown
  uint64_t term = 0;
  uint64_t commit_index = 0;
  uint64_t applied_index = 0;
  ReplicaRole role = ReplicaRole::kFollower;
  bool quiesced = false;
};

// A shard's membership as of this replica's applied index, with each
// member's address.
struct ShardMembership {
  Members voters;
  Members non_voting;
  Members witnesses;
};

struct NodeHostInfo {
  std::string raft_address;
  std::vector<ReplicaInfo> replicas;
  // OK, or why this NodeHost refuses writes: NoSpace while free space is
  // below NodeHostConfig::min_free_bytes (clears by itself when space is
  // freed), NoSpace when the LogDB itself found the disk full (clears by
  // itself once the LogDB resumes), or another LogDB failure (IOError,
  // until a restart).
  Status storage;
};

using Timeout = std::chrono::milliseconds;

class NodeHost {
 public:
  // Opens the LogDB in config.data_dir, starts the transport and workers.
  static Result<std::unique_ptr<NodeHost>> Create(const NodeHostConfig& config);
  virtual ~NodeHost() = default;

  // Stops every replica and thread. Requests in flight end as kTerminated.
  virtual void Close() = 0;
  virtual std::string raft_address() const = 0;

  // Starts a replica. A new shard: `initial` lists every member and `join`
  // is false. Joining a running shard (after it added this replica): `join`
  // is true and `initial` gives the addresses of the current members (an
  // address book only: the membership itself comes from the leader).
  // Restarting: the stored state wins and `initial` is ignored.
  [[nodiscard]] virtual Status StartReplica(const ShardConfig& config, const Members& initial,
                                            bool join, StateMachineFactory factory) = 0;
  // The same for the concurrent and on-disk state-machine kinds. A shard
  // keeps the kind it was created with.
  [[nodiscard]] virtual Status StartConcurrentReplica(const ShardConfig& config,
                                                      const Members& initial, bool join,
                                                      ConcurrentStateMachineFactory factory) = 0;
  [[nodiscard]] virtual Status StartOnDiskReplica(const ShardConfig& config, const Members& initial,
                                                  bool join, OnDiskStateMachineFactory factory) = 0;
  [[nodiscard]] virtual Status StopReplica(uint64_t shard_id) = 0;
  // Deletes everything this NodeHost stored for the replica (log, state,
  // snapshots), after it was removed from its shard. Refused while the
  // replica runs. The replica id can never rejoin the shard.
  [[nodiscard]] virtual Status RemoveData(uint64_t shard_id, uint64_t replica_id) = 0;

  // Proposes `cmd`; completes with the state machine's result once applied
  // on this replica. Busy (queue full), TooLarge or NotFound on refusal.
  virtual Result<RequestHandle> Propose(uint64_t shard_id, std::string_view cmd, Timeout t) = 0;
  RequestResult SyncPropose(uint64_t shard_id, std::string_view cmd, Timeout t);

  // Exactly-once proposals. RegisterSession proposes a new session: its
  // `session` carries the new client id at once and may be used once
  // `handle` completes kCompleted (on kTimeout, whether it registered is
  // unknown: register another). ProposeInSession may be retried with the
  // same session state and applies at most once; CloseSession ends the
  // session once its handle completes. The Sync forms wait for the handle.
  struct PendingSession {
    Session session;
    RequestHandle handle;
  };
  virtual Result<PendingSession> RegisterSession(uint64_t shard_id, Timeout t) = 0;
  Result<Session> SyncRegisterSession(uint64_t shard_id, Timeout t);
  virtual Result<RequestHandle> ProposeInSession(const Session& session, std::string_view cmd,
                                                 Timeout t) = 0;
  virtual Result<RequestHandle> CloseSession(const Session& session, Timeout t) = 0;
  [[nodiscard]] Status SyncCloseSession(const Session& session, Timeout t);

  // Linearizable read: a ReadIndex round, then Lookup once applied. With
  // ShardConfig::lease_read, a leader holding its lease skips the round.
  virtual Result<RequestHandle> Read(uint64_t shard_id, std::string_view query, Timeout t) = 0;
  RequestResult SyncRead(uint64_t shard_id, std::string_view query, Timeout t);
  // Reads the local state machine now; may be stale.
  virtual Result<std::string> StaleRead(uint64_t shard_id, std::string_view query) = 0;

  // Membership. Each completes once the change is applied on this replica.
  enum class MemberKind { kVoter, kNonVoting, kWitness };
  virtual Result<RequestHandle> AddReplica(uint64_t shard_id, uint64_t replica_id,
                                           const std::string& address, MemberKind kind,
                                           Timeout t) = 0;
  virtual Result<RequestHandle> RemoveReplica(uint64_t shard_id, uint64_t replica_id,
                                              Timeout t) = 0;
  [[nodiscard]] virtual Status TransferLeader(uint64_t shard_id, uint64_t target) = 0;

  // Takes a snapshot of this replica now (and compacts its log as an
  // automatic snapshot would). Completes with the snapshot's index as value.
  virtual Result<RequestHandle> RequestSnapshot(uint64_t shard_id, Timeout t) = 0;

  virtual Result<ReplicaInfo> GetReplicaInfo(uint64_t shard_id) = 0;
  virtual NodeHostInfo GetInfo() = 0;
  // Separate from GetReplicaInfo, which stays cheap enough to route every
  // request by: this one copies the member lists and their addresses.
  virtual Result<ShardMembership> GetMembership(uint64_t shard_id) = 0;
  // Counters, latency histograms and gauges of this NodeHost (metrics.h).
  virtual NodeHostMetrics GetMetrics() = 0;
};

}  // namespace flotilla
