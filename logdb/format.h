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
#include <string>
#include <string_view>

#include "engine/raft/types.h"
#include "flotilla/status.h"
#include "logdb/logdb.h"

namespace flotilla::logdb::format {

inline constexpr uint8_t kFormatVersion = 1;

enum class RecordType : uint8_t {
  kEntry = 0x01,       // key: type, shard, replica, index
  kHardState = 0x02,   // key: type, shard, replica
  kSnapshot = 0x03,    // key: type, shard, replica
  kBootstrap = 0x04,   // key: type, shard, replica
  kCompaction = 0x05,  // key: type, shard, replica; index and term of the last removed entry
};

inline constexpr size_t kReplicaKeySize = 1 + 8 + 8;     // type, shard, replica
inline constexpr size_t kEntryKeySize = kReplicaKeySize + 8;  // ... and index
// Every value: CRC32C (4 bytes, little-endian) then the format version (1 byte).
inline constexpr size_t kValueHeaderSize = 4 + 1;
// Entry value after the header: entry type (1), term, key, client_id,
// series_id, responded_to (8 each); the command takes the rest.
inline constexpr size_t kEntryFixedSize = kValueHeaderSize + 1 + 5 * 8;
// Entries are stored at indexes 1 .. kMaxIndex; the all-ones index is kept
// free so that [0, kMaxIndex + 1) covers every entry of a replica.
inline constexpr raft::Index kMaxIndex = UINT64_MAX - 1;

// Key builders: replace the contents of `out` (its capacity is reused).
void EntryKey(raft::ShardId shard, raft::ReplicaId replica, raft::Index index, std::string* out);
void RecordKey(RecordType type, raft::ShardId shard, raft::ReplicaId replica, std::string* out);

// Parses a key of any record type. Returns false when `key` is not one.
struct ParsedKey {
  RecordType type = RecordType::kEntry;
  ReplicaKey replica;
  raft::Index index = 0;  // entries only
};
bool ParseKey(std::string_view key, ParsedKey* out);

// Value encoders: replace the contents of `out`; `key` is the record's key
// (it is covered by the checksum, never stored twice).
void EncodeEntry(std::string_view key, const raft::Entry& e, std::string* out);
void EncodeHardState(std::string_view key, const raft::HardState& hs, std::string* out);
void EncodeSnapshot(std::string_view key, const raft::SnapshotMeta& meta, std::string* out);
void EncodeBootstrap(std::string_view key, const Bootstrap& b, std::string* out);
void EncodeCompaction(std::string_view key, raft::Index index, raft::Term term, std::string* out);

// Decoders verify the checksum and the layout first. Failures are Corruption
// statuses that name shard, replica (and index for entries), never data.
Status DecodeEntry(std::string_view key, std::string_view value, raft::Entry* out);
// Reads only the term of an entry (still verifying the whole value).
Status DecodeEntryTerm(std::string_view key, std::string_view value, raft::Term* out);
Status DecodeHardState(std::string_view key, std::string_view value, raft::HardState* out);
Status DecodeSnapshot(std::string_view key, std::string_view value, raft::SnapshotMeta* out);
Status DecodeBootstrap(std::string_view key, std::string_view value, Bootstrap* out);
Status DecodeCompaction(std::string_view key, std::string_view value, raft::Index* index,
                        raft::Term* term);

// The bytes Entry::SizeBytes() accounts and the bytes one stored entry takes.
inline size_t EncodedEntrySize(const raft::Entry& e) { return kEntryFixedSize + e.cmd.size(); }

}  // namespace flotilla::logdb::format
