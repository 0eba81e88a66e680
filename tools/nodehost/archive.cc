#include "tools/nodehost/archive.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <string>

#include "logdb/crc32c.h"

namespace flotilla::nodehost {
namespace {

constexpr std::string_view kCrcPrefix = "CRC32C ";
constexpr std::string_view kArchivePrefix = "FLOTILLA-KV-ARCHIVE ";
// "CRC32C " + 8 hex digits + "\n".
constexpr size_t kTrailerBytes = 16;

std::string Hex8(uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof(buf), "%08" PRIx32, v);
  return buf;
}

}  // namespace

std::string EncodeArchive(const std::string& header_json, std::string_view state) {
  std::string out(kArchiveMagic);
  out.reserve(out.size() + header_json.size() + state.size() + 1 + kTrailerBytes);
  out.append(header_json);
  out.push_back('\n');
  out.append(state);
  const uint32_t crc = logdb::Crc32c(out);
  out.append(kCrcPrefix);
  out.append(Hex8(crc));
  out.push_back('\n');
  return out;
}

Result<DecodedArchive> DecodeArchive(std::string_view bytes) {
  const auto bad = [](const std::string& why) {
    return Status::Corruption("the archive is damaged: " + why +
                              "; it is not what `snapshot export` wrote: do not restore it, "
                              "use another copy or export again");
  };
  if (bytes.substr(0, kArchivePrefix.size()) != kArchivePrefix &&
      bytes.find(kCrcPrefix, bytes.size() < kTrailerBytes ? 0 : bytes.size() - kTrailerBytes) ==
          std::string_view::npos) {
    return Status::Corruption("not a nodehost archive (it neither starts with \"" +
                              std::string(kArchivePrefix) + "\" nor ends with a checksum)");
  }
  if (bytes.size() < kArchiveMagic.size() + kTrailerBytes) return bad("it is cut short");
  const std::string_view body = bytes.substr(0, bytes.size() - kTrailerBytes);
  const std::string_view trailer = bytes.substr(body.size());
  // Exactly 8 lowercase hex digits, as written: a flipped bit that turns
  // one digit into its upper case is a change too.
  const std::string_view hex = trailer.substr(kCrcPrefix.size(), 8);
  const bool digits = std::all_of(hex.begin(), hex.end(), [](char ch) {
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
  });
  if (trailer.substr(0, kCrcPrefix.size()) != kCrcPrefix || trailer.back() != '\n' || !digits)
    return bad("its last line is not a CRC32C checksum (cut short or changed)");
  const auto stored = static_cast<uint32_t>(std::stoul(std::string(hex), nullptr, 16));
  const uint32_t computed = logdb::Crc32c(body);
  if (computed != stored) {
    return bad("checksum mismatch (CRC32C stored " + Hex8(stored) + ", computed " + Hex8(computed) +
               " over " + std::to_string(body.size()) + " bytes)");
  }
  if (body.substr(0, kArchiveMagic.size()) != kArchiveMagic)
    return bad("an unknown format version");
  const std::string_view rest = body.substr(kArchiveMagic.size());
  const size_t nl = rest.find('\n');
  if (nl == std::string_view::npos) return bad("no header line");
  DecodedArchive out;
  out.header_json = std::string(rest.substr(0, nl));
  out.state = rest.substr(nl + 1);
  out.crc = stored;
  return out;
}

}  // namespace flotilla::nodehost
