#include "engine/raft/types.h"

namespace flotilla::raft {

std::string_view MessageTypeName(MessageType t) {
  switch (t) {
    case MessageType::kNone:
      return "None";
    case MessageType::kElection:
      return "Election";
    case MessageType::kLeaderHeartbeat:
      return "LeaderHeartbeat";
    case MessageType::kCheckQuorum:
      return "CheckQuorum";
    case MessageType::kPropose:
      return "Propose";
    case MessageType::kReadIndex:
      return "ReadIndex";
    case MessageType::kUnreachable:
      return "Unreachable";
    case MessageType::kSnapshotStatus:
      return "SnapshotStatus";
    case MessageType::kReplicate:
      return "Replicate";
    case MessageType::kReplicateResp:
      return "ReplicateResp";
    case MessageType::kRequestVote:
      return "RequestVote";
    case MessageType::kRequestVoteResp:
      return "RequestVoteResp";
    case MessageType::kRequestPreVote:
      return "RequestPreVote";
    case MessageType::kRequestPreVoteResp:
      return "RequestPreVoteResp";
    case MessageType::kInstallSnapshot:
      return "InstallSnapshot";
    case MessageType::kHeartbeat:
      return "Heartbeat";
    case MessageType::kHeartbeatResp:
      return "HeartbeatResp";
    case MessageType::kReadIndexResp:
      return "ReadIndexResp";
    case MessageType::kLeaderTransfer:
      return "LeaderTransfer";
    case MessageType::kTimeoutNow:
      return "TimeoutNow";
    case MessageType::kQuiesce:
      return "Quiesce";
    case MessageType::kCount:
      break;
  }
  return "Unknown";
}

std::string_view RoleName(Role r) {
  switch (r) {
    case Role::kFollower:
      return "follower";
    case Role::kCandidate:
      return "candidate";
    case Role::kPreCandidate:
      return "pre-candidate";
    case Role::kLeader:
      return "leader";
    case Role::kNonVoting:
      return "non-voting";
    case Role::kWitness:
      return "witness";
  }
  return "unknown";
}

size_t Message::SizeBytes() const {
  size_t n = 96;
  for (const Entry& e : entries) n += e.SizeBytes();
  return n;
}

void Update::Clear() {
  shard_id = 0;
  replica_id = 0;
  entries_to_save.clear();
  hard_state.reset();
  snapshot.reset();
  messages.clear();
  messages_after_persist.clear();
  committed_entries.clear();
  ready_reads.clear();
  dropped_reads.clear();
  dropped_keys.clear();
  soft_state.reset();
  last_committed_out = 0;
}

}  // namespace flotilla::raft
