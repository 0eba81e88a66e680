// CRC32C (Castagnoli), the checksum of every LogDB record.
//
// Our own implementation: RocksDB's crc32c is internal to RocksDB and not part
// of its public API. Uses the SSE4.2 crc32 instruction when the CPU has it and
// a slicing-by-8 table otherwise; both give identical results.
//
// Thread-safety: pure functions; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace flotilla::logdb {

// Extends `crc` (the value returned for the preceding bytes, 0 to start) with
// `data`.
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t size);

inline uint32_t Crc32c(std::string_view data) { return Crc32cExtend(0, data.data(), data.size()); }

// The portable table path, exposed so tests can compare it with the hardware one.
uint32_t Crc32cExtendPortable(uint32_t crc, const void* data, size_t size);

}  // namespace flotilla::logdb
