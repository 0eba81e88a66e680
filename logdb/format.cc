#include "logdb/format.h"

#include <cstring>
#include <limits>

#include "logdb/crc32c.h"

namespace flotilla::logdb::format {
namespace {

void PutBig64(std::string* out, uint64_t v) {
  char b[8];
  for (int i = 7; i >= 0; --i) {
    b[i] = static_cast<char>(v & 0xffu);
    v >>= 8;
  }
  out->append(b, 8);
}

uint64_t GetBig64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// Values are little-endian: the hosts we run on are, and it keeps encoding a
// plain copy. Keys are big-endian because their byte order must sort.
void PutLittle64(std::string* out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) {
    b[i] = static_cast<char>(v & 0xffu);
    v >>= 8;
  }
  out->append(b, 8);
}

void PutLittle32(std::string* out, uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) {
    b[i] = static_cast<char>(v & 0xffu);
    v >>= 8;
  }
  out->append(b, 4);
}

void StartValue(std::string* out) {
  out->clear();
  out->append(4, '\0');  // checksum, filled in by SealValue
  out->push_back(static_cast<char>(kFormatVersion));
}

uint32_t ValueChecksum(std::string_view key, std::string_view value) {
  uint32_t crc = Crc32cExtend(0, key.data(), key.size());
  return Crc32cExtend(crc, value.data() + 4, value.size() - 4);
}

void SealValue(std::string_view key, std::string* out) {
  const uint32_t crc = ValueChecksum(key, *out);
  for (int i = 0; i < 4; ++i) (*out)[static_cast<size_t>(i)] = static_cast<char>((crc >> (8 * i)) & 0xffu);
}

// A bounds-checked little-endian reader over one value.
class Reader {
 public:
  explicit Reader(std::string_view v) : v_(v) {}
  bool U8(uint8_t* out) {
    if (v_.size() < 1) return false;
    *out = static_cast<uint8_t>(v_[0]);
    v_.remove_prefix(1);
    return true;
  }
  bool U32(uint32_t* out) {
    if (v_.size() < 4) return false;
    uint32_t r = 0;
    for (int i = 3; i >= 0; --i) r = (r << 8) | static_cast<uint8_t>(v_[static_cast<size_t>(i)]);
    *out = r;
    v_.remove_prefix(4);
    return true;
  }
  bool U64(uint64_t* out) {
    if (v_.size() < 8) return false;
    uint64_t r = 0;
    for (int i = 7; i >= 0; --i) r = (r << 8) | static_cast<uint8_t>(v_[static_cast<size_t>(i)]);
    *out = r;
    v_.remove_prefix(8);
    return true;
  }
  bool Bytes(size_t n, std::string_view* out) {
    if (v_.size() < n) return false;
    *out = v_.substr(0, n);
    v_.remove_prefix(n);
    return true;
  }
  std::string_view rest() const { return v_; }
  bool done() const { return v_.empty(); }

 private:
  std::string_view v_;
};

// "shard S replica R index I" (index only for entry keys), or a hex dump
// when the key itself is not one of ours.
std::string Describe(std::string_view key) {
  ParsedKey k;
  if (!ParseKey(key, &k)) return "unparseable key of " + std::to_string(key.size()) + " bytes";
  std::string s = "shard " + std::to_string(k.replica.shard_id) + " replica " +
                  std::to_string(k.replica.replica_id);
  if (k.type == RecordType::kEntry) s += " index " + std::to_string(k.index);
  return s;
}

const char* RecordName(RecordType t) {
  switch (t) {
    case RecordType::kEntry: return "entry";
    case RecordType::kHardState: return "hard state";
    case RecordType::kSnapshot: return "snapshot metadata";
    case RecordType::kBootstrap: return "bootstrap";
    case RecordType::kCompaction: return "compaction record";
  }
  return "record";
}

Status Bad(RecordType t, std::string_view key, const char* what) {
  return Status::Corruption(Describe(key) + ": " + RecordName(t) + " " + what);
}

// Verifies the header of a value and returns a reader positioned after it.
Status Open(RecordType t, std::string_view key, std::string_view value, Reader* r) {
  if (value.size() < kValueHeaderSize) return Bad(t, key, "too short");
  uint32_t stored = 0;
  for (int i = 3; i >= 0; --i) stored = (stored << 8) | static_cast<uint8_t>(value[static_cast<size_t>(i)]);
  if (stored != ValueChecksum(key, value)) return Bad(t, key, "checksum mismatch");
  if (static_cast<uint8_t>(value[4]) != kFormatVersion) return Bad(t, key, "has an unknown format version");
  *r = Reader(value.substr(kValueHeaderSize));
  return Status::Ok();
}

void PutIds(std::string* out, const std::vector<raft::ReplicaId>& ids) {
  PutLittle32(out, static_cast<uint32_t>(ids.size()));
  for (raft::ReplicaId id : ids) PutLittle64(out, id);
}

bool GetIds(Reader* r, std::vector<raft::ReplicaId>* ids) {
  uint32_t n = 0;
  if (!r->U32(&n)) return false;
  if (n > r->rest().size() / 8) return false;  // a damaged count must not allocate wildly
  ids->resize(n);
  for (auto& id : *ids) {
    if (!r->U64(&id)) return false;
  }
  return true;
}

}  // namespace

void EntryKey(raft::ShardId shard, raft::ReplicaId replica, raft::Index index, std::string* out) {
  RecordKey(RecordType::kEntry, shard, replica, out);
  PutBig64(out, index);
}

void RecordKey(RecordType type, raft::ShardId shard, raft::ReplicaId replica, std::string* out) {
  out->clear();
  out->push_back(static_cast<char>(type));
  PutBig64(out, shard);
  PutBig64(out, replica);
}

bool ParseKey(std::string_view key, ParsedKey* out) {
  if (key.size() < kReplicaKeySize) return false;
  const auto type = static_cast<RecordType>(key[0]);
  switch (type) {
    case RecordType::kEntry:
      if (key.size() != kEntryKeySize) return false;
      out->index = GetBig64(key.data() + kReplicaKeySize);
      break;
    case RecordType::kHardState:
    case RecordType::kSnapshot:
    case RecordType::kBootstrap:
    case RecordType::kCompaction:
      if (key.size() != kReplicaKeySize) return false;
      out->index = 0;
      break;
    default:
      return false;
  }
  out->type = type;
  out->replica.shard_id = GetBig64(key.data() + 1);
  out->replica.replica_id = GetBig64(key.data() + 9);
  return true;
}

void EncodeEntry(std::string_view key, const raft::Entry& e, std::string* out) {
  StartValue(out);
  out->push_back(static_cast<char>(e.type));
  PutLittle64(out, e.term);
  PutLittle64(out, e.key);
  PutLittle64(out, e.client_id);
  PutLittle64(out, e.series_id);
  PutLittle64(out, e.responded_to);
  out->append(e.cmd);
  SealValue(key, out);
}

namespace {

Status DecodeEntryHead(std::string_view key, std::string_view value, Reader* r, raft::Entry* e) {
  FLOTILLA_RETURN_IF_ERROR(Open(RecordType::kEntry, key, value, r));
  uint8_t type = 0;
  if (!r->U8(&type) || !r->U64(&e->term) || !r->U64(&e->key) || !r->U64(&e->client_id) ||
      !r->U64(&e->series_id) || !r->U64(&e->responded_to)) {
    return Bad(RecordType::kEntry, key, "too short");
  }
  if (type > static_cast<uint8_t>(raft::EntryType::kMetadata)) {
    return Bad(RecordType::kEntry, key, "has an unknown entry type");
  }
  e->type = static_cast<raft::EntryType>(type);
  return Status::Ok();
}

}  // namespace

Status DecodeEntry(std::string_view key, std::string_view value, raft::Entry* out) {
  Reader r{std::string_view()};
  FLOTILLA_RETURN_IF_ERROR(DecodeEntryHead(key, value, &r, out));
  ParsedKey k;
  if (!ParseKey(key, &k) || k.type != RecordType::kEntry) return Bad(RecordType::kEntry, key, "key is malformed");
  out->index = k.index;
  out->cmd.assign(r.rest());
  return Status::Ok();
}

Status DecodeEntryTerm(std::string_view key, std::string_view value, raft::Term* out) {
  Reader r{std::string_view()};
  raft::Entry e;
  FLOTILLA_RETURN_IF_ERROR(DecodeEntryHead(key, value, &r, &e));
  *out = e.term;
  return Status::Ok();
}

void EncodeHardState(std::string_view key, const raft::HardState& hs, std::string* out) {
  StartValue(out);
  PutLittle64(out, hs.term);
  PutLittle64(out, hs.vote);
  PutLittle64(out, hs.commit);
  SealValue(key, out);
}

Status DecodeHardState(std::string_view key, std::string_view value, raft::HardState* out) {
  Reader r{std::string_view()};
  FLOTILLA_RETURN_IF_ERROR(Open(RecordType::kHardState, key, value, &r));
  if (!r.U64(&out->term) || !r.U64(&out->vote) || !r.U64(&out->commit) || !r.done()) {
    return Bad(RecordType::kHardState, key, "has the wrong size");
  }
  return Status::Ok();
}

void EncodeSnapshot(std::string_view key, const raft::SnapshotMeta& meta, std::string* out) {
  StartValue(out);
  PutLittle64(out, meta.index);
  PutLittle64(out, meta.term);
  const raft::Membership& m = meta.membership;
  out->push_back(static_cast<char>(m.auto_leave ? 1 : 0));
  PutIds(out, m.voters);
  PutIds(out, m.voters_outgoing);
  PutIds(out, m.non_voting);
  PutIds(out, m.non_voting_next);
  PutIds(out, m.witnesses);
  SealValue(key, out);
}

Status DecodeSnapshot(std::string_view key, std::string_view value, raft::SnapshotMeta* out) {
  Reader r{std::string_view()};
  FLOTILLA_RETURN_IF_ERROR(Open(RecordType::kSnapshot, key, value, &r));
  raft::Membership& m = out->membership;
  uint8_t auto_leave = 0;
  if (!r.U64(&out->index) || !r.U64(&out->term) || !r.U8(&auto_leave) || auto_leave > 1 ||
      !GetIds(&r, &m.voters) || !GetIds(&r, &m.voters_outgoing) || !GetIds(&r, &m.non_voting) ||
      !GetIds(&r, &m.non_voting_next) || !GetIds(&r, &m.witnesses) || !r.done()) {
    return Bad(RecordType::kSnapshot, key, "is malformed");
  }
  m.auto_leave = auto_leave == 1;
  return Status::Ok();
}

void EncodeBootstrap(std::string_view key, const Bootstrap& b, std::string* out) {
  StartValue(out);
  out->push_back(static_cast<char>(b.join ? 1 : 0));
  out->push_back(static_cast<char>(b.state_machine_kind));
  PutLittle32(out, static_cast<uint32_t>(b.members.size()));
  for (const auto& [id, address] : b.members) {
    PutLittle64(out, id);
    PutLittle32(out, static_cast<uint32_t>(address.size()));
    out->append(address);
  }
  SealValue(key, out);
}

Status DecodeBootstrap(std::string_view key, std::string_view value, Bootstrap* out) {
  Reader r{std::string_view()};
  FLOTILLA_RETURN_IF_ERROR(Open(RecordType::kBootstrap, key, value, &r));
  uint8_t join = 0;
  uint32_t n = 0;
  if (!r.U8(&join) || join > 1 || !r.U8(&out->state_machine_kind) || !r.U32(&n)) {
    return Bad(RecordType::kBootstrap, key, "is malformed");
  }
  out->join = join == 1;
  out->members.clear();
  for (uint32_t i = 0; i < n; ++i) {
    uint64_t id = 0;
    uint32_t len = 0;
    std::string_view address;
    if (!r.U64(&id) || !r.U32(&len) || !r.Bytes(len, &address)) {
      return Bad(RecordType::kBootstrap, key, "is malformed");
    }
    out->members.emplace(id, std::string(address));
  }
  if (!r.done()) return Bad(RecordType::kBootstrap, key, "is malformed");
  return Status::Ok();
}

void EncodeCompaction(std::string_view key, raft::Index index, raft::Term term, std::string* out) {
  StartValue(out);
  PutLittle64(out, index);
  PutLittle64(out, term);
  SealValue(key, out);
}

Status DecodeCompaction(std::string_view key, std::string_view value, raft::Index* index,
                        raft::Term* term) {
  Reader r{std::string_view()};
  FLOTILLA_RETURN_IF_ERROR(Open(RecordType::kCompaction, key, value, &r));
  if (!r.U64(index) || !r.U64(term) || !r.done()) {
    return Bad(RecordType::kCompaction, key, "has the wrong size");
  }
  return Status::Ok();
}

}  // namespace flotilla::logdb::format
