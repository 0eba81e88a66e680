// KvLogDB::VerifyAll: every record of the store read and verified, for the
// offline inspector (`nodehost logdb verify`, tools/nodehost/logdb_tool.cc).
#include <string>

#include "logdb/format.h"
#include "logdb/kv_logdb.h"

namespace flotilla::logdb {
namespace {

using format::RecordType;

std::string Describe(const ReplicaKey& r) {
  return "shard " + std::to_string(r.shard_id) + " replica " + std::to_string(r.replica_id);
}

// Verifies one non-entry record by decoding it.
Status VerifyRecord(const format::ParsedKey& k, std::string_view key, std::string_view value) {
  switch (k.type) {
    case RecordType::kHardState: {
      raft::HardState hs;
      return format::DecodeHardState(key, value, &hs);
    }
    case RecordType::kSnapshot: {
      raft::SnapshotMeta meta;
      return format::DecodeSnapshot(key, value, &meta);
    }
    case RecordType::kBootstrap: {
      Bootstrap b;
      return format::DecodeBootstrap(key, value, &b);
    }
    case RecordType::kCompaction: {
      raft::Index index = 0;
      raft::Term term = 0;
      return format::DecodeCompaction(key, value, &index, &term);
    }
    case RecordType::kRepair: {
      RepairRecord rec;
      return format::DecodeRepair(key, value, &rec);
    }
    case RecordType::kEntry:
      break;
  }
  return Status::Ok();
}

}  // namespace

Status KvLogDB::VerifyAll(const std::function<void(const Status&)>& problem, VerifyCounts* counts) {
  *counts = VerifyCounts();
  const auto report = [&](const Status& s) {
    ++counts->problems;
    problem(s);
  };
  // Every key of ours starts with a record type byte in [kEntry, kRepair];
  // anything else in the store is reported too.
  auto it = store_->NewIterator(std::string(), std::string(1, '\xff'));
  ReplicaKey batches_of;  // the replica whose entry batches are being read
  raft::Index next = 0;   // the index its next batch must start at (0: none read)
  raft::Entry e;
  for (it->Seek(std::string()); it->Valid(); it->Next()) {
    ++counts->records;
    format::ParsedKey k;
    if (!format::ParseKey(it->key(), &k)) {
      report(Status::Corruption("a key of " + std::to_string(it->key().size()) +
                                " bytes that is no LogDB record's (type byte " +
                                std::to_string(static_cast<uint8_t>(it->key()[0])) + ")"));
      continue;
    }
    if (k.type != RecordType::kEntry) {
      Status s = VerifyRecord(k, it->key(), it->value());
      if (!s.ok()) report(s);
      continue;
    }
    if (next != 0 && k.replica == batches_of && k.index != next) {
      report(Status::Corruption(Describe(k.replica) + " index " + std::to_string(next) +
                                ": entry batches not contiguous (the next batch starts at " +
                                std::to_string(k.index) + ")"));
    }
    batches_of = k.replica;
    format::EntryBatchReader reader;
    Status s = reader.Open(it->key(), it->value());
    if (!s.ok()) {
      report(s);
      next = 0;
      continue;
    }
    next = reader.last() + 1;
    while (!reader.done()) {
      s = reader.Next(&e);
      if (s.ok()) {
        ++counts->entries;
        continue;
      }
      report(s);
      // A damaged entry is skipped by its length when that is readable.
      if (!reader.Skip().ok()) break;
    }
  }
  return it->status();
}

}  // namespace flotilla::logdb
