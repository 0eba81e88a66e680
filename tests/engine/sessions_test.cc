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

TEST(Sessions, RegistryIsBounded) {
  Sessions s;
  for (uint64_t id = 1; id <= Sessions::kMaxSessions + 10; ++id) s.Register(id);
  EXPECT_EQ(s.size(), Sessions::kMaxSessions);
  const Sessions::Result* cached = nullptr;
  EXPECT_EQ(s.Begin(1, 1, 0, &cached), Sessions::Check::kNoSession);  // the oldest went first
}

}  // namespace
}  // namespace flotilla::engine
