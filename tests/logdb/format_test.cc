// Record format and checksum: known answers, round trips, damage detection.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "logdb/crc32c.h"
#include "logdb/format.h"
#include "tests/logdb/test_util.h"

namespace flotilla::logdb {
namespace {

TEST(Crc32c, KnownAnswers) {
  // Check values of the CRC-32C catalogue and RFC 3720 (iSCSI).
  EXPECT_EQ(Crc32c("123456789"), 0xe3069283u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8a9136aau);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62a8ab43u);
  EXPECT_EQ(Crc32c(""), 0u);
}

TEST(Crc32c, HardwareAndPortableAgreeAndExtendIsAssociative) {
  std::mt19937_64 rng(7);
  for (size_t n : {0u, 1u, 7u, 8u, 9u, 63u, 64u, 1000u, 4097u}) {
    std::string data(n, '\0');
    for (char& c : data) c = static_cast<char>(rng());
    const uint32_t whole = Crc32c(data);
    EXPECT_EQ(whole, Crc32cExtendPortable(0, data.data(), data.size())) << n;
    const size_t cut = n / 3;
    EXPECT_EQ(whole, Crc32cExtend(Crc32cExtend(0, data.data(), cut), data.data() + cut, n - cut))
        << n;
  }
}

TEST(Format, KeysSortByTypeShardReplicaIndex) {
  std::string a;
  std::string b;
  format::EntryKey(1, 2, 255, &a);
  format::EntryKey(1, 2, 256, &b);
  EXPECT_LT(a, b);
  format::EntryKey(1, 3, 0, &b);
  EXPECT_LT(a, b);
  format::EntryKey(2, 0, 0, &b);
  EXPECT_LT(a, b);
  format::RecordKey(format::RecordType::kHardState, 0, 0, &b);
  EXPECT_LT(a, b);
  EXPECT_EQ(a.size(), format::kEntryKeySize);
  EXPECT_EQ(b.size(), format::kReplicaKeySize);
  format::ParsedKey k;
  ASSERT_TRUE(format::ParseKey(a, &k));
  EXPECT_EQ(k.type, format::RecordType::kEntry);
  EXPECT_EQ(k.replica, (ReplicaKey{1, 2}));
  EXPECT_EQ(k.index, 255u);
  EXPECT_FALSE(format::ParseKey(a.substr(1), &k));
}

TEST(Format, EntryRangeStartSitsBetweenTwoEntriesAndIsNeverARecordKey) {
  std::string start;
  std::string below;
  std::string at;
  for (raft::Index lo : {raft::Index{1}, raft::Index{2}, raft::Index{256}, format::kMaxIndex}) {
    format::EntryRangeStart(4, 5, lo, &start);
    format::EntryKey(4, 5, lo - 1, &below);
    format::EntryKey(4, 5, lo, &at);
    EXPECT_LT(below, start) << lo;
    EXPECT_LT(start, at) << lo;
    // Its length is neither an entry key's nor a record key's, so RocksDB's
    // insert hints (keyed on those) never see it.
    EXPECT_EQ(start.size(), format::kEntryRangeStartSize);
    EXPECT_NE(start.size(), format::kEntryKeySize);
    EXPECT_NE(start.size(), format::kReplicaKeySize);
  }
  // From index 0: every entry of the replica, nothing of the one before.
  format::EntryRangeStart(4, 5, 0, &start);
  format::EntryKey(4, 5, 1, &at);
  format::EntryKey(4, 4, format::kMaxIndex, &below);
  EXPECT_LT(below, start);
  EXPECT_LT(start, at);
}

// Decodes a whole batch; the first error, if any.
Status ReadBatch(std::string_view key, std::string_view value, std::vector<raft::Entry>* out) {
  format::EntryBatchReader reader;
  FLOTILLA_RETURN_IF_ERROR(reader.Open(key, value));
  while (!reader.done()) {
    raft::Entry e;
    FLOTILLA_RETURN_IF_ERROR(reader.Next(&e));
    out->push_back(std::move(e));
  }
  return Status::Ok();
}

TEST(Format, EveryBitOfAnEntryBatchIsCovered) {
  const auto entries = testing::MakeEntries(9, 11, 4, 20);
  std::string key;
  std::string value;
  format::EntryKey(3, 4, 9, &key);
  format::EncodeEntryBatch(key, entries, &value);
  std::vector<raft::Entry> back;
  ASSERT_TRUE(ReadBatch(key, value, &back).ok());
  EXPECT_EQ(back, entries);
  const size_t header_bits = format::kBatchHeaderSize * 8;
  for (size_t bit = 0; bit < value.size() * 8; ++bit) {
    std::string damaged = value;
    damaged[bit / 8] = static_cast<char>(damaged[bit / 8] ^ (1 << (bit % 8)));
    back.clear();
    Status s = ReadBatch(key, damaged, &back);
    ASSERT_EQ(s.code(), StatusCode::kCorruption) << bit;
    EXPECT_EQ(s.message().rfind("shard 3 replica 4 index ", 0), 0u) << s.message();
    // A damaged entry is never handed out: only the ones before it are.
    if (bit >= header_bits) {
      EXPECT_LT(back.size(), entries.size());
    }
    for (size_t i = 0; i + 1 < back.size(); ++i) EXPECT_EQ(back[i], entries[i]);
  }
  // A valid batch under another key (a misdirected write) fails too.
  std::string other;
  format::EntryKey(3, 4, 10, &other);
  back.clear();
  EXPECT_EQ(ReadBatch(other, value, &back).code(), StatusCode::kCorruption);
  back.clear();
  EXPECT_EQ(ReadBatch(key, value.substr(0, value.size() - 1), &back).code(),
            StatusCode::kCorruption);
}

TEST(Format, OtherRecordsRoundTripAndDetectDamage) {
  std::string key;
  std::string value;
  format::RecordKey(format::RecordType::kSnapshot, 1, 1, &key);
  raft::SnapshotMeta meta;
  meta.index = 10;
  meta.term = 2;
  meta.membership.voters = {1, 2};
  meta.membership.voters_outgoing = {3};
  meta.membership.non_voting = {4};
  meta.membership.non_voting_next = {5};
  meta.membership.witnesses = {2};
  meta.membership.removed = {9, 11};
  meta.membership.auto_leave = true;
  meta.membership.contexts = {{1, "host1:7100"}, {2, std::string(300, 'a')}};
  format::EncodeSnapshot(key, meta, &value);
  raft::SnapshotMeta back;
  ASSERT_TRUE(format::DecodeSnapshot(key, value, &back).ok());
  EXPECT_EQ(back, meta);
  // A record written before contexts existed ends after the id lists: it
  // reads as a membership without contexts.
  {
    raft::SnapshotMeta old = meta;
    old.membership.contexts.clear();
    std::string v;
    format::EncodeSnapshot(key, old, &v);  // ... u32 count = 0 at the end
    v.resize(v.size() - 4);
    // Re-seal: the checksum covers the key and the rest of the value.
    const uint32_t crc =
        Crc32cExtend(Crc32cExtend(0, key.data(), key.size()), v.data() + 4, v.size() - 4);
    for (int b = 0; b < 4; ++b) v[static_cast<size_t>(b)] = static_cast<char>(crc >> (8 * b));
    raft::SnapshotMeta got;
    ASSERT_TRUE(format::DecodeSnapshot(key, v, &got).ok());
    EXPECT_EQ(got, old);
  }
  value[value.size() - 1] ^= 1;
  EXPECT_EQ(format::DecodeSnapshot(key, value, &back).code(), StatusCode::kCorruption);

  format::RecordKey(format::RecordType::kHardState, 1, 1, &key);
  format::EncodeHardState(key, raft::HardState{5, 6, 7}, &value);
  raft::HardState hs;
  ASSERT_TRUE(format::DecodeHardState(key, value, &hs).ok());
  EXPECT_EQ(hs, (raft::HardState{5, 6, 7}));
  value[6] ^= 4;
  Status s = format::DecodeHardState(key, value, &hs);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("shard 1 replica 1"), std::string::npos);
}

}  // namespace
}  // namespace flotilla::logdb
