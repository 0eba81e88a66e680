// Unit tests of the session registry that makes proposals exactly-once.
#include "engine/sessions.h"

#include <gtest/gtest.h>

namespace flotilla::engine {
namespace {

TEST(Sessions, DuplicateAnswersWithTheFirstResult) {
  Sessions s;
  s.Register(7);
  const Sessions::Result* cached = nullptr;
  ASSERT_EQ(s.Begin(7, 1, 0, &cached), Sessions::Check::kApply);
  s.Record(7, 1, {42, "first"});
  ASSERT_EQ(s.Begin(7, 1, 0, &cached), Sessions::Check::kDuplicate);
  EXPECT_EQ(cached->value, 42u);
  EXPECT_EQ(cached->data, "first");
  // Once the client acknowledged series 1, it is forgotten and cannot recur.
  ASSERT_EQ(s.Begin(7, 2, 1, &cached), Sessions::Check::kApply);
  EXPECT_EQ(s.Begin(7, 1, 1, &cached), Sessions::Check::kNoSession);
}

TEST(Sessions, UnknownAndClosedSessionsAreRefused) {
  Sessions s;
  const Sessions::Result* cached = nullptr;
  EXPECT_EQ(s.Begin(9, 1, 0, &cached), Sessions::Check::kNoSession);
  s.Register(9);
  s.Unregister(9);
  EXPECT_EQ(s.Begin(9, 1, 0, &cached), Sessions::Check::kNoSession);
}

TEST(Sessions, SerializeRoundTripsAndRejectsGarbage) {
  Sessions s;
  s.Register(1);
  s.Register(2);
  s.Record(1, 1, {10, "a"});
  s.Record(2, 5, {11, std::string("b\\0c", 3)});
  const std::string bytes = s.Serialize();
  Sessions back;
  ASSERT_TRUE(back.Deserialize(bytes).ok());
  EXPECT_EQ(back.Serialize(), bytes);
  const Sessions::Result* cached = nullptr;
  ASSERT_EQ(back.Begin(2, 5, 0, &cached), Sessions::Check::kDuplicate);
  EXPECT_EQ(cached->value, 11u);
  EXPECT_FALSE(back.Deserialize(bytes.substr(0, bytes.size() - 1)).ok());
  EXPECT_FALSE(back.Deserialize("garbage").ok());
}

TEST(Sessions, ALostResultRoundTripsAndFormatOneIsStillRead) {
  Sessions s;
  s.Register(3);
  s.Record(3, 1, {0, "", /*lost=*/true});
  s.Record(3, 2, {7, "kept"});
  Sessions back;
  ASSERT_TRUE(back.Deserialize(s.Serialize()).ok());
  const Sessions::Result* cached = nullptr;
  ASSERT_EQ(back.Begin(3, 1, 0, &cached), Sessions::Check::kDuplicate);
  EXPECT_TRUE(cached->lost);
  ASSERT_EQ(back.Begin(3, 2, 0, &cached), Sessions::Check::kDuplicate);
  EXPECT_FALSE(cached->lost);
  EXPECT_EQ(cached->data, "kept");
  // Format 1 (before results had flags), as snapshots taken then hold it:
  // format, order, one session (id 3, registered 1, responded 0, one
  // result: series 2, value 7, "kept").
  std::string v1;
  for (uint64_t w : {1, 1, 1, 3, 1, 0, 1, 2, 7, 4}) v1.append(reinterpret_cast<const char*>(&w), 8);
  v1 += "kept";
  ASSERT_TRUE(back.Deserialize(v1).ok());
  ASSERT_EQ(back.Begin(3, 2, 0, &cached), Sessions::Check::kDuplicate);
  EXPECT_EQ(cached->value, 7u);
  EXPECT_FALSE(cached->lost);
}

// A result length near 2^64 (a damaged or forged snapshot) is refused; it
// must never wrap the reader's position.
TEST(Sessions, AHugeResultLengthIsRefused) {
  std::string v2;
  for (uint64_t w : {2ull, 1ull, 1ull, 3ull, 1ull, 0ull, 1ull, 2ull, 7ull, 0ull, ~0ull})
    v2.append(reinterpret_cast<const char*>(&w), 8);
  v2 += "kept";
  Sessions back;
  EXPECT_EQ(back.Deserialize(v2).code(), StatusCode::kCorruption);
}

TEST(Sessions, RegistryIsBounded) {
  Sessions s;
  for (uint64_t id = 1; id <= Sessions::kMaxSessions + 10; ++id) s.Register(id);
  EXPECT_EQ(s.size(), Sessions::kMaxSessions);
  const Sessions::Result* cached = nullptr;
  EXPECT_EQ(s.Begin(1, 1, 0, &cached), Sessions::Check::kNoSession);  // the oldest went first
}

}  // namespace
}  // namespace flotilla::engine
