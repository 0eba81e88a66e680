// Damage RocksDB finds in the LogDB's own files (issue 15): a block of an SST
// file that fails its checksum. RocksDB names the file; the NodeHost names
// the replicas with records in it that can no longer be read whole, takes
// exactly those out (running ones stop, later starts are refused with the
// reason) and lets every other replica go on.

#include "engine/log/log.h"
#include "engine/node_host_impl.h"

namespace flotilla::engine {
namespace {

std::string Describe(uint64_t shard, uint64_t replica) {
  return "shard " + std::to_string(shard) + " replica " + std::to_string(replica);
}

}  // namespace

Status NodeHostImpl::NamedCorruption(uint64_t shard, uint64_t replica, const Status& s) {
  const std::string name = Describe(shard, replica);
  if (s.code() != StatusCode::kCorruption || s.message().rfind(name, 0) == 0) return s;
  return Status::Corruption(name + ": " + s.message());
}

Status NodeHostImpl::KnownStoreDamage(uint64_t shard, uint64_t replica) {
  std::lock_guard<std::mutex> l(store_damage_mu_);
  auto it = damaged_replicas_.find({shard, replica});
  return it == damaged_replicas_.end() ? Status::Ok() : it->second;
}

void NodeHostImpl::NoteStoreDamage(const Status& s, logdb::ReplicaKey reporter) {
  if (s.code() != StatusCode::kCorruption || !logdb_) return;
  logdb::LogDB::StoreDamage d = logdb_->DamageOf(s);
  if (d.file.empty()) return;
  std::string names;
  {
    std::lock_guard<std::mutex> l(store_damage_mu_);
    if (!damaged_files_.insert(d.file).second) return;  // reported once per file
    for (const logdb::ReplicaKey& r : d.replicas) {
      names += (names.empty() ? "" : ", ") + Describe(r.shard_id, r.replica_id);
      damaged_replicas_.emplace(
          r, Status::Corruption(Describe(r.shard_id, r.replica_id) +
                                ": its records in LogDB file " + d.file + " are damaged (" +
                                s.message() + "); the replica stays out until it is rebuilt"));
    }
  }
  Log().error(
      "LogDB file {} is damaged ({}); it holds records of {} that can no longer be read: those "
      "replicas are taken out, the others go on",
      d.file, s.message(), names.empty() ? std::string("no replica") : names);
  for (const logdb::ReplicaKey& k : d.replicas) {
    std::shared_ptr<Replica> r = Find(k.shard_id);
    if (k == reporter || !r || r->replica_id != k.replica_id || r->stopped.load()) continue;
    Counters::Add(counters_.corruptions, 1);
    FailReplica(r.get());
  }
}

}  // namespace flotilla::engine
