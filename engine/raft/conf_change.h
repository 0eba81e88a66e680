// Membership changes: the ConfChange request, its encoding inside a log entry,
// and the pure computation of the next Membership (joint consensus).
//
// A change either is "simple" (at most one voter added or removed, applied in
// one step) or enters a joint configuration in which both the old and the new
// voter sets must agree, and which is later left by an empty ConfChange. See
// docs/raft-core.md, "Membership".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/raft/types.h"

namespace flotilla::raft {

enum class ConfChangeType : uint8_t {
  kAddVoter = 0,      // add a voter, or promote a non-voting replica
  kAddNonVoting = 1,  // add a non-voting replica, or demote a voter
  kAddWitness = 2,    // add a witness (a voter without state-machine data)
  kRemove = 3,        // remove a replica of any kind
};

struct ConfChangeItem {
  ConfChangeType type = ConfChangeType::kAddVoter;
  ReplicaId replica = kNoReplica;
  std::string context;  // opaque to the core; the driver stores the address here
  friend bool operator==(const ConfChangeItem&, const ConfChangeItem&) = default;
};

enum class ConfTransition : uint8_t {
  kAuto = 0,           // simple when possible, else joint left automatically
  kJointImplicit = 1,  // joint, left automatically once committed
  kJointExplicit = 2,  // joint, left by an explicit empty ConfChange
};

struct ConfChange {
  ConfTransition transition = ConfTransition::kAuto;
  std::vector<ConfChangeItem> items;  // empty: leave the joint configuration

  bool IsLeaveJoint() const { return items.empty(); }
  friend bool operator==(const ConfChange&, const ConfChange&) = default;
};

std::string EncodeConfChange(const ConfChange& cc);
// Returns false when `data` is not a well-formed encoding.
[[nodiscard]] bool DecodeConfChange(std::string_view data, ConfChange* cc);

struct ChangeResult {
  bool ok = false;
  std::string error;  // why the change was refused, when !ok
  Membership membership;
};

// Computes the membership after `cc` is applied to `current`. Pure.
ChangeResult ApplyConfChange(const Membership& current, const ConfChange& cc);

// True when `cc` would be applied as a simple (non-joint) change.
bool IsSimpleChange(const Membership& current, const ConfChange& cc);

bool Contains(const std::vector<ReplicaId>& ids, ReplicaId id);

}  // namespace flotilla::raft
