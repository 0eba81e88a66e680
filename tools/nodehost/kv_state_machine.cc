#include "tools/nodehost/kv_state_machine.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/write_batch_with_index.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "logdb/rocks_logdb.h"
#include "proto/kv.pb.h"

namespace flotilla::nodehost {
namespace {

constexpr char kDataPrefix = 'd';
constexpr std::string_view kAppliedKey = "m/applied";
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

}  // namespace

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

Result<std::string> KvStateMachine::Lookup(std::string_view query) {
  Query q;
  if (!q.ParseFromArray(query.data(), static_cast<int>(query.size())) ||
      q.q_case() == Query::Q_NOT_SET) {
    return Status::InvalidArgument("malformed query: not a flotilla.nodehost.Query");
  }
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
  rocksdb::Status s = db_->Get(ro, std::string(kAppliedKey), &applied);
  if (s.IsNotFound())
    applied.assign(8, '\0');
  else
    FLOTILLA_RETURN_IF_ERROR(FromRocks(s, "kv snapshot: applied index"));
  std::string out(kSnapshotMagic);
  out.append(applied);
  uint64_t count = 0;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(std::string(1, kDataPrefix)); it->Valid() && it->key()[0] == kDataPrefix;
       it->Next()) {
    PutU32(&out, static_cast<uint32_t>(it->key().size() - 1));
    PutU32(&out, static_cast<uint32_t>(it->value().size()));
    out.append(it->key().data() + 1, it->key().size() - 1);
    out.append(it->value().data(), it->value().size());
    ++count;
    if (out.size() >= kSnapshotChunkBytes) {
      FLOTILLA_RETURN_IF_ERROR(w->Write(out));
      out.clear();
    }
  }
  FLOTILLA_RETURN_IF_ERROR(FromRocks(it->status(), "kv snapshot: iterate"));
  PutU32(&out, kEndMarker);
  PutU64(&out, count);
  return w->Write(out);
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
