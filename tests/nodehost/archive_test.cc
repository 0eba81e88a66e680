// The backup archive: what EncodeArchive writes DecodeArchive gives back,
// and a change of any one bit anywhere in it is refused.
#include "tools/nodehost/archive.h"

#include <gtest/gtest.h>

#include <string>

namespace flotilla::nodehost {
namespace {

TEST(Archive, RoundTripsItsHeaderAndState) {
  const std::string state("FKVSNAP1\x05\0\0\0\0\0\0\0 any bytes\n\0", 29);
  const std::string a = EncodeArchive(R"({"shard":1})", state);
  EXPECT_EQ(a.substr(0, kArchiveMagic.size()), kArchiveMagic);
  Result<DecodedArchive> d = DecodeArchive(a);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->header_json, R"({"shard":1})");
  EXPECT_EQ(d->state, state);
}

TEST(Archive, EveryFlippedBitIsRefused) {
  const std::string a = EncodeArchive(R"({"shard":1,"keys":2})", "FKVSNAP1 state bytes");
  for (size_t byte = 0; byte < a.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = a;
      flipped[byte] = static_cast<char>(flipped[byte] ^ (1 << bit));
      Result<DecodedArchive> d = DecodeArchive(flipped);
      ASSERT_FALSE(d.ok()) << "byte " << byte << " bit " << bit;
      EXPECT_EQ(d.status().code(), StatusCode::kCorruption);
    }
  }
}

TEST(Archive, ACutShortOrForeignFileIsRefusedWithTheReason) {
  const std::string a = EncodeArchive("{}", "state");
  Result<DecodedArchive> d = DecodeArchive(a.substr(0, a.size() - 1));
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("the archive is damaged"), std::string::npos)
      << d.status().message();
  d = DecodeArchive("just some text\n");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("not a nodehost archive"), std::string::npos)
      << d.status().message();
  d = DecodeArchive(a.substr(0, a.size() - 16) + "CRC32C 00000000\n");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("checksum mismatch"), std::string::npos);
}

}  // namespace
}  // namespace flotilla::nodehost
