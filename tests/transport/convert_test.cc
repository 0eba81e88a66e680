// Conversion between raft::Message and the wire schema, and its validation.
#include <gtest/gtest.h>

#include "tests/transport/test_util.h"
#include "transport/convert.h"

namespace flotilla::transport {
namespace {

using testing::MakeAppend;
using testing::MakeInstall;

raft::Message RoundTrip(raft::Message m) {
  wire::Message w;
  ToWire(std::move(m), &w);
  std::string bytes = w.SerializeAsString();
  wire::Message parsed;
  EXPECT_TRUE(parsed.ParseFromString(bytes));
  raft::Message out;
  Status s = FromWire(&parsed, WireLimits{}, &out);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

TEST(ConvertTest, RoundTripsEveryField) {
  raft::Message m = MakeAppend(11, 1, 2, 42, "payload");
  m.reject = true;
  m.hint = 5;
  m.hint_term = 6;
  m.ctx = 77;
  m.entries[0].type = raft::EntryType::kConfChange;
  m.entries[0].client_id = 8;
  m.entries[0].series_id = 9;
  m.entries[0].responded_to = 10;
  raft::Message copy = m;
  EXPECT_EQ(RoundTrip(std::move(m)).entries, copy.entries);

  raft::Message snap = MakeInstall(3, 1, 2, 100);
  snap.snapshot.membership.voters_outgoing = {4};
  snap.snapshot.membership.non_voting = {5};
  snap.snapshot.membership.non_voting_next = {6};
  snap.snapshot.membership.witnesses = {3};
  snap.snapshot.membership.removed = {7, 8};
  snap.snapshot.membership.auto_leave = true;
  raft::Message got = RoundTrip(snap);
  EXPECT_EQ(got.snapshot, snap.snapshot);
  EXPECT_EQ(got.type, snap.type);
  EXPECT_EQ(got.shard_id, 3u);
  EXPECT_EQ(got.from, 1u);
  EXPECT_EQ(got.to, 2u);
}

TEST(ConvertTest, RejectsBadFields) {
  raft::Message out;
  wire::Message w;
  ToWire(MakeAppend(1, 1, 2, 5, "x"), &w);

  wire::Message bad = w;
  bad.set_type(static_cast<uint32_t>(raft::MessageType::kElection));  // local only
  EXPECT_EQ(FromWire(&bad, WireLimits{}, &out).code(), StatusCode::kInvalidArgument);
  // Forwarded proposals and reads do travel between hosts.
  bad.set_type(static_cast<uint32_t>(raft::MessageType::kPropose));
  EXPECT_TRUE(FromWire(&bad, WireLimits{}, &out).ok());
  bad = w;
  bad.set_type(static_cast<uint32_t>(raft::MessageType::kCheckQuorum));  // local only
  EXPECT_EQ(FromWire(&bad, WireLimits{}, &out).code(), StatusCode::kInvalidArgument);
  bad = w;
  bad.set_type(200);
  EXPECT_EQ(FromWire(&bad, WireLimits{}, &out).code(), StatusCode::kInvalidArgument);
  bad = w;
  bad.set_to(0);
  EXPECT_EQ(FromWire(&bad, WireLimits{}, &out).code(), StatusCode::kInvalidArgument);
  bad = w;
  bad.mutable_entries(0)->set_type(9);
  EXPECT_EQ(FromWire(&bad, WireLimits{}, &out).code(), StatusCode::kInvalidArgument);
  bad = w;
  for (int i = 0; i < 10; ++i) *bad.add_entries() = w.entries(0);
  EXPECT_EQ(FromWire(&bad, WireLimits{5, 10}, &out).code(), StatusCode::kInvalidArgument);
  bad = w;
  for (int i = 0; i < 11; ++i) bad.mutable_snapshot()->mutable_membership()->add_voters(i + 1);
  EXPECT_EQ(FromWire(&bad, WireLimits{5, 10}, &out).code(), StatusCode::kInvalidArgument);
}

TEST(ConvertTest, BadBatchAppendsNothing) {
  wire::MessageBatch b;
  ToWire(MakeAppend(1, 1, 2, 5, "x"), b.add_messages());
  ToWire(MakeAppend(1, 1, 2, 6, "y"), b.add_messages());
  b.mutable_messages(1)->set_from(0);
  std::vector<raft::Message> out(1);
  Status s = BatchFromWire(&b, WireLimits{}, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("message 1"), std::string::npos);
  EXPECT_EQ(out.size(), 1u);
}

TEST(ConvertTest, HeaderChecks) {
  wire::Header h;
  MakeHeader(7, "a:1", &h);
  EXPECT_TRUE(CheckHeader(h, 7).ok());
  Status s = CheckHeader(h, 8);
  EXPECT_EQ(s.code(), StatusCode::kRejected);
  EXPECT_NE(s.message().find("deployment id mismatch"), std::string::npos);
  h.set_protocol_version(kProtocolVersion + 1);
  EXPECT_EQ(CheckHeader(h, 7).code(), StatusCode::kRejected);
}

}  // namespace
}  // namespace flotilla::transport
