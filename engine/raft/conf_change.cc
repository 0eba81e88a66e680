#include "engine/raft/conf_change.h"

#include <algorithm>
#include <set>

namespace flotilla::raft {
namespace {

constexpr uint8_t kConfChangeFormat = 1;

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

bool GetVarint(std::string_view* in, uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift <= 63 && !in->empty(); shift += 7) {
    const auto byte = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return false;
}

void Erase(std::vector<ReplicaId>* ids, ReplicaId id) {
  ids->erase(std::remove(ids->begin(), ids->end(), id), ids->end());
}

void Insert(std::vector<ReplicaId>* ids, ReplicaId id) {
  if (!Contains(*ids, id)) {
    ids->insert(std::upper_bound(ids->begin(), ids->end(), id), id);
  }
}

// Applies one item to the incoming side of `m`.
bool ApplyItem(Membership* m, const ConfChangeItem& item, std::string* error) {
  const ReplicaId id = item.replica;
  if (id == kNoReplica) {
    *error = "replica id 0 is reserved";
    return false;
  }
  const bool was_witness = Contains(m->witnesses, id);
  if (item.type != ConfChangeType::kRemove && Contains(m->removed, id)) {
    *error = "replica " + std::to_string(id) + " was removed and cannot be added again";
    return false;
  }
  switch (item.type) {
    case ConfChangeType::kAddVoter:
      if (was_witness) {
        *error = "replica " + std::to_string(id) + " is a witness and cannot become a full voter";
        return false;
      }
      Erase(&m->non_voting, id);
      Erase(&m->non_voting_next, id);
      Insert(&m->voters, id);
      return true;
    case ConfChangeType::kAddWitness:
      if (Contains(m->voters, id) && !was_witness) {
        *error = "replica " + std::to_string(id) + " is a voter and cannot become a witness";
        return false;
      }
      if (Contains(m->non_voting, id) || Contains(m->voters_outgoing, id)) {
        *error = "replica " + std::to_string(id) + " exists and cannot become a witness";
        return false;
      }
      Insert(&m->voters, id);
      Insert(&m->witnesses, id);
      return true;
    case ConfChangeType::kAddNonVoting:
      if (was_witness) {
        *error = "witness " + std::to_string(id) + " cannot become non-voting";
        return false;
      }
      Erase(&m->voters, id);
      if (Contains(m->voters_outgoing, id)) {
        Insert(&m->non_voting_next, id);  // still votes until the joint config is left
      } else {
        Insert(&m->non_voting, id);
      }
      return true;
    case ConfChangeType::kRemove:
      if (Contains(m->voters, id) || Contains(m->voters_outgoing, id) ||
          Contains(m->non_voting, id) || Contains(m->non_voting_next, id)) {
        Insert(&m->removed, id);
      }
      Erase(&m->voters, id);
      Erase(&m->non_voting, id);
      Erase(&m->non_voting_next, id);
      if (!Contains(m->voters_outgoing, id)) Erase(&m->witnesses, id);
      return true;
  }
  *error = "unknown change type";
  return false;
}

bool Validate(const Membership& m, std::string* error) {
  if (m.voters.empty()) {
    *error = "the change would leave no voters";
    return false;
  }
  for (ReplicaId id : m.non_voting) {
    if (Contains(m.voters, id) || Contains(m.voters_outgoing, id)) {
      *error = "replica " + std::to_string(id) + " is both voter and non-voting";
      return false;
    }
  }
  for (ReplicaId id : m.non_voting_next) {
    if (!Contains(m.voters_outgoing, id)) {
      *error = "replica " + std::to_string(id) + " pending demotion is not an outgoing voter";
      return false;
    }
  }
  return true;
}

size_t VoterDifference(const std::vector<ReplicaId>& a, const std::vector<ReplicaId>& b) {
  size_t diff = 0;
  for (ReplicaId id : a) diff += Contains(b, id) ? 0 : 1;
  for (ReplicaId id : b) diff += Contains(a, id) ? 0 : 1;
  return diff;
}

ChangeResult LeaveJoint(const Membership& current) {
  ChangeResult r;
  if (!current.IsJoint()) {
    r.error = "not in a joint configuration";
    return r;
  }
  Membership m = current;
  for (ReplicaId id : m.non_voting_next) Insert(&m.non_voting, id);
  m.non_voting_next.clear();
  m.voters_outgoing.clear();
  m.auto_leave = false;
  std::vector<ReplicaId> witnesses;
  for (ReplicaId id : m.witnesses) {
    if (Contains(m.voters, id)) witnesses.push_back(id);
  }
  m.witnesses = std::move(witnesses);
  r.ok = true;
  r.membership = std::move(m);
  return r;
}

}  // namespace

bool Contains(const std::vector<ReplicaId>& ids, ReplicaId id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

std::string EncodeConfChange(const ConfChange& cc) {
  std::string out;
  out.push_back(static_cast<char>(kConfChangeFormat));
  out.push_back(static_cast<char>(cc.transition));
  PutVarint(&out, cc.items.size());
  for (const ConfChangeItem& item : cc.items) {
    out.push_back(static_cast<char>(item.type));
    PutVarint(&out, item.replica);
    PutVarint(&out, item.context.size());
    out.append(item.context);
  }
  return out;
}

bool DecodeConfChange(std::string_view data, ConfChange* cc) {
  if (data.size() < 3 || static_cast<uint8_t>(data[0]) != kConfChangeFormat) return false;
  const auto transition = static_cast<uint8_t>(data[1]);
  if (transition > static_cast<uint8_t>(ConfTransition::kJointExplicit)) return false;
  cc->transition = static_cast<ConfTransition>(transition);
  data.remove_prefix(2);
  uint64_t count = 0;
  if (!GetVarint(&data, &count) || count > data.size()) return false;
  cc->items.clear();
  for (uint64_t i = 0; i < count; ++i) {
    if (data.empty()) return false;
    const auto type = static_cast<uint8_t>(data.front());
    data.remove_prefix(1);
    if (type > static_cast<uint8_t>(ConfChangeType::kRemove)) return false;
    ConfChangeItem item;
    item.type = static_cast<ConfChangeType>(type);
    uint64_t len = 0;
    if (!GetVarint(&data, &item.replica) || !GetVarint(&data, &len) || len > data.size()) {
      return false;
    }
    item.context.assign(data.substr(0, len));
    data.remove_prefix(len);
    cc->items.push_back(std::move(item));
  }
  return data.empty();
}

bool IsSimpleChange(const Membership& current, const ConfChange& cc) {
  if (cc.IsLeaveJoint() || current.IsJoint() || cc.transition != ConfTransition::kAuto) {
    return false;
  }
  Membership m = current;
  std::string error;
  for (const ConfChangeItem& item : cc.items) {
    if (!ApplyItem(&m, item, &error)) return true;  // refused either way; report as simple
  }
  return VoterDifference(current.voters, m.voters) <= 1;
}

ChangeResult ApplyConfChange(const Membership& current, const ConfChange& cc) {
  if (cc.IsLeaveJoint()) return LeaveJoint(current);
  ChangeResult r;
  if (current.IsJoint()) {
    r.error = "already in a joint configuration";
    return r;
  }
  Membership m = current;
  const bool simple = IsSimpleChange(current, cc);
  if (!simple) {
    m.voters_outgoing = current.voters;
    m.auto_leave = cc.transition != ConfTransition::kJointExplicit;
  }
  for (const ConfChangeItem& item : cc.items) {
    if (!ApplyItem(&m, item, &r.error)) return r;
    if (item.type == ConfChangeType::kRemove) {
      m.contexts.erase(item.replica);
    } else if (!item.context.empty()) {
      m.contexts[item.replica] = item.context;
    }
  }
  if (!simple && m.voters == m.voters_outgoing) {
    // No voter changed: a joint configuration would be pointless.
    m.voters_outgoing.clear();
    m.auto_leave = false;
    m.non_voting_next.clear();
  }
  if (!Validate(m, &r.error)) return r;
  r.ok = true;
  r.membership = std::move(m);
  return r;
}

}  // namespace flotilla::raft
