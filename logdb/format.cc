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
  for (int i = 0; i < 4; ++i)
    (*out)[static_cast<size_t>(i)] = static_cast<char>((crc >> (8 * i)) & 0xffu);
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
    case RecordType::kEntry:
      return "entry";
    case RecordType::kHardState:
      return "hard state";
    case RecordType::kSnapshot:
      return "snapshot metadata";
    case RecordType::kBootstrap:
      return "bootstrap";
    case RecordType::kCompaction:
      return "compaction record";
    case RecordType::kRepair:
      return "repair record";
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
  for (int i = 3; i >= 0; --i)
    stored = (stored << 8) | static_cast<uint8_t>(value[static_cast<size_t>(i)]);
  if (stored != ValueChecksum(key, value)) return Bad(t, key, "checksum mismatch");
  if (static_cast<uint8_t>(value[4]) != kFormatVersion)
    return Bad(t, key, "has an unknown format version");
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

void EntryRangeStart(raft::ShardId shard, raft::ReplicaId replica, raft::Index index,
                     std::string* out) {
  // Index 0 is never stored, so the key just after entry 0's covers index 1.
  EntryKey(shard, replica, index == 0 ? 0 : index - 1, out);
  out->push_back('\0');
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
    case RecordType::kRepair:
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

namespace {

void PutVarint(std::string* out, uint64_t v) {
  char b[10];
  size_t n = 0;
  while (v >= 0x80) {
    b[n++] = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  b[n++] = static_cast<char>(v);
  out->append(b, n);
}

bool GetVarint(std::string_view* in, uint64_t* v) {
  uint64_t r = 0;
  for (size_t i = 0; i < in->size() && i < 10; ++i) {
    const auto byte = static_cast<uint8_t>((*in)[i]);
    r |= static_cast<uint64_t>(byte & 0x7f) << (7 * i);
    if ((byte & 0x80) == 0) {
      in->remove_prefix(i + 1);
      *v = r;
      return true;
    }
  }
  return false;
}

void PutLittle32At(std::string* out, size_t pos, uint32_t v) {
  for (size_t i = 0; i < 4; ++i) (*out)[pos + i] = static_cast<char>((v >> (8 * i)) & 0xffu);
}

uint32_t GetLittle32(const char* p) {
  uint32_t r = 0;
  for (int i = 3; i >= 0; --i) r = (r << 8) | static_cast<uint8_t>(p[i]);
  return r;
}

// The checksum of one entry record covers the key the entry would have on
// its own (so an entry read at the wrong position fails), its length and body.
uint32_t EntryChecksum(const ReplicaKey& r, raft::Index index, std::string_view len_and_body) {
  char key[kEntryKeySize];
  key[0] = static_cast<char>(RecordType::kEntry);
  uint64_t parts[3] = {r.shard_id, r.replica_id, index};
  for (int p = 0; p < 3; ++p) {
    for (int i = 0; i < 8; ++i)
      key[1 + 8 * p + i] = static_cast<char>((parts[p] >> (56 - 8 * i)) & 0xffu);
  }
  return Crc32cExtend(Crc32cExtend(0, key, sizeof(key)), len_and_body.data(), len_and_body.size());
}

}  // namespace

void EncodeEntryBatch(std::string_view key, std::span<const raft::Entry> entries,
                      std::string* out) {
  ParsedKey k;
  if (!ParseKey(key, &k) || k.type != RecordType::kEntry || entries.empty() ||
      entries.front().index != k.index) {
    std::abort();  // a caller bug: the key must name the batch's first entry
  }
  out->clear();
  out->append(4, '\0');
  out->push_back(static_cast<char>(kFormatVersion));
  PutLittle32(out, static_cast<uint32_t>(entries.size()));
  PutLittle32At(out, 0, Crc32cExtend(Crc32cExtend(0, key.data(), key.size()), out->data() + 4, 5));
  for (const raft::Entry& e : entries) {
    const size_t at = out->size();
    out->append(kEntryRecordHeaderSize, '\0');
    out->push_back(static_cast<char>(e.type));
    PutVarint(out, e.term);
    PutVarint(out, e.key);
    PutVarint(out, e.client_id);
    PutVarint(out, e.series_id);
    PutVarint(out, e.responded_to);
    out->append(e.cmd);
    PutLittle32At(out, at + 4, static_cast<uint32_t>(out->size() - at - kEntryRecordHeaderSize));
    const std::string_view len_and_body(out->data() + at + 4, out->size() - at - 4);
    PutLittle32At(out, at, EntryChecksum(k.replica, e.index, len_and_body));
  }
}

Status EntryBatchReader::Damaged(raft::Index index, const char* what) const {
  return Status::Corruption("shard " + std::to_string(replica_.shard_id) + " replica " +
                            std::to_string(replica_.replica_id) + " index " +
                            std::to_string(index) + ": " + what);
}

Status EntryBatchReader::Open(std::string_view key, std::string_view value) {
  ParsedKey k;
  if (!ParseKey(key, &k) || k.type != RecordType::kEntry) {
    return Status::Corruption(Describe(key) + ": not an entry key");
  }
  replica_ = k.replica;
  first_ = k.index;
  pos_ = 0;
  count_ = 0;
  value_ = value;
  if (value.size() < kBatchHeaderSize) return Damaged(first_, "entry batch too short");
  const uint32_t crc = Crc32cExtend(Crc32cExtend(0, key.data(), key.size()), value.data() + 4, 5);
  if (crc != GetLittle32(value.data()))
    return Damaged(first_, "entry batch header checksum mismatch");
  if (static_cast<uint8_t>(value[4]) != kFormatVersion)
    return Damaged(first_, "unknown format version");
  count_ = GetLittle32(value.data() + 5);
  if (count_ == 0 || count_ - 1 > kMaxIndex - first_)
    return Damaged(first_, "entry batch count out of range");
  rest_ = value.substr(kBatchHeaderSize);
  return Status::Ok();
}

Status EntryBatchReader::NextRecordSize(size_t* size) const {
  if (rest_.size() < kEntryRecordHeaderSize) return Damaged(next_index(), "entry truncated");
  const uint32_t len = GetLittle32(rest_.data() + 4);
  if (len > rest_.size() - kEntryRecordHeaderSize) return Damaged(next_index(), "entry truncated");
  *size = kEntryRecordHeaderSize + len;
  return Status::Ok();
}

Status EntryBatchReader::Skip() {
  size_t size = 0;
  FLOTILLA_RETURN_IF_ERROR(NextRecordSize(&size));
  rest_.remove_prefix(size);
  ++pos_;
  return Status::Ok();
}

Status EntryBatchReader::Next(raft::Entry* out) {
  const raft::Index index = next_index();
  size_t size = 0;
  FLOTILLA_RETURN_IF_ERROR(NextRecordSize(&size));
  const std::string_view len_and_body = rest_.substr(4, size - 4);
  if (EntryChecksum(replica_, index, len_and_body) != GetLittle32(rest_.data())) {
    return Damaged(index, "entry checksum mismatch");
  }
  std::string_view body = len_and_body.substr(4);
  if (body.empty() ||
      static_cast<uint8_t>(body[0]) > static_cast<uint8_t>(raft::EntryType::kMetadata)) {
    return Damaged(index, "entry has an unknown type");
  }
  out->type = static_cast<raft::EntryType>(body[0]);
  body.remove_prefix(1);
  if (!GetVarint(&body, &out->term) || !GetVarint(&body, &out->key) ||
      !GetVarint(&body, &out->client_id) || !GetVarint(&body, &out->series_id) ||
      !GetVarint(&body, &out->responded_to)) {
    return Damaged(index, "entry is malformed");
  }
  out->index = index;
  out->cmd.assign(body);
  rest_.remove_prefix(size);
  ++pos_;
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

namespace {

// A replica id -> address map: u32 count, then per member u64 id, u32
// length and the bytes.
void PutAddresses(std::string* out, const std::map<raft::ReplicaId, std::string>& m) {
  PutLittle32(out, static_cast<uint32_t>(m.size()));
  for (const auto& [id, address] : m) {
    PutLittle64(out, id);
    PutLittle32(out, static_cast<uint32_t>(address.size()));
    out->append(address);
  }
}

bool GetAddresses(Reader* r, std::map<raft::ReplicaId, std::string>* out) {
  out->clear();
  uint32_t n = 0;
  if (!r->U32(&n)) return false;
  for (uint32_t i = 0; i < n; ++i) {
    uint64_t id = 0;
    uint32_t len = 0;
    std::string_view address;
    if (!r->U64(&id) || !r->U32(&len) || !r->Bytes(len, &address)) return false;
    out->emplace(id, std::string(address));
  }
  return true;
}

}  // namespace

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
  PutIds(out, m.removed);
  // Added after format version 1's first records: a snapshot record that
  // ends after `removed` has no contexts (read as none).
  PutAddresses(out, m.contexts);
  SealValue(key, out);
}

Status DecodeSnapshot(std::string_view key, std::string_view value, raft::SnapshotMeta* out) {
  Reader r{std::string_view()};
  FLOTILLA_RETURN_IF_ERROR(Open(RecordType::kSnapshot, key, value, &r));
  raft::Membership& m = out->membership;
  uint8_t auto_leave = 0;
  if (!r.U64(&out->index) || !r.U64(&out->term) || !r.U8(&auto_leave) || auto_leave > 1 ||
      !GetIds(&r, &m.voters) || !GetIds(&r, &m.voters_outgoing) || !GetIds(&r, &m.non_voting) ||
      !GetIds(&r, &m.non_voting_next) || !GetIds(&r, &m.witnesses) || !GetIds(&r, &m.removed)) {
    return Bad(RecordType::kSnapshot, key, "is malformed");
  }
  m.contexts.clear();
  if (!r.done() && !GetAddresses(&r, &m.contexts)) {
    return Bad(RecordType::kSnapshot, key, "is malformed");
  }
  if (!r.done()) return Bad(RecordType::kSnapshot, key, "is malformed");
  m.auto_leave = auto_leave == 1;
  return Status::Ok();
}

void EncodeBootstrap(std::string_view key, const Bootstrap& b, std::string* out) {
  StartValue(out);
  out->push_back(static_cast<char>(b.join ? 1 : 0));
  out->push_back(static_cast<char>(b.state_machine_kind));
  PutAddresses(out, b.members);
  SealValue(key, out);
}

Status DecodeBootstrap(std::string_view key, std::string_view value, Bootstrap* out) {
  Reader r{std::string_view()};
  FLOTILLA_RETURN_IF_ERROR(Open(RecordType::kBootstrap, key, value, &r));
  uint8_t join = 0;
  if (!r.U8(&join) || join > 1 || !r.U8(&out->state_machine_kind) ||
      !GetAddresses(&r, &out->members)) {
    return Bad(RecordType::kBootstrap, key, "is malformed");
  }
  out->join = join == 1;
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

// A repair record: the last index held when records were lost (8), the term
// then (8), and flags (1: bit 0, the hard state was lost).
void EncodeRepair(std::string_view key, const RepairRecord& rec, std::string* out) {
  StartValue(out);
  PutLittle64(out, rec.until);
  PutLittle64(out, rec.term);
  out->push_back(static_cast<char>(rec.hard_state_lost ? 1 : 0));
  SealValue(key, out);
}

Status DecodeRepair(std::string_view key, std::string_view value, RepairRecord* out) {
  Reader r{std::string_view()};
  FLOTILLA_RETURN_IF_ERROR(Open(RecordType::kRepair, key, value, &r));
  uint8_t flags = 0;
  if (!r.U64(&out->until) || !r.U64(&out->term) || !r.U8(&flags) || !r.done() || flags > 1) {
    return Bad(RecordType::kRepair, key, "has the wrong size or flags");
  }
  out->hard_state_lost = flags == 1;
  return Status::Ok();
}

}  // namespace flotilla::logdb::format
