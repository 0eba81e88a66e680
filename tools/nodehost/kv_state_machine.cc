#include "tools/nodehost/kv_state_machine.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/write_batch_with_index.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>

#include "logdb/rocks_logdb.h"
#include "proto/kv.pb.h"

namespace flotilla::nodehost {
namespace {

constexpr char kDataPrefix = 'd';
constexpr std::string_view kAppliedKey = "m/applied";
// The last HashOp's index and the state's hash there (u64 each), written in
// the batch of that entry.
constexpr std::string_view kHashKey = "m/hash";
// One past every data key: the end of the range a recovery deletes.
constexpr std::string_view kDataEnd = "e";

// Snapshot stream: magic, applied index, records (u32 key size, u32 value
// size, key, value), then kEndMarker and the record count.
constexpr std::string_view kSnapshotMagic = "FKVSNAP1";
constexpr uint32_t kEndMarker = 0xFFFFFFFFu;
constexpr size_t kSnapshotChunkBytes = 1 << 20;
constexpr size_t kRecoverBatchBytes = 4 << 20;
constexpr uint32_t kMaxKeyOrValueBytes = 64 << 20;

std::string DataKey(std::string_view key) {
  std::string k;
  k.reserve(key.size() + 1);
  k.push_back(kDataPrefix);
  k.append(key);
  return k;
}

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetFixed(std::string_view in, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i)
    v |= uint64_t{static_cast<unsigned char>(in[static_cast<size_t>(i)])} << (8 * i);
  return v;
}

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::Ok();
  std::string m = std::string(what) + ": " + s.ToString();
  if (s.IsCorruption()) return Status::Corruption(std::move(m));
  if (s.IsNoSpace()) return Status::NoSpace(std::move(m));
  return Status::IOError(std::move(m));
}

// Reads exact byte counts from a SnapshotReader, which hands out chunks.
class StreamReader {
 public:
  explicit StreamReader(SnapshotReader* r) : r_(r) {}
  // Reads `n` bytes into `out`; DataLoss when the stream ends first.
  Status ReadExact(size_t n, std::string* out) {
    out->clear();
    while (out->size() < n) {
      if (pos_ == buf_.size()) {
        FLOTILLA_RETURN_IF_ERROR(r_->Read(kSnapshotChunkBytes, &buf_));
        pos_ = 0;
        if (buf_.empty()) return Status::DataLoss("kv snapshot: stream ends early");
      }
      const size_t take = std::min(n - out->size(), buf_.size() - pos_);
      out->append(buf_, pos_, take);
      pos_ += take;
    }
    return Status::Ok();
  }

 private:
  SnapshotReader* r_;
  std::string buf_;
  size_t pos_ = 0;
};

// Answers a get against the batch of this Update over the database.
Status ReadCurrent(rocksdb::DB* db, rocksdb::WriteBatchWithIndex* batch, const std::string& key,
                   bool* found, std::string* value) {
  rocksdb::Status s = batch->GetFromBatchAndDB(db, rocksdb::ReadOptions(), key, value);
  if (s.IsNotFound()) {
    *found = false;
    value->clear();
    return Status::Ok();
  }
  *found = s.ok();
  return FromRocks(s, "kv get");
}

std::string Outcome(uint64_t index, bool found, const std::string& previous) {
  CommandResult r;
  r.set_index(index);
  r.set_found(found);
  if (found) r.set_previous(previous);
  return r.SerializeAsString();
}

// FNV-1a (64 bits) of every data record, framed by its sizes so that
// moving a byte between a key and its value changes the hash.
class StateHasher {
 public:
  void Add(std::string_view key, std::string_view value) {
    std::string sizes;
    PutU32(&sizes, static_cast<uint32_t>(key.size()));
    PutU32(&sizes, static_cast<uint32_t>(value.size()));
    Mix(sizes);
    Mix(key);
    Mix(value);
  }
  uint64_t value() const { return h_; }

 private:
  void Mix(std::string_view bytes) {
    for (const char c : bytes) {
      h_ ^= static_cast<unsigned char>(c);
      h_ *= 0x100000001b3ULL;
    }
  }
  uint64_t h_ = 0xcbf29ce484222325ULL;
};

// Writes the snapshot stream of the data `it` walks (positioned by this
// function), with `applied` (8 bytes) as its index, to `sink` in chunks.
Status WriteStateStream(rocksdb::Iterator* it, const std::string& applied,
                        const std::function<Status(std::string_view)>& sink) {
  std::string out(kSnapshotMagic);
  out.append(applied);
  uint64_t count = 0;
  for (it->Seek(std::string(1, kDataPrefix)); it->Valid() && it->key()[0] == kDataPrefix;
       it->Next()) {
    PutU32(&out, static_cast<uint32_t>(it->key().size() - 1));
    PutU32(&out, static_cast<uint32_t>(it->value().size()));
    out.append(it->key().data() + 1, it->key().size() - 1);
    out.append(it->value().data(), it->value().size());
    ++count;
    if (out.size() >= kSnapshotChunkBytes) {
      FLOTILLA_RETURN_IF_ERROR(sink(out));
      out.clear();
    }
  }
  FLOTILLA_RETURN_IF_ERROR(FromRocks(it->status(), "kv snapshot: iterate"));
  PutU32(&out, kEndMarker);
  PutU64(&out, count);
  return sink(out);
}

// The applied index record as of `ro` (8 zero bytes when there is none).
Status ReadAppliedRecord(rocksdb::DB* db, const rocksdb::ReadOptions& ro, std::string* applied) {
  rocksdb::Status s = db->Get(ro, std::string(kAppliedKey), applied);
  if (s.IsNotFound()) {
    applied->assign(8, '\0');
    return Status::Ok();
  }
  FLOTILLA_RETURN_IF_ERROR(FromRocks(s, "kv: applied index"));
  if (applied->size() != 8) return Status::Corruption("kv: applied index record has a bad size");
  return Status::Ok();
}

}  // namespace

Status ParseKvState(std::string_view state, uint64_t* applied,
                    const std::function<Status(std::string_view, std::string_view)>& fn) {
  const auto bad = [](std::string_view why) {
    return Status::Corruption("kv state: " + std::string(why));
  };
  size_t pos = 0;
  const auto take = [&](size_t n, std::string_view* out) {
    if (state.size() - pos < n) return false;
    *out = state.substr(pos, n);
    pos += n;
    return true;
  };
  std::string_view v;
  if (!take(kSnapshotMagic.size(), &v) || v != kSnapshotMagic) return bad("bad magic");
  if (!take(8, &v)) return bad("ends in its header");
  *applied = GetFixed(v, 8);
  uint64_t count = 0;
  while (true) {
    if (!take(4, &v)) return bad("ends early");
    const uint32_t ksize = static_cast<uint32_t>(GetFixed(v, 4));
    if (ksize == kEndMarker) break;
    if (!take(4, &v)) return bad("ends early");
    const uint32_t vsize = static_cast<uint32_t>(GetFixed(v, 4));
    std::string_view key, value;
    if (!take(ksize, &key) || !take(vsize, &value)) return bad("ends inside a record");
    FLOTILLA_RETURN_IF_ERROR(fn(key, value));
    ++count;
  }
  if (!take(8, &v)) return bad("ends before its record count");
  if (GetFixed(v, 8) != count) return bad("record count does not match its trailer");
  if (pos != state.size()) return bad("bytes after its end");
  return Status::Ok();
}

KvStateMachine::KvStateMachine(std::string dir) : dir_(std::move(dir)) {}
KvStateMachine::~KvStateMachine() {
  if (db_) db_->Close().PermitUncheckedError();
}

Result<uint64_t> KvStateMachine::Open() {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return Status::IOError("kv: create " + dir_ + ": " + ec.message());
  rocksdb::Options options;
  options.create_if_missing = true;
  // RocksDB's error handler logs about a full disk: never to that disk.
  options.info_log = logdb::NewRocksInfoLogger("kv " + dir_);
  rocksdb::DB* raw = nullptr;
  FLOTILLA_RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(options, dir_, &raw), "kv open " + dir_));
  db_.reset(raw);
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), std::string(kAppliedKey), &v);
  if (s.IsNotFound()) {
    applied_ = 0;
  } else {
    FLOTILLA_RETURN_IF_ERROR(FromRocks(s, "kv read applied index"));
    if (v.size() != 8) return Status::Corruption("kv: applied index record has a bad size");
    applied_ = GetFixed(v, 8);
  }
  return applied_;
}

Status KvStateMachine::Sync() {
  if (!failed_.ok()) return failed_;
  return Written(db_->SyncWAL(), "kv sync");
}

Status KvStateMachine::Written(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::Ok();
  failed_ = FromRocks(s, what);
  failed_ =
      Status(failed_.code(), "kv store refuses writes after a failed write: " + failed_.message());
  return failed_;
}

Status KvStateMachine::Update(std::span<SMEntry> entries) {
  if (entries.empty()) return Status::Ok();
  if (!failed_.ok()) return failed_;
  rocksdb::WriteBatchWithIndex batch(rocksdb::BytewiseComparator(), 0, /*overwrite_key=*/true);
  Command cmd;
  std::string current;
  for (SMEntry& e : entries) {
    if (e.noop) continue;  // only its index, recorded below
    if (!cmd.ParseFromArray(e.cmd.data(), static_cast<int>(e.cmd.size())) ||
        cmd.op_case() == Command::OP_NOT_SET) {
      CommandResult r;
      r.set_index(e.index);
      r.set_error("malformed command: not a flotilla.nodehost.Command");
      e.result = kMalformed;
      e.data = r.SerializeAsString();
      continue;
    }
    bool found = false;
    switch (cmd.op_case()) {
      case Command::kPut:
        FLOTILLA_RETURN_IF_ERROR(
            FromRocks(batch.Put(DataKey(cmd.put().key()), cmd.put().value()), "kv put"));
        e.result = kApplied;
        e.data = Outcome(e.index, false, current);
        break;
      case Command::kDel: {
        const std::string key = DataKey(cmd.del().key());
        FLOTILLA_RETURN_IF_ERROR(ReadCurrent(db_.get(), &batch, key, &found, &current));
        FLOTILLA_RETURN_IF_ERROR(FromRocks(batch.Delete(key), "kv delete"));
        e.result = kApplied;
        e.data = Outcome(e.index, found, current);
        break;
      }
      case Command::kCas: {
        const CasOp& c = cmd.cas();
        const std::string key = DataKey(c.key());
        FLOTILLA_RETURN_IF_ERROR(ReadCurrent(db_.get(), &batch, key, &found, &current));
        const bool match = c.expect_absent() ? !found : (found && current == c.expected());
        if (match) FLOTILLA_RETURN_IF_ERROR(FromRocks(batch.Put(key, c.value()), "kv cas"));
        e.result = match ? kApplied : kCasMismatch;
        e.data = Outcome(e.index, found, current);
        break;
      }
      case Command::kHash:
        FLOTILLA_RETURN_IF_ERROR(ApplyHash(&batch, &e));
        break;
      case Command::OP_NOT_SET:
        break;
    }
  }
  std::string applied;
  PutU64(&applied, entries.back().index);
  FLOTILLA_RETURN_IF_ERROR(
      FromRocks(batch.Put(std::string(kAppliedKey), applied), "kv applied index"));
  FLOTILLA_RETURN_IF_ERROR(
      Written(db_->Write(rocksdb::WriteOptions(), batch.GetWriteBatch()), "kv write"));
  applied_ = entries.back().index;
  return Status::Ok();
}

Status KvStateMachine::ApplyHash(rocksdb::WriteBatchWithIndex* batch, SMEntry* e) {
  // The state as of this entry: the database under this Update's batch.
  std::unique_ptr<rocksdb::Iterator> it(
      batch->NewIteratorWithBase(db_->NewIterator(rocksdb::ReadOptions())));
  StateHasher h;
  for (it->Seek(std::string(1, kDataPrefix)); it->Valid() && it->key()[0] == kDataPrefix;
       it->Next()) {
    h.Add(std::string_view(it->key().data() + 1, it->key().size() - 1), it->value().ToStringView());
  }
  FLOTILLA_RETURN_IF_ERROR(FromRocks(it->status(), "kv hash"));
  std::string record;
  PutU64(&record, e->index);
  PutU64(&record, h.value());
  FLOTILLA_RETURN_IF_ERROR(FromRocks(batch->Put(std::string(kHashKey), record), "kv hash"));
  CommandResult r;
  r.set_index(e->index);
  r.set_hash(h.value());
  e->result = kApplied;
  e->data = r.SerializeAsString();
  return Status::Ok();
}

Result<std::string> KvStateMachine::Dump() {
  // One RocksDB snapshot: the applied index and the data it reflects are
  // written in one batch, so they agree.
  const rocksdb::Snapshot* snap = db_->GetSnapshot();
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  std::string applied, state;
  Status s = ReadAppliedRecord(db_.get(), ro, &applied);
  if (s.ok()) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
    s = WriteStateStream(it.get(), applied, [&state](std::string_view b) {
      if (state.size() + b.size() > kMaxDumpBytes) {
        return Status::TooLarge("kv dump: the shard's state exceeds " +
                                std::to_string(kMaxDumpBytes >> 20) + " MiB");
      }
      state.append(b);
      return Status::Ok();
    });
  }
  db_->ReleaseSnapshot(snap);
  FLOTILLA_RETURN_IF_ERROR(s);
  QueryResult out;
  out.set_applied_index(GetFixed(applied, 8));
  out.set_state(std::move(state));
  return out.SerializeAsString();
}

Result<std::string> KvStateMachine::LastHash() {
  std::string rec;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), std::string(kHashKey), &rec);
  QueryResult out;
  out.set_applied_index(applied_);
  if (!s.IsNotFound()) {
    FLOTILLA_RETURN_IF_ERROR(FromRocks(s, "kv hash record"));
    if (rec.size() != 16) return Status::Corruption("kv: hash record has a bad size");
    out.set_hash_index(GetFixed(rec, 8));
    out.set_hash(GetFixed(std::string_view(rec).substr(8), 8));
  }
  return out.SerializeAsString();
}

Result<std::string> KvStateMachine::Lookup(std::string_view query) {
  Query q;
  if (!q.ParseFromArray(query.data(), static_cast<int>(query.size())) ||
      q.q_case() == Query::Q_NOT_SET) {
    return Status::InvalidArgument("malformed query: not a flotilla.nodehost.Query");
  }
  if (q.q_case() == Query::kDump) return Dump();
  if (q.q_case() == Query::kHash) return LastHash();
  QueryResult out;
  if (q.q_case() == Query::kGet) {
    std::string v;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), DataKey(q.get().key()), &v);
    if (!s.IsNotFound()) {
      FLOTILLA_RETURN_IF_ERROR(FromRocks(s, "kv get"));
      out.set_found(true);
      out.set_value(std::move(v));
    }
    return out.SerializeAsString();
  }
  const ScanQuery& sq = q.scan();
  const uint32_t limit = sq.limit() == 0 || sq.limit() > kMaxScanKeys ? kMaxScanKeys : sq.limit();
  const std::string prefix = DataKey(sq.prefix());
  std::string start = std::max(prefix, DataKey(sq.start()));
  if (!sq.start_after().empty()) {
    std::string after = DataKey(sq.start_after());
    after.push_back('\0');  // strictly after
    start = std::max(start, after);
  }
  const std::string end = sq.end().empty() ? std::string() : DataKey(sq.end());
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  uint64_t bytes = 0;
  for (it->Seek(start);
       it->Valid() && it->key().starts_with(prefix) && (end.empty() || it->key().compare(end) < 0);
       it->Next()) {
    if (static_cast<uint32_t>(out.kvs_size()) >= limit || bytes >= kMaxScanBytes) {
      out.set_more(true);
      break;
    }
    KeyValue* kv = out.add_kvs();
    kv->set_key(it->key().data() + 1, it->key().size() - 1);
    kv->set_value(it->value().data(), it->value().size());
    bytes += it->key().size() + it->value().size();
  }
  FLOTILLA_RETURN_IF_ERROR(FromRocks(it->status(), "kv scan"));
  return out.SerializeAsString();
}

Result<std::shared_ptr<void>> KvStateMachine::PrepareSnapshot() {
  rocksdb::DB* db = db_.get();
  const rocksdb::Snapshot* snap = db->GetSnapshot();
  return std::shared_ptr<void>(const_cast<rocksdb::Snapshot*>(snap), [db](void* p) {
    db->ReleaseSnapshot(static_cast<const rocksdb::Snapshot*>(p));
  });
}

Status KvStateMachine::SaveSnapshot(std::shared_ptr<void> prepared, SnapshotWriter* w) {
  rocksdb::ReadOptions ro;
  ro.snapshot = static_cast<const rocksdb::Snapshot*>(prepared.get());
  std::string applied;
  FLOTILLA_RETURN_IF_ERROR(ReadAppliedRecord(db_.get(), ro, &applied));
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  return WriteStateStream(it.get(), applied, [w](std::string_view b) { return w->Write(b); });
}

Status KvStateMachine::RecoverFromSnapshot(SnapshotReader* r) {
  if (!failed_.ok()) return failed_;
  StreamReader in(r);
  std::string header;
  FLOTILLA_RETURN_IF_ERROR(in.ReadExact(kSnapshotMagic.size() + 8, &header));
  if (std::string_view(header).substr(0, kSnapshotMagic.size()) != kSnapshotMagic)
    return Status::Corruption("kv snapshot: bad magic");
  const std::string applied = header.substr(kSnapshotMagic.size());
  // First forget the applied index together with the old data: a crash in
  // the middle of the recovery leaves a store that Open() reports as empty
  // (index 0), so the engine restores the snapshot again.
  rocksdb::WriteBatch batch;
  FLOTILLA_RETURN_IF_ERROR(FromRocks(batch.Delete(std::string(kAppliedKey)), "kv recover"));
  FLOTILLA_RETURN_IF_ERROR(FromRocks(
      batch.DeleteRange(std::string(1, kDataPrefix), std::string(kDataEnd)), "kv recover"));
  uint64_t count = 0;
  std::string sizes, key, value;
  while (true) {
    FLOTILLA_RETURN_IF_ERROR(in.ReadExact(4, &sizes));
    const uint32_t ksize = static_cast<uint32_t>(GetFixed(sizes, 4));
    if (ksize == kEndMarker) break;
    FLOTILLA_RETURN_IF_ERROR(in.ReadExact(4, &sizes));
    const uint32_t vsize = static_cast<uint32_t>(GetFixed(sizes, 4));
    if (ksize > kMaxKeyOrValueBytes || vsize > kMaxKeyOrValueBytes)
      return Status::Corruption("kv snapshot: record larger than its bound");
    FLOTILLA_RETURN_IF_ERROR(in.ReadExact(ksize, &key));
    FLOTILLA_RETURN_IF_ERROR(in.ReadExact(vsize, &value));
    FLOTILLA_RETURN_IF_ERROR(FromRocks(batch.Put(DataKey(key), value), "kv recover"));
    ++count;
    if (batch.GetDataSize() >= kRecoverBatchBytes) {
      FLOTILLA_RETURN_IF_ERROR(Written(db_->Write(rocksdb::WriteOptions(), &batch), "kv recover"));
      batch.Clear();
    }
  }
  std::string trailer;
  FLOTILLA_RETURN_IF_ERROR(in.ReadExact(8, &trailer));
  if (GetFixed(trailer, 8) != count)
    return Status::Corruption("kv snapshot: record count does not match its trailer");
  FLOTILLA_RETURN_IF_ERROR(FromRocks(batch.Put(std::string(kAppliedKey), applied), "kv recover"));
  rocksdb::WriteOptions sync;
  sync.sync = true;
  FLOTILLA_RETURN_IF_ERROR(Written(db_->Write(sync, &batch), "kv recover"));
  applied_ = GetFixed(applied, 8);
  return Status::Ok();
}

}  // namespace flotilla::nodehost
