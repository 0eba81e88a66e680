// SnapshotChunker: turns a SnapshotSource into the chunk sequence that a
// SnapshotReceiver verifies (data chunks with their checksums, one empty
// chunk closing each file with the file's checksum, and a last chunk with the
// totals). Both transports use it, so that both send the same stream.
//
// Thread-safety: not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "transport/snapshot_receiver.h"
#include "transport/transport.h"

namespace flotilla::transport {

class SnapshotChunker {
 public:
  // `source` must outlive the chunker.
  SnapshotChunker(SnapshotSource* source, size_t chunk_bytes);

  // Fills *chunk with the next chunk; its views stay valid until the next
  // call. Returns false once the last chunk has been returned.
  Result<bool> Next(ChunkData* chunk);

 private:
  SnapshotSource* const source_;
  const size_t chunk_bytes_;
  bool done_ = false;
  bool in_file_ = false;
  std::string file_name_;
  std::string buffer_;
  uint64_t file_offset_ = 0;
  uint32_t file_crc_ = 0;
  uint64_t total_bytes_ = 0;
  uint32_t file_count_ = 0;
};

}  // namespace flotilla::transport
