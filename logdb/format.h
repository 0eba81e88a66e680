// The on-disk format of the LogDB: record types, keys and values.
//
// This is the one header that defines the format; docs/logdb-format.md
// describes it byte by byte and says why it is shaped this way. Change both
// together, and bump kFormatVersion when a stored byte changes meaning.
//
// Keys are fixed-width and big-endian so that RocksDB's bytewise order is the
// order (record type, shard, replica, index). Values start with a CRC32C that
// covers the key and the rest of the value, so a value that is damaged, or
// that is found under the wrong key, fails verification.
//
// Thread-safety: pure functions over caller-owned buffers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "engine/raft/types.h"
#include "flotilla/status.h"
#include "logdb/logdb.h"

namespace flotilla::logdb::format {

inline constexpr uint8_t kFormatVersion = 1;

enum class RecordType : uint8_t {
  kEntry = 0x01,       // a batch of entries; key: type, shard, replica, index of its first entry
  kHardState = 0x02,   // key: type, shard, replica
  kSnapshot = 0x03,    // key: type, shard, replica
  kBootstrap = 0x04,   // key: type, shard, replica
  kCompaction = 0x05,  // key: type, shard, replica; index and term of the last removed entry
  kRepair = 0x06,      // key: type, shard, replica; a replica repairing lost records (RepairRecord)
};

inline constexpr size_t kReplicaKeySize = 1 + 8 + 8;          // type, shard, replica
inline constexpr size_t kEntryKeySize = kReplicaKeySize + 8;  // ... and index
// Every value of a non-entry record: CRC32C (4 bytes, little-endian) then the
// format version (1 byte).
inline constexpr size_t kValueHeaderSize = 4 + 1;
// An entry batch: CRC32C of the header (4), version (1), entry count (4);
// then per entry: CRC32C (4), body length (4), body.
inline constexpr size_t kBatchHeaderSize = 4 + 1 + 4;
inline constexpr size_t kEntryRecordHeaderSize = 4 + 4;
// Entries are stored at indexes 1 .. kMaxIndex; the all-ones index is kept
// free so that [0, kMaxIndex + 1) covers every entry of a replica.
inline constexpr raft::Index kMaxIndex = UINT64_MAX - 1;

// Key builders: replace the contents of `out` (its capacity is reused).
void EntryKey(raft::ShardId shard, raft::ReplicaId replica, raft::Index index, std::string* out);
void RecordKey(RecordType type, raft::ShardId shard, raft::ReplicaId replica, std::string* out);
// The start of a range deletion of a replica's entries from `index` on: the
// key right after entry index - 1 (one byte longer than an entry key), which
// sorts before entry `index` and after every entry below it. Range deletions
// never start at a record's own key: RocksDB's memtable insert hints, kept
// per key prefix, are shared by point and range-deletion inserts
// (logdb/rocks_logdb.cc), so the two must never share a hinted key.
inline constexpr size_t kEntryRangeStartSize = kEntryKeySize + 1;
void EntryRangeStart(raft::ShardId shard, raft::ReplicaId replica, raft::Index index,
                     std::string* out);

// Parses a key of any record type. Returns false when `key` is not one.
struct ParsedKey {
  RecordType type = RecordType::kEntry;
  ReplicaKey replica;
  raft::Index index = 0;  // entries only
};
bool ParseKey(std::string_view key, ParsedKey* out);

// Value encoders: replace the contents of `out`; `key` is the record's key
// (it is covered by the checksum, never stored twice).
// REQUIRES: `entries` is non-empty and contiguous; `key` is the entry key of
// its first index.
void EncodeEntryBatch(std::string_view key, std::span<const raft::Entry> entries, std::string* out);
void EncodeHardState(std::string_view key, const raft::HardState& hs, std::string* out);
void EncodeSnapshot(std::string_view key, const raft::SnapshotMeta& meta, std::string* out);
void EncodeBootstrap(std::string_view key, const Bootstrap& b, std::string* out);
void EncodeCompaction(std::string_view key, raft::Index index, raft::Term term, std::string* out);
void EncodeRepair(std::string_view key, const RepairRecord& rec, std::string* out);

// Reads one entry batch in index order. Each entry is verified against its
// own checksum when it is read, so a damaged entry is reported with its
// index. Failures are Corruption statuses naming shard, replica and index,
// never data. The views passed to Open must outlive the reader.
// Thread-safety: not thread-safe.
class EntryBatchReader {
 public:
  // Verifies the header (checksum, version, count) of the batch.
  Status Open(std::string_view key, std::string_view value);
  raft::Index first() const { return first_; }
  raft::Index last() const { return first_ + count_ - 1; }
  bool done() const { return pos_ == count_; }
  // Index of the entry Next or Skip reads.
  raft::Index next_index() const { return first_ + pos_; }
  // Decodes and verifies the next entry. REQUIRES: !done().
  Status Next(raft::Entry* out);
  // Steps over the next entry without verifying it. REQUIRES: !done().
  Status Skip();
  // Offset and size of the next entry's record inside the value (tests
  // damage it on purpose). REQUIRES: !done().
  size_t next_offset() const { return static_cast<size_t>(rest_.data() - value_.data()); }
  Status NextRecordSize(size_t* size) const;

 private:
  Status Damaged(raft::Index index, const char* what) const;
  ReplicaKey replica_;
  raft::Index first_ = 0;
  uint64_t count_ = 0;
  uint64_t pos_ = 0;
  std::string_view value_;
  std::string_view rest_;
};

// Decoders of the other records verify the checksum and the layout first.
Status DecodeHardState(std::string_view key, std::string_view value, raft::HardState* out);
Status DecodeSnapshot(std::string_view key, std::string_view value, raft::SnapshotMeta* out);
Status DecodeBootstrap(std::string_view key, std::string_view value, Bootstrap* out);
Status DecodeCompaction(std::string_view key, std::string_view value, raft::Index* index,
                        raft::Term* term);
Status DecodeRepair(std::string_view key, std::string_view value, RepairRecord* out);

}  // namespace flotilla::logdb::format
