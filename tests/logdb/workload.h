// A checkable stream of Saves for crash and fault tests.
//
// Save number k (k = 1, 2, ...) writes, for each of kShards shards (replica 1),
// the entries [Start(k), k * kEntriesPerSave] with term k, and the hard state
// {term k, vote shard, commit k * kEntriesPerSave}. Every fifth save starts
// half a save early, overwriting entries of save k - 1 in place. So after any
// number of complete saves the whole store is a function of k alone, and
// Verify can tell "saves 1..k fully present" from anything else: a torn save
// shows up as shards disagreeing, or as entries of the wrong term or payload.
//
// Not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "logdb/logdb.h"

namespace flotilla::logdb::testing {

class Workload {
 public:
  static constexpr uint64_t kShards = 8;
  static constexpr uint64_t kEntriesPerSave = 4;
  static constexpr size_t kPayloadBytes = 24;

  static raft::Index Start(uint64_t k) {
    const raft::Index start = (k - 1) * kEntriesPerSave + 1;
    return (k % 5 == 0 && k > 1) ? start - kEntriesPerSave / 2 : start;
  }

  // The term of entry `index` once saves 1..k are complete: the last save
  // that wrote it.
  static raft::Term TermOf(raft::Index index, uint64_t k) {
    const uint64_t writer = (index + kEntriesPerSave - 1) / kEntriesPerSave;
    if (writer + 1 <= k && Start(writer + 1) <= index) return writer + 1;
    return writer;
  }

  static raft::Entry MakeEntry(raft::ShardId shard, raft::Index index, raft::Term term) {
    raft::Entry e;
    e.index = index;
    e.term = term;
    e.key = shard;
    std::string cmd(kPayloadBytes, '\0');
    for (size_t b = 0; b < kPayloadBytes; ++b) {
      cmd[b] = static_cast<char>((shard * 131 + index * 31 + term * 7 + b) & 0xff);
    }
    e.cmd = std::move(cmd);
    return e;
  }

  // Performs save number k.
  Status Save(LogDB* db, uint64_t k) {
    logs_.assign(kShards, {});
    std::vector<ReplicaUpdate> updates;
    for (raft::ShardId s = 1; s <= kShards; ++s) {
      for (raft::Index i = Start(k); i <= k * kEntriesPerSave; ++i)
        logs_[s - 1].push_back(MakeEntry(s, i, k));
      updates.push_back({s, 1, logs_[s - 1], raft::HardState{k, s, k * kEntriesPerSave}, {}});
    }
    return db->Save(updates);
  }

  // Returns the k for which the store holds exactly saves 1..k, or an error
  // describing what is wrong.
  static Result<uint64_t> Verify(LogDB* db) {
    auto st1 = db->ReadState(1, 1);
    if (!st1.ok()) return st1.status();
    const uint64_t k = st1->hard_state.term;
    for (raft::ShardId s = 1; s <= kShards; ++s) {
      Status v = VerifyShard(db, s, k);
      if (!v.ok()) return v;
    }
    return k;
  }

 private:
  static Status VerifyShard(LogDB* db, raft::ShardId s, uint64_t k) {
    const std::string who = "shard " + std::to_string(s) + " at save " + std::to_string(k) + ": ";
    auto st = db->ReadState(s, 1);
    if (!st.ok()) return st.status();
    if (st->hard_state != raft::HardState{k, k == 0 ? 0 : s, k * kEntriesPerSave}) {
      return Status::Internal(who + "hard state term " + std::to_string(st->hard_state.term));
    }
    if (st->last_index != k * kEntriesPerSave) {
      return Status::Internal(who + "last index " + std::to_string(st->last_index));
    }
    if (st->first_index > 1 && st->prev_term != TermOf(st->first_index - 1, k)) {
      return Status::Internal(who + "wrong compaction term");
    }
    std::vector<raft::Entry> out;
    FLOTILLA_RETURN_IF_ERROR(
        db->Entries(s, 1, st->first_index, st->last_index + 1, UINT64_MAX, &out));
    for (const raft::Entry& e : out) {
      if (e != MakeEntry(s, e.index, TermOf(e.index, k))) {
        return Status::Internal(who + "entry " + std::to_string(e.index) + " has term " +
                                std::to_string(e.term) + " or a wrong payload");
      }
    }
    return Status::Ok();
  }

  std::vector<std::vector<raft::Entry>> logs_;
};

}  // namespace flotilla::logdb::testing
