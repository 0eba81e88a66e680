// CRC32C (Castagnoli), used to checksum snapshot chunks and files on the wire.
// Uses the SSE4.2 instruction when the CPU has it, a table otherwise; both
// give the same result.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace flotilla::transport {

// Extends `crc` (the CRC32C of some earlier bytes, 0 for none) with `data`.
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t n);

inline uint32_t Crc32c(std::string_view data) { return Crc32cExtend(0, data.data(), data.size()); }

}  // namespace flotilla::transport
