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

// How NodeHost::StartReplica treats its `members` argument.
enum class StartMode : uint8_t {
  // A new shard: `members` lists every initial member (replica id -> raft
  // address), this replica among them.
  kNewShard,
  // Joining a running shard that has added this replica: `members` gives
  // the addresses of current members to reach (an address book only: the
  // membership itself comes from the leader).
  kJoin,
  // A restart only: the replica's stored state must exist (NotFound
  // otherwise) and `members` must be empty.
  kRestart,
};

class NodeHost {
 public:
  // Opens the LogDB in config.data_dir, starts the transport and workers.
  // Errors: InvalidArgument when `config` fails NodeHostConfig::Validate
  // (naming the field), or raft_address is not a loopback address and TLS
  // is off without `insecure`; IOError when the data directory cannot be
  // created or the LogDB cannot be opened (another process holds its lock,
  // a disk error); Corruption when the LogDB's own files are damaged beyond
  // what RocksDB recovers (the message names the file); Unavailable when
  // raft_address cannot be listened on.
  static Result<std::unique_ptr<NodeHost>> Create(const NodeHostConfig& config);
  virtual ~NodeHost() = default;

  // Stops every replica and thread. Requests in flight end as kTerminated.
  virtual void Close() = 0;
  virtual std::string raft_address() const = 0;

  // Starts replica config.replica_id of shard config.shard_id on this
  // NodeHost, as `mode` says (StartMode above); with stored state for the
  // replica, kNewShard and kJoin restart from it and ignore `members`, so a
  // program may pass the same arguments at every start. Errors:
  //  - InvalidArgument: `config` fails ShardConfig::Validate (naming the
  //    field); kNewShard whose `members` lacks this replica; kRestart with
  //    `members`; a shard created with another state-machine kind;
  //  - AlreadyExists: the shard runs on this NodeHost (or is starting);
  //  - NotFound: kRestart and nothing stored for the replica;
  //  - Corruption: stored records of the replica are damaged and no other
  //    voter holds a copy to repair them from (the message names the
  //    record, the file where RocksDB says, and the replica);
  //  - IOError, NoSpace: the LogDB failed (see NodeHostInfo::storage);
  //  - Terminated: the NodeHost is closed.
  [[nodiscard]] virtual Status StartReplica(const ShardConfig& config, const Members& members,
                                            StartMode mode, StateMachineFactory factory) = 0;
  // The same for the concurrent and on-disk state-machine kinds. A shard
  // keeps the kind it was created with.
  [[nodiscard]] virtual Status StartConcurrentReplica(const ShardConfig& config,
                                                      const Members& members, StartMode mode,
                                                      ConcurrentStateMachineFactory factory) = 0;
  [[nodiscard]] virtual Status StartOnDiskReplica(const ShardConfig& config, const Members& members,
                                                  StartMode mode,
                                                  OnDiskStateMachineFactory factory) = 0;
  // Stops the replica; its pending requests complete kTerminated. Its
  // stored state stays (a later start restarts it). NotFound when the
  // shard does not run here.
  [[nodiscard]] virtual Status StopReplica(uint64_t shard_id) = 0;
  // Deletes everything this NodeHost stored for the replica (log, state,
  // snapshots), after it was removed from its shard. The replica id can
  // never rejoin the shard. Rejected while the replica runs; IOError when
  // the LogDB fails.
  [[nodiscard]] virtual Status RemoveData(uint64_t shard_id, uint64_t replica_id) = 0;

  // Proposes `cmd`; completes with the state machine's result once applied
  // on this replica (RequestCode says how it ended). Refused at once with:
  //  - NotFound: the shard does not run here; Terminated: it is stopping;
  //  - TooLarge: `cmd` exceeds NodeHostConfig::max_entry_bytes;
  //  - Busy: the proposal queue, the shard's uncommitted or unapplied bytes,
  //    or a stalled LogDB is at its bound (retry later);
  //  - NoSpace, IOError: the NodeHost refuses writes (NodeHostInfo::storage).
  // ProposeInSession, RegisterSession and CloseSession refuse the same way,
  // and with InvalidArgument for a session that was never registered.
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
  // Refused with NotFound (the shard does not run here), Terminated or Busy
  // (the read queue is full); a failed Lookup completes kRejected with its
  // status in RequestResult::error.
  virtual Result<RequestHandle> Read(uint64_t shard_id, std::string_view query, Timeout t) = 0;
  RequestResult SyncRead(uint64_t shard_id, std::string_view query, Timeout t);
  // Reads the local state machine now; may be stale. NotFound when the
  // shard does not run here, or the state machine's Lookup error.
  virtual Result<std::string> StaleRead(uint64_t shard_id, std::string_view query) = 0;

  // Membership. Each completes once the change is applied on this replica,
  // kRejected when the change is invalid (a replica id used before, the
  // last voter removed, a change while another is pending). Refused at
  // once with NotFound or Terminated, as Propose. TransferLeader asks the
  // leader to hand over to `target` (NotFound when the shard does not run
  // here); whether it happened shows in GetReplicaInfo.
  enum class MemberKind { kVoter, kNonVoting, kWitness };
  virtual Result<RequestHandle> AddReplica(uint64_t shard_id, uint64_t replica_id,
                                           const std::string& address, MemberKind kind,
                                           Timeout t) = 0;
  virtual Result<RequestHandle> RemoveReplica(uint64_t shard_id, uint64_t replica_id,
                                              Timeout t) = 0;
  [[nodiscard]] virtual Status TransferLeader(uint64_t shard_id, uint64_t target) = 0;

  // Takes a snapshot of this replica now (and compacts its log as an
  // automatic snapshot would). Completes with the snapshot's index as value,
  // or kRejected when it could not be taken (why in RequestResult::error).
  // NotFound when the shard does not run here.
  virtual Result<RequestHandle> RequestSnapshot(uint64_t shard_id, Timeout t) = 0;

  // GetReplicaInfo and GetMembership: NotFound when the shard does not run
  // here. GetInfo and GetMetrics cannot fail.
  virtual Result<ReplicaInfo> GetReplicaInfo(uint64_t shard_id) = 0;
  virtual NodeHostInfo GetInfo() = 0;
  // Separate from GetReplicaInfo, which stays cheap enough to route every
  // request by: this one copies the member lists and their addresses.
  virtual Result<ShardMembership> GetMembership(uint64_t shard_id) = 0;
  // Counters, latency histograms and gauges of this NodeHost (metrics.h).
  virtual NodeHostMetrics GetMetrics() = 0;
};

}  // namespace flotilla
