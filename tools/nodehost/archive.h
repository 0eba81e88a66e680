// The backup archive of one shard (`nodehost snapshot export`, `verify`,
// `restore`; docs/operations.md, "Backup and restore"):
//
//   FLOTILLA-KV-ARCHIVE 1\n
//   {one line of JSON: shard, node, replica, applied_index, term, members,
//    keys, state_bytes, exported_at, nodehost_version}\n
//   state: state_bytes bytes, the key-value state machine's snapshot stream
//   CRC32C xxxxxxxx\n   (of every byte before this line, 8 hex digits)
//
// The header says what the archive holds without reading the rest
// (`head -2 FILE`); the checksum is checked before anything else is read,
// so a changed byte anywhere, a flipped bit included, refuses the archive.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "flotilla/status.h"

namespace flotilla::nodehost {

inline constexpr std::string_view kArchiveMagic = "FLOTILLA-KV-ARCHIVE 1\n";

// `header_json`: one line of JSON (no newline in it). Returns the archive.
std::string EncodeArchive(const std::string& header_json, std::string_view state);

struct DecodedArchive {
  std::string header_json;
  std::string_view state;  // into the bytes given to DecodeArchive
  uint32_t crc = 0;
};

// Checks the checksum, then the layout. Corruption naming what is wrong.
Result<DecodedArchive> DecodeArchive(std::string_view bytes);

}  // namespace flotilla::nodehost
