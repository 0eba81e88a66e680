// Tests of the small pieces: Registry and CRC32C.
#include <gtest/gtest.h>

#include <string>

#include "transport/crc32c.h"
#include "transport/registry.h"

namespace flotilla::transport {
namespace {

TEST(RegistryTest, AddResolveRemove) {
  Registry r;
  EXPECT_FALSE(r.Resolve(1, 1).has_value());
  r.Add(1, 1, "a:1");
  r.Add(1, 2, "b:1");
  r.Add(2, 1, "a:1");
  EXPECT_EQ(r.Resolve(1, 2).value(), "b:1");
  r.Add(1, 2, "c:1");  // a replica moved
  EXPECT_EQ(r.Resolve(1, 2).value(), "c:1");
  r.Remove(1, 2);
  EXPECT_FALSE(r.Resolve(1, 2).has_value());
  r.RemoveShard(1);
  EXPECT_FALSE(r.Resolve(1, 1).has_value());
  EXPECT_EQ(r.Resolve(2, 1).value(), "a:1");
  EXPECT_EQ(r.size(), 1u);
}

TEST(RegistryTest, ResolveMany) {
  Registry r;
  r.Add(7, 1, "x");
  std::vector<std::string> got;
  r.ResolveMany(
      2,
      [](size_t i) {
        return std::pair<raft::ShardId, raft::ReplicaId>{7, i + 1};
      },
      [&](size_t, const std::string* a) { got.push_back(a ? *a : "-"); });
  EXPECT_EQ(got, (std::vector<std::string>{"x", "-"}));
}

TEST(Crc32cTest, KnownValues) {
  // Check values from RFC 3720, appendix B.4.
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  EXPECT_EQ(Crc32c(""), 0u);
}

TEST(Crc32cTest, ExtendComposes) {
  std::string s;
  for (int i = 0; i < 1000; ++i) s.push_back(static_cast<char>(i * 31));
  for (size_t split : {0u, 1u, 7u, 8u, 9u, 500u, 1000u}) {
    uint32_t c = Crc32cExtend(0, s.data(), split);
    c = Crc32cExtend(c, s.data() + split, s.size() - split);
    EXPECT_EQ(c, Crc32c(s)) << split;
  }
}

}  // namespace
}  // namespace flotilla::transport
