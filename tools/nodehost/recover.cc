#include "tools/nodehost/recover.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "engine/raft/conf_change.h"
#include "logdb/logdb.h"
#include "tools/nodehost/cli.h"
#include "tools/nodehost/logdb_tool.h"

namespace flotilla::nodehost {

namespace {

using json = nlohmann::json;

struct RecoverArgs {
  std::string data_dir;
  std::string wal_dir;
  std::string config;
  uint64_t shard = 0;
  bool force = false;
};

// The membership as of the last entry held: the snapshot's, then every
// membership change after it.
Result<raft::Membership> MembershipAtEnd(logdb::LogDB* db, const logdb::ReplicaKey& k,
                                         const logdb::ReplicaState& st) {
  raft::Membership m = st.snapshot.membership;
  const raft::Index from = std::max(st.first_index, st.snapshot.index + 1);
  if (from > st.last_index) return m;
  std::vector<raft::Entry> entries;
  FLOTILLA_RETURN_IF_ERROR(
      db->Entries(k.shard_id, k.replica_id, from, st.last_index + 1, UINT64_MAX, &entries));
  for (const raft::Entry& e : entries) {
    if (e.type != raft::EntryType::kConfChange) continue;
    raft::ConfChange cc;
    if (!raft::DecodeConfChange(e.cmd.view(), &cc)) {
      return Status::Corruption("entry " + std::to_string(e.index) +
                                ": a membership change that does not decode");
    }
    // A change the rules refuse was a no-op on every replica.
    raft::ChangeResult r = raft::ApplyConfChange(m, cc);
    if (r.ok) m = std::move(r.membership);
  }
  return m;
}

// The simple changes that leave `self` the only member of `m`: out of a
// joint configuration first, then one removal per other member (one voter
// at a time, so that no change needs a joint quorum).
Result<std::vector<raft::ConfChange>> ChangesToSoleVoter(raft::Membership m, raft::ReplicaId self) {
  std::vector<raft::ConfChange> out;
  const auto apply = [&](raft::ConfChange cc) -> Status {
    raft::ChangeResult r = raft::ApplyConfChange(m, cc);
    if (!r.ok) return Status::Rejected("cannot " + r.error);
    m = std::move(r.membership);
    out.push_back(std::move(cc));
    return Status::Ok();
  };
  if (!m.voters_outgoing.empty()) FLOTILLA_RETURN_IF_ERROR(apply(raft::ConfChange{}));
  if (!raft::Contains(m.voters, self)) {
    return Status::Rejected("replica " + std::to_string(self) +
                            " is not a voter of the shard: recover from a voter");
  }
  std::vector<raft::ReplicaId> others;
  for (const auto* set : {&m.voters, &m.non_voting, &m.witnesses}) {
    for (raft::ReplicaId id : *set) {
      if (id != self) others.push_back(id);
    }
  }
  for (raft::ReplicaId id : others) {
    raft::ConfChange cc;
    cc.items.push_back({raft::ConfChangeType::kRemove, id, ""});
    FLOTILLA_RETURN_IF_ERROR(apply(std::move(cc)));
  }
  return out;
}

int CmdRecover(RecoverArgs* a, bool json_out) {
  if (!a->force) {
    std::cerr << "nodehost recover: this rewrites the shard's membership so that this replica is "
                 "its only member, and commits every entry it holds, including entries the lost "
                 "majority may never have committed. Writes acknowledged by the lost replicas "
                 "alone are gone. Pass --force-new-membership to do it (docs/operations.md)\n";
    return kExitUsage;
  }
  int rc = kExitOk;
  std::unique_ptr<logdb::LogDB> db =
      OpenStoppedLogdbForWriting(a->data_dir, a->wal_dir, a->config, &rc);
  if (db == nullptr) return rc;
  Result<std::vector<logdb::ReplicaKey>> keys = db->ListReplicas();
  if (!keys.ok()) {
    std::cerr << "nodehost recover: " << keys.status().ToString() << "\n";
    return kExitError;
  }
  std::vector<logdb::ReplicaKey> mine;
  for (const logdb::ReplicaKey& k : *keys) {
    if (k.shard_id == a->shard) mine.push_back(k);
  }
  if (mine.size() != 1) {
    std::cerr << "nodehost recover: this data directory holds " << mine.size()
              << " replicas of shard " << a->shard << "; recover needs exactly one\n";
    return kExitRejected;
  }
  const logdb::ReplicaKey k = mine[0];
  Result<logdb::ReplicaState> st = db->ReadState(k.shard_id, k.replica_id);
  Result<raft::Membership> m =
      st.ok() ? MembershipAtEnd(db.get(), k, *st) : Result<raft::Membership>(st.status());
  Result<std::vector<raft::ConfChange>> changes =
      m.ok() ? ChangesToSoleVoter(*m, k.replica_id)
             : Result<std::vector<raft::ConfChange>>(m.status());
  if (!changes.ok()) {
    std::cerr << "nodehost recover: shard " << k.shard_id << " replica " << k.replica_id << ": "
              << changes.status().ToString() << "\n";
    return changes.status().code() == StatusCode::kCorruption ? kExitDamaged : kExitRejected;
  }
  // The changes follow the last entry, in the current term (never below any
  // entry's), and the commit index covers them and everything before.
  // The hard state's term is never below the last entry's in a sound log;
  // the larger of the two keeps the terms ascending either way.
  raft::Term term = st->hard_state.term;
  if (st->last_index > 0) {
    Result<raft::Term> last = db->Term(k.shard_id, k.replica_id, st->last_index);
    if (last.ok()) term = std::max(term, *last);
  }
  std::vector<raft::Entry> entries;
  raft::Index index = st->last_index;
  for (const raft::ConfChange& cc : *changes) {
    raft::Entry e;
    e.term = term;
    e.index = ++index;
    e.type = raft::EntryType::kConfChange;
    e.cmd = raft::EncodeConfChange(cc);
    entries.push_back(std::move(e));
  }
  raft::HardState hs = st->hard_state;
  const raft::Index old_commit = hs.commit;
  hs.commit = index;
  logdb::ReplicaUpdate u;
  u.shard_id = k.shard_id;
  u.replica_id = k.replica_id;
  u.entries = entries;
  u.hard_state = hs;
  Status s = db->Save({u});
  if (!s.ok()) {
    std::cerr << "nodehost recover: saving: " << s.ToString() << "\n";
    return kExitError;
  }
  if (json_out) {
    std::cout << json({{"ok", true},
                       {"shard", k.shard_id},
                       {"replica", k.replica_id},
                       {"removed_members", entries.size()},
                       {"commit_before", old_commit},
                       {"commit", hs.commit}})
                     .dump(2)
              << "\n";
  } else {
    std::cout << "recovered shard " << k.shard_id << ": replica " << k.replica_id
              << " is its only member (" << entries.size()
              << " membership changes appended, commit " << old_commit << " -> " << hs.commit
              << "). Start the daemon, then add replicas back with add-replica --via-learner\n";
  }
  return kExitOk;
}

}  // namespace

void AddRecoverCommand(CLI::App* app, const std::string* output, int* rc) {
  auto a = std::make_shared<RecoverArgs>();
  auto* cmd = app->add_subcommand(
      "recover", "offline: rebuild a shard that lost its quorum from this daemon's replica");
  cmd->add_option("--data-dir", a->data_dir, "the stopped daemon's data_dir");
  cmd->add_option("--wal-dir", a->wal_dir, "its wal_dir, when it has one");
  cmd->add_option("--config", a->config, "take data_dir and wal_dir from this daemon config");
  cmd->add_option("--shard", a->shard, "the shard to recover")->required();
  cmd->add_flag("--force-new-membership", a->force,
                "make this replica the shard's only member (see docs/operations.md)");
  cmd->callback([=] { *rc = CmdRecover(a.get(), *output == "json"); });
}

}  // namespace flotilla::nodehost
