#include "logdb/kv_logdb.h"

#include <algorithm>
#include <string>

#include "logdb/format.h"

namespace flotilla::logdb {

using format::RecordType;

// Buffers reused across Saves so that encoding allocates nothing once warm.
struct KvLogDB::Scratch {
  std::unique_ptr<KvStore::Batch> batch;
  std::string key;
  std::string end_key;
  std::string value;
  std::vector<raft::Index> lasts;    // per update: last stored entry before / after the Save
  std::vector<ReplicaKey> replicas;  // the replicas of one Save, sorted to find repeats
};

namespace {

std::string Describe(ReplicaKey r) {
  return "shard " + std::to_string(r.shard_id) + " replica " + std::to_string(r.replica_id);
}

Status ValidateUpdate(const ReplicaUpdate& u) {
  const ReplicaKey r{u.shard_id, u.replica_id};
  raft::Index want = u.snapshot ? u.snapshot->index + 1 : 0;
  if (u.snapshot && u.snapshot->index == 0) {
    return Status::InvalidArgument(Describe(r) + ": snapshot at index 0");
  }
  for (const raft::Entry& e : u.entries) {
    if (e.index == 0 || e.index > format::kMaxIndex) {
      return Status::InvalidArgument(Describe(r) + ": entry index " + std::to_string(e.index) +
                                     " out of range");
    }
    if (want != 0 && e.index != want) {
      return Status::InvalidArgument(Describe(r) + ": entry index " + std::to_string(e.index) +
                                     " where " + std::to_string(want) + " was expected");
    }
    want = e.index + 1;
  }
  return Status::Ok();
}

}  // namespace

KvLogDB::KvLogDB(std::unique_ptr<KvStore> store, bool sync, const char* name)
    : store_(std::move(store)), sync_(sync), name_(name) {}

KvLogDB::~KvLogDB() = default;

void KvLogDB::ForgetVolatileState() {
  std::lock_guard<std::mutex> lock(mu_);
  poisoned_ = Status::Ok();
  last_entry_.clear();
}

Status KvLogDB::Resume() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (poisoned_.ok()) return Status::Ok();
    if (poisoned_.code() != StatusCode::kNoSpace) return poisoned_;
  }
  FLOTILLA_RETURN_IF_ERROR(store_->Resume());
  // The failed write changed nothing in the store, and the cached last
  // indexes are only ever set by writes that succeeded: they still hold.
  std::lock_guard<std::mutex> lock(mu_);
  poisoned_ = Status::Ok();
  return Status::Ok();
}

// Every stored record of `r` read through the store, which verifies its own
// checksums: false when one of them cannot be read.
bool KvLogDB::ReadsCleanly(ReplicaKey r) {
  std::string lower;
  std::string upper;
  format::EntryKey(r.shard_id, r.replica_id, 0, &lower);
  format::EntryKey(r.shard_id, r.replica_id, format::kMaxIndex + 1, &upper);
  auto it = store_->NewIterator(lower, upper);
  for (it->Seek(lower); it->Valid(); it->Next()) {
  }
  if (!it->status().ok()) return false;
  std::string key;
  std::string value;
  for (RecordType type : {RecordType::kHardState, RecordType::kSnapshot, RecordType::kBootstrap,
                          RecordType::kCompaction}) {
    format::RecordKey(type, r.shard_id, r.replica_id, &key);
    const Status s = store_->Get(key, &value);
    if (!s.ok() && s.code() != StatusCode::kNotFound) return false;
  }
  return true;
}

LogDB::StoreDamage KvLogDB::DamageOf(const Status& corruption) {
  StoreDamage d;
  if (corruption.code() != StatusCode::kCorruption) return d;
  d.file = store_->DamagedFileIn(corruption.message());
  if (d.file.empty()) return d;
  // The replicas with a record in the file (a damaged key that no longer
  // parses names nobody), then those of them that cannot be read whole.
  std::vector<ReplicaKey> in_file;
  const Status listed = store_->KeysOfFile(d.file, [&](std::string_view key) {
    format::ParsedKey k;
    if (format::ParseKey(key, &k) && (in_file.empty() || in_file.back() != k.replica)) {
      in_file.push_back(k.replica);
    }
  });
  std::sort(in_file.begin(), in_file.end());
  in_file.erase(std::unique(in_file.begin(), in_file.end()), in_file.end());
  (void)listed;  // the keys read before a failure still name their replicas
  for (const ReplicaKey& r : in_file) {
    if (!ReadsCleanly(r)) d.replicas.push_back(r);
  }
  return d;
}

std::unique_ptr<KvLogDB::Scratch> KvLogDB::AcquireScratch(Status* poisoned) {
  std::unique_ptr<Scratch> s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    *poisoned = poisoned_;
    if (!free_scratch_.empty()) {
      s = std::move(free_scratch_.back());
      free_scratch_.pop_back();
    }
  }
  if (!s) {
    s = std::make_unique<Scratch>();
    s->batch = store_->NewBatch();
  }
  s->batch->Clear();
  return s;
}

void KvLogDB::ReleaseScratch(std::unique_ptr<Scratch> s) {
  // Bound the pool: one buffer set per concurrent writer is all that is reused.
  constexpr size_t kMaxPooledScratch = 64;
  std::lock_guard<std::mutex> lock(mu_);
  if (free_scratch_.size() < kMaxPooledScratch) free_scratch_.push_back(std::move(s));
}

Status KvLogDB::Commit(KvStore::Batch* batch, bool durable) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!poisoned_.ok()) return poisoned_;
  }
  Status s = store_->Write(batch, durable && sync_);
  if (s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  if (poisoned_.ok()) {
    poisoned_ = Status(s.code(), "logdb refuses writes after a failed write: " + s.message());
  }
  return s;
}

Status KvLogDB::WriteWith(bool durable, const std::function<void(Scratch*)>& fill) {
  Status poisoned;
  std::unique_ptr<Scratch> s = AcquireScratch(&poisoned);
  Status st = poisoned;
  if (st.ok()) {
    fill(s.get());
    st = Commit(s->batch.get(), durable);
  }
  ReleaseScratch(std::move(s));
  return st;
}

Status KvLogDB::EntryBounds(ReplicaKey r, raft::Index* first, raft::Index* last) {
  std::string lower;
  std::string upper;
  format::EntryKey(r.shard_id, r.replica_id, 0, &lower);
  format::EntryKey(r.shard_id, r.replica_id, format::kMaxIndex + 1, &upper);
  auto it = store_->NewIterator(lower, upper);
  *first = 0;
  *last = 0;
  it->Seek(lower);
  if (!it->Valid()) return it->status();
  format::EntryBatchReader reader;
  FLOTILLA_RETURN_IF_ERROR(reader.Open(it->key(), it->value()));
  *first = reader.first();
  it->SeekForPrev(upper);
  if (!it->Valid()) {
    FLOTILLA_RETURN_IF_ERROR(it->status());
    return Status::Corruption(Describe(r) + ": entry batches vanished while reading");
  }
  FLOTILLA_RETURN_IF_ERROR(reader.Open(it->key(), it->value()));
  *last = reader.last();
  return Status::Ok();
}

Status KvLogDB::LocateEntryForTesting(raft::ShardId shard, raft::ReplicaId replica,
                                      raft::Index index, std::string* key, size_t* offset,
                                      size_t* size) {
  std::string lower;
  std::string upper;
  format::EntryKey(shard, replica, 0, &lower);
  format::EntryKey(shard, replica, index + 1, &upper);
  auto it = store_->NewIterator(lower, upper);
  it->SeekForPrev(upper);
  if (!it->Valid()) return Status::NotFound("no batch holds the entry");
  format::EntryBatchReader reader;
  FLOTILLA_RETURN_IF_ERROR(reader.Open(it->key(), it->value()));
  if (reader.last() < index) return Status::NotFound("no batch holds the entry");
  while (reader.next_index() < index) FLOTILLA_RETURN_IF_ERROR(reader.Skip());
  *key = std::string(it->key());
  *offset = reader.next_offset();
  return reader.NextRecordSize(size);
}

Status KvLogDB::ReadBatchRange(ReplicaKey r, raft::Index from, raft::Index to, raft::Index below,
                               std::vector<raft::Entry>* out) {
  std::string lower;
  std::string upper;
  format::EntryKey(r.shard_id, r.replica_id, 0, &lower);
  format::EntryKey(r.shard_id, r.replica_id, below, &upper);
  auto it = store_->NewIterator(lower, upper);
  it->SeekForPrev(upper);
  if (!it->Valid()) return it->status();
  format::EntryBatchReader reader;
  FLOTILLA_RETURN_IF_ERROR(reader.Open(it->key(), it->value()));
  while (!reader.done() && reader.next_index() <= to) {
    if (reader.next_index() < from) {
      FLOTILLA_RETURN_IF_ERROR(reader.Skip());
      continue;
    }
    raft::Entry e;
    FLOTILLA_RETURN_IF_ERROR(reader.Next(&e));
    out->push_back(std::move(e));
  }
  return Status::Ok();
}

Status KvLogDB::Save(const std::vector<ReplicaUpdate>& updates) {
  return SaveImpl(updates, nullptr);
}

Status KvLogDB::SaveIsolated(const std::vector<ReplicaUpdate>& updates,
                             std::vector<DamagedUpdate>* damaged) {
  damaged->clear();
  return SaveImpl(updates, damaged);
}

Status KvLogDB::SaveImpl(const std::vector<ReplicaUpdate>& updates,
                         std::vector<DamagedUpdate>* damaged) {
  for (const ReplicaUpdate& u : updates) FLOTILLA_RETURN_IF_ERROR(ValidateUpdate(u));
  Status poisoned;
  std::unique_ptr<Scratch> s = AcquireScratch(&poisoned);
  if (!poisoned.ok()) {
    ReleaseScratch(std::move(s));
    return poisoned;
  }
  // Each update is encoded against the stored log as it was before the
  // Save, so one replica may appear only once per Save.
  s->replicas.clear();
  for (const ReplicaUpdate& u : updates) s->replicas.push_back({u.shard_id, u.replica_id});
  std::sort(s->replicas.begin(), s->replicas.end());
  auto repeat = std::adjacent_find(s->replicas.begin(), s->replicas.end());
  if (repeat != s->replicas.end()) {
    const ReplicaKey r = *repeat;
    ReleaseScratch(std::move(s));
    return Status::InvalidArgument(Describe(r) + ": appears twice in one Save");
  }
  s->lasts.assign(updates.size(), kUnknown);
  {
    // One lock for the whole Save, not one per replica.
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < updates.size(); ++i) {
      auto it = last_entry_.find({updates[i].shard_id, updates[i].replica_id});
      if (it != last_entry_.end()) s->lasts[i] = it->second;
    }
  }
  Status st;
  for (size_t i = 0; i < updates.size() && st.ok(); ++i) {
    st = EncodeUpdate(updates[i], &s->lasts[i], s.get());
    if (damaged != nullptr && st.code() == StatusCode::kCorruption) {
      // Nothing of this update is in the batch (EncodeUpdate reads first).
      damaged->push_back({i, st});
      st = Status::Ok();
    }
  }
  if (st.ok() && s->batch->Count() > 0) st = Commit(s->batch.get(), /*durable=*/true);
  if (st.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < updates.size(); ++i) {
      if (s->lasts[i] != kUnknown)
        last_entry_[{updates[i].shard_id, updates[i].replica_id}] = s->lasts[i];
    }
  }
  ReleaseScratch(std::move(s));
  return st;
}

// Adds one replica's records to the batch. `last` is the last stored entry
// index (kUnknown: not cached yet) and becomes the one after this update.
// Every read comes before the first record is added, so an update that
// fails on a damaged record leaves the batch as it found it.
Status KvLogDB::EncodeUpdate(const ReplicaUpdate& u, raft::Index* last, Scratch* s) {
  const ReplicaKey r{u.shard_id, u.replica_id};
  // An installed snapshot replaces the whole log: nothing stored is kept.
  raft::Index stored_last = u.snapshot ? 0 : *last;
  std::vector<raft::Entry> head;  // the kept part of a batch a new suffix cuts
  bool cut = false;
  if (!u.entries.empty()) {
    if (stored_last == kUnknown) {
      raft::Index first = 0;
      FLOTILLA_RETURN_IF_ERROR(EntryBounds(r, &first, &stored_last));
    }
    const raft::Index lo = u.entries.front().index;
    if (stored_last != 0 && lo > stored_last + 1) {
      return Status::InvalidArgument(Describe(r) + ": entries start at " + std::to_string(lo) +
                                     " after a gap; last stored is " + std::to_string(stored_last));
    }
    if (stored_last != 0 && lo <= stored_last) {
      // A new leader overwrote our suffix: keep the head of the batch that
      // holds lo, drop every batch from lo on.
      cut = true;
      FLOTILLA_RETURN_IF_ERROR(ReadBatchRange(r, 0, lo - 1, lo, &head));
    }
  }
  KvStore::Batch* b = s->batch.get();
  if (u.snapshot) {
    format::EntryRangeStart(r.shard_id, r.replica_id, 0, &s->key);
    format::EntryKey(r.shard_id, r.replica_id, format::kMaxIndex + 1, &s->end_key);
    b->DeleteRange(s->key, s->end_key);
    format::RecordKey(RecordType::kCompaction, r.shard_id, r.replica_id, &s->key);
    b->Delete(s->key);
    format::RecordKey(RecordType::kSnapshot, r.shard_id, r.replica_id, &s->key);
    format::EncodeSnapshot(s->key, *u.snapshot, &s->value);
    b->Put(s->key, s->value);
    *last = 0;
  }
  if (!u.entries.empty()) {
    const raft::Index lo = u.entries.front().index;
    if (cut) {
      if (!head.empty() && head.back().index == lo - 1) {
        format::EntryKey(r.shard_id, r.replica_id, head.front().index, &s->key);
        format::EncodeEntryBatch(s->key, head, &s->value);
        b->Put(s->key, s->value);
      }
      format::EntryRangeStart(r.shard_id, r.replica_id, lo, &s->key);
      format::EntryKey(r.shard_id, r.replica_id, format::kMaxIndex + 1, &s->end_key);
      b->DeleteRange(s->key, s->end_key);
    }
    // One record for all the entries of the update: one memtable insert
    // instead of one per entry (docs/logdb.md has the measurement).
    format::EntryKey(r.shard_id, r.replica_id, lo, &s->key);
    format::EncodeEntryBatch(s->key, u.entries, &s->value);
    b->Put(s->key, s->value);
    *last = u.entries.back().index;
  }
  if (u.hard_state) {
    format::RecordKey(RecordType::kHardState, r.shard_id, r.replica_id, &s->key);
    format::EncodeHardState(s->key, *u.hard_state, &s->value);
    b->Put(s->key, s->value);
  }
  return Status::Ok();
}

Status KvLogDB::ReadSnapshot(ReplicaKey r, raft::SnapshotMeta* meta) {
  std::string key;
  std::string value;
  format::RecordKey(RecordType::kSnapshot, r.shard_id, r.replica_id, &key);
  Status s = store_->Get(key, &value);
  if (s.code() == StatusCode::kNotFound) {
    *meta = raft::SnapshotMeta();
    return Status::Ok();
  }
  FLOTILLA_RETURN_IF_ERROR(s);
  return format::DecodeSnapshot(key, value, meta);
}

Status KvLogDB::ReadCompaction(ReplicaKey r, raft::Index* index, raft::Term* term) {
  std::string key;
  std::string value;
  format::RecordKey(RecordType::kCompaction, r.shard_id, r.replica_id, &key);
  Status s = store_->Get(key, &value);
  *index = 0;
  *term = 0;
  if (s.code() == StatusCode::kNotFound) return Status::Ok();
  FLOTILLA_RETURN_IF_ERROR(s);
  return format::DecodeCompaction(key, value, index, term);
}

Status KvLogDB::SaveSnapshot(raft::ShardId shard, raft::ReplicaId replica,
                             const raft::SnapshotMeta& meta) {
  raft::SnapshotMeta stored;
  FLOTILLA_RETURN_IF_ERROR(ReadSnapshot({shard, replica}, &stored));
  if (meta.index < stored.index) return Status::Ok();
  return WriteWith(/*durable=*/true, [&](Scratch* s) {
    format::RecordKey(RecordType::kSnapshot, shard, replica, &s->key);
    format::EncodeSnapshot(s->key, meta, &s->value);
    s->batch->Put(s->key, s->value);
  });
}

Status KvLogDB::SaveBootstrap(raft::ShardId shard, raft::ReplicaId replica,
                              const Bootstrap& bootstrap) {
  return WriteWith(/*durable=*/true, [&](Scratch* s) {
    format::RecordKey(RecordType::kBootstrap, shard, replica, &s->key);
    format::EncodeBootstrap(s->key, bootstrap, &s->value);
    s->batch->Put(s->key, s->value);
  });
}

Status KvLogDB::Entries(raft::ShardId shard, raft::ReplicaId replica, raft::Index lo,
                        raft::Index hi, uint64_t max_bytes, std::vector<raft::Entry>* out) {
  if (lo > hi) return Status::InvalidArgument("Entries: lo > hi");
  if (lo == hi) return Status::Ok();
  std::string lower;
  std::string upper;
  std::string target;
  format::EntryKey(shard, replica, 0, &lower);
  format::EntryKey(shard, replica, hi, &upper);
  format::EntryKey(shard, replica, lo, &target);
  auto it = store_->NewIterator(lower, upper);
  uint64_t bytes = 0;
  raft::Index want = lo;
  format::EntryBatchReader reader;
  // The batch holding lo starts at or before it; later batches follow on.
  for (it->SeekForPrev(target); it->Valid(); it->Next()) {
    FLOTILLA_RETURN_IF_ERROR(reader.Open(it->key(), it->value()));
    if (reader.first() > want || reader.last() < want) break;  // want is missing
    while (reader.next_index() < want) FLOTILLA_RETURN_IF_ERROR(reader.Skip());
    while (!reader.done()) {
      raft::Entry& e = out->emplace_back();
      Status s = reader.Next(&e);
      bytes += e.SizeBytes();
      if (!s.ok() || (want > lo && bytes > max_bytes)) {
        out->pop_back();
        return s;
      }
      if (++want == hi) return Status::Ok();
    }
  }
  FLOTILLA_RETURN_IF_ERROR(it->status());
  return ExplainMissing({shard, replica}, want);
}

Status KvLogDB::ExplainMissing(ReplicaKey r, raft::Index missing) {
  Result<ReplicaState> st = ReadState(r.shard_id, r.replica_id);
  FLOTILLA_RETURN_IF_ERROR(st.status());
  const std::string where = Describe(r) + " index " + std::to_string(missing);
  if (missing < st->first_index) {
    return Status::DataLoss(where + ": compacted (first index " + std::to_string(st->first_index) +
                            ")");
  }
  if (missing > st->last_index) {
    return Status::NotFound(where + ": beyond the last index " + std::to_string(st->last_index));
  }
  return Status::Corruption(where + ": entry missing inside the stored log");
}

Result<raft::Term> KvLogDB::Term(raft::ShardId shard, raft::ReplicaId replica, raft::Index index) {
  if (index == 0) return raft::Term{0};
  std::vector<raft::Entry> found;
  FLOTILLA_RETURN_IF_ERROR(ReadBatchRange({shard, replica}, index, index, index + 1, &found));
  if (!found.empty()) return found.front().term;
  Result<ReplicaState> st = ReadState(shard, replica);
  FLOTILLA_RETURN_IF_ERROR(st.status());
  if (index == st->first_index - 1) return st->prev_term;
  if (index == st->snapshot.index) return st->snapshot.term;
  return ExplainMissing({shard, replica}, index);
}

Result<ReplicaState> KvLogDB::ReadState(raft::ShardId shard, raft::ReplicaId replica) {
  return ReadStateForRepair(shard, replica, nullptr);
}

Status KvLogDB::SaveRepair(raft::ShardId shard, raft::ReplicaId replica,
                           const std::optional<RepairRecord>& repair) {
  return WriteWith(/*durable=*/true, [&](Scratch* s) {
    format::RecordKey(RecordType::kRepair, shard, replica, &s->key);
    if (!repair) {
      s->batch->Delete(s->key);
      return;
    }
    format::EncodeRepair(s->key, *repair, &s->value);
    s->batch->Put(s->key, s->value);
  });
}

// With `hard_state_damage` null (ReadState) a damaged hard state fails the read.
Result<ReplicaState> KvLogDB::ReadStateForRepair(raft::ShardId shard, raft::ReplicaId replica,
                                                 Status* hard_state_damage) {
  const ReplicaKey r{shard, replica};
  ReplicaState st;
  std::string key;
  std::string value;
  format::RecordKey(RecordType::kHardState, shard, replica, &key);
  Status s = store_->Get(key, &value);
  if (s.ok()) s = format::DecodeHardState(key, value, &st.hard_state);
  if (hard_state_damage != nullptr) {
    *hard_state_damage = s.code() == StatusCode::kCorruption ? s : Status::Ok();
    if (s.code() == StatusCode::kCorruption) {
      st.hard_state = raft::HardState();
      s = Status::Ok();
    }
  }
  if (!s.ok() && s.code() != StatusCode::kNotFound) return s;
  // The optional records: absent is fine, damaged fails the read.
  const auto read_optional = [&](RecordType type, auto* out, auto decode) {
    format::RecordKey(type, shard, replica, &key);
    Status got = store_->Get(key, &value);
    if (got.code() == StatusCode::kNotFound) return Status::Ok();
    if (got.ok()) got = decode(key, value, &out->emplace());
    return got;
  };
  FLOTILLA_RETURN_IF_ERROR(read_optional(RecordType::kRepair, &st.repair, format::DecodeRepair));
  FLOTILLA_RETURN_IF_ERROR(
      read_optional(RecordType::kBootstrap, &st.bootstrap, format::DecodeBootstrap));
  FLOTILLA_RETURN_IF_ERROR(ReadSnapshot(r, &st.snapshot));
  raft::Index compacted = 0;
  raft::Term compacted_term = 0;
  FLOTILLA_RETURN_IF_ERROR(ReadCompaction(r, &compacted, &compacted_term));
  raft::Index first = 0;
  raft::Index last = 0;
  FLOTILLA_RETURN_IF_ERROR(EntryBounds(r, &first, &last));
  if (last != 0) {
    st.first_index = first;
    st.last_index = last;
  } else {
    st.last_index = std::max(st.snapshot.index, compacted);
    st.first_index = st.last_index + 1;
  }
  const raft::Index prev = st.first_index - 1;
  if (prev != 0 && prev == st.snapshot.index) st.prev_term = st.snapshot.term;
  if (prev != 0 && prev == compacted) st.prev_term = compacted_term;
  return st;
}

Result<std::vector<ReplicaKey>> KvLogDB::ListReplicas() {
  std::vector<ReplicaKey> out;
  const std::string lower(1, static_cast<char>(RecordType::kEntry));
  const std::string upper(1, static_cast<char>(static_cast<uint8_t>(RecordType::kRepair) + 1));
  auto it = store_->NewIterator(lower, upper);
  std::string next;
  format::ParsedKey k;
  it->Seek(lower);
  while (it->Valid()) {
    if (!format::ParseKey(it->key(), &k)) return Status::Corruption("ListReplicas: malformed key");
    out.push_back(k.replica);
    if (k.type != RecordType::kEntry) {
      it->Next();
      continue;
    }
    // Skip the rest of this replica's entries with one seek.
    if (k.replica.replica_id != UINT64_MAX) {
      format::EntryKey(k.replica.shard_id, k.replica.replica_id + 1, 0, &next);
    } else if (k.replica.shard_id != UINT64_MAX) {
      format::EntryKey(k.replica.shard_id + 1, 0, 0, &next);
    } else {
      format::RecordKey(RecordType::kHardState, 0, 0, &next);
    }
    it->Seek(next);
  }
  FLOTILLA_RETURN_IF_ERROR(it->status());
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Status KvLogDB::CompactTo(raft::ShardId shard, raft::ReplicaId replica, raft::Index index) {
  const ReplicaKey r{shard, replica};
  raft::Index compacted = 0;
  raft::Term compacted_term = 0;
  FLOTILLA_RETURN_IF_ERROR(ReadCompaction(r, &compacted, &compacted_term));
  if (index <= compacted) return Status::Ok();
  Result<raft::Term> term = Term(shard, replica, index);
  if (term.status().code() == StatusCode::kNotFound ||
      term.status().code() == StatusCode::kDataLoss) {
    return Status::InvalidArgument(Describe(r) + ": cannot compact to " + std::to_string(index) +
                                   ": " + term.status().message());
  }
  FLOTILLA_RETURN_IF_ERROR(term.status());
  // The batch holding `index` may also hold later entries: they move to a
  // batch of their own, so that every stored entry is a readable one.
  std::vector<raft::Entry> tail;
  FLOTILLA_RETURN_IF_ERROR(ReadBatchRange(r, index + 1, format::kMaxIndex, index + 1, &tail));
  FLOTILLA_RETURN_IF_ERROR(WriteWith(/*durable=*/false, [&](Scratch* s) {
    format::EntryRangeStart(shard, replica, 0, &s->key);
    format::EntryKey(shard, replica, index + 1, &s->end_key);
    s->batch->DeleteRange(s->key, s->end_key);
    if (!tail.empty()) {
      format::EntryKey(shard, replica, index + 1, &s->key);
      format::EncodeEntryBatch(s->key, tail, &s->value);
      s->batch->Put(s->key, s->value);
    }
    format::RecordKey(RecordType::kCompaction, shard, replica, &s->key);
    format::EncodeCompaction(s->key, index, *term, &s->value);
    s->batch->Put(s->key, s->value);
  }));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = last_entry_.find(r);
  if (it != last_entry_.end() && it->second <= index) it->second = 0;
  return Status::Ok();
}

Status KvLogDB::ResetForRebuild(raft::ShardId shard, raft::ReplicaId replica,
                                const Bootstrap& bootstrap, const raft::HardState& hs,
                                const RepairRecord& repair) {
  return RemoveRecords(shard, replica, [&](Scratch* s) {
    format::RecordKey(RecordType::kBootstrap, shard, replica, &s->key);
    format::EncodeBootstrap(s->key, bootstrap, &s->value);
    s->batch->Put(s->key, s->value);
    format::RecordKey(RecordType::kHardState, shard, replica, &s->key);
    format::EncodeHardState(s->key, hs, &s->value);
    s->batch->Put(s->key, s->value);
    format::RecordKey(RecordType::kRepair, shard, replica, &s->key);
    format::EncodeRepair(s->key, repair, &s->value);
    s->batch->Put(s->key, s->value);
  });
}

Status KvLogDB::RemoveReplica(raft::ShardId shard, raft::ReplicaId replica) {
  return RemoveRecords(shard, replica, [](Scratch*) {});
}

Status KvLogDB::RemoveRecords(raft::ShardId shard, raft::ReplicaId replica,
                              const std::function<void(Scratch*)>& then) {
  FLOTILLA_RETURN_IF_ERROR(WriteWith(/*durable=*/true, [&](Scratch* s) {
    format::EntryRangeStart(shard, replica, 0, &s->key);
    format::EntryKey(shard, replica, format::kMaxIndex + 1, &s->end_key);
    s->batch->DeleteRange(s->key, s->end_key);
    for (RecordType t : {RecordType::kHardState, RecordType::kSnapshot, RecordType::kBootstrap,
                         RecordType::kCompaction, RecordType::kRepair}) {
      format::RecordKey(t, shard, replica, &s->key);
      s->batch->Delete(s->key);
    }
    then(s);
  }));
  std::lock_guard<std::mutex> lock(mu_);
  last_entry_.erase({shard, replica});
  return Status::Ok();
}

}  // namespace flotilla::logdb
