// Conversion between raft::Message and the wire schema, and its validation.
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>

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
  snap.snapshot.membership.contexts = {{1, "host1:7100"}, {2, "host2:7100"}};
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
  // A member's context is an address: bounded in count and in length.
  bad = w;
  for (uint64_t i = 1; i <= 11; ++i) {
    (*bad.mutable_snapshot()->mutable_membership()->mutable_contexts())[i] = "h";
  }
  EXPECT_EQ(FromWire(&bad, WireLimits{5, 10}, &out).code(), StatusCode::kInvalidArgument);
  bad = w;
  (*bad.mutable_snapshot()->mutable_membership()->mutable_contexts())[1] = std::string(5000, 'h');
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

raft::Message Heartbeat(uint64_t shard, bool response) {
  raft::Message m;
  m.type = response ? raft::MessageType::kHeartbeatResp : raft::MessageType::kHeartbeat;
  m.shard_id = shard;
  m.from = 1 + shard % 3;
  m.to = 2 + shard % 3;
  m.term = 7 + shard;
  m.commit = 1000 + shard;
  m.ctx = 3 * shard;
  m.reject = response && shard % 5 == 0;
  return m;
}

TEST(ConvertTest, CoalescedHeartbeatsRoundTripAndAreSmaller) {
  wire::MessageBatch coalesced;
  wire::MessageBatch plain;
  std::vector<raft::Message> sent;
  for (uint64_t s = 1; s <= 1000; ++s) {
    sent.push_back(Heartbeat(s, s % 2 == 0));
    ASSERT_TRUE(CanCoalesce(sent.back()));
    AppendHeartbeat(sent.back(), coalesced.mutable_heartbeats());
    ToWire(raft::Message(sent.back()), plain.add_messages());
  }
  ToWire(MakeAppend(9, 1, 2, 5, "x"), coalesced.add_messages());
  wire::MessageBatch parsed;
  ASSERT_TRUE(parsed.ParseFromString(coalesced.SerializeAsString()));
  std::vector<raft::Message> out;
  ASSERT_TRUE(BatchFromWire(&parsed, WireLimits{}, &out).ok());
  ASSERT_EQ(out.size(), 1001u);
  EXPECT_EQ(out[0].type, raft::MessageType::kReplicate);  // messages first, then heartbeats
  for (size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(out[i + 1], sent[i]) << i;
  // The point of coalescing: far fewer bytes per heartbeat on the wire.
  const size_t per_plain = plain.ByteSizeLong() / 1000;
  const size_t per_coalesced = (coalesced.ByteSizeLong() - 20) / 1000;
  std::printf("bytes per heartbeat on the wire: plain %zu, coalesced %zu\n", per_plain,
              per_coalesced);
  EXPECT_LT(per_coalesced * 3, per_plain * 2) << per_coalesced << " vs " << per_plain;
}

TEST(ConvertTest, OnlyBareHeartbeatsAreCoalesced) {
  raft::Message m = Heartbeat(1, false);
  m.log_index = 3;
  EXPECT_FALSE(CanCoalesce(m));
  EXPECT_FALSE(CanCoalesce(MakeAppend(1, 1, 2, 5, "x")));
  raft::Message vote = Heartbeat(1, false);
  vote.type = raft::MessageType::kRequestVote;
  EXPECT_FALSE(CanCoalesce(vote));
}

// A heartbeat flood: millions of coalesced heartbeats in one batch cost
// little on the wire and a lot decoded; the batch is refused before any is
// decoded (issue 14: 4,000,000 of them raised a NodeHost's memory by 1.2 GiB).
TEST(ConvertTest, ABatchOfTooManyMessagesIsRefusedBeforeDecoding) {
  WireLimits limits;
  wire::MessageBatch b;
  for (size_t i = 0; i <= limits.max_messages_per_batch; ++i) {
    AppendHeartbeat(Heartbeat(1 + i, false), b.mutable_heartbeats());
  }
  std::vector<raft::Message> out;
  Status s = BatchFromWire(&b, limits, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(out.capacity(), 0u);
  // At the bound it decodes.
  b.mutable_heartbeats()->Clear();
  for (size_t i = 0; i < limits.max_messages_per_batch; ++i) {
    AppendHeartbeat(Heartbeat(1 + i, false), b.mutable_heartbeats());
  }
  EXPECT_TRUE(BatchFromWire(&b, limits, &out).ok());
  EXPECT_EQ(out.size(), limits.max_messages_per_batch);
}

TEST(ConvertTest, MalformedCoalescedHeartbeatsAreRejected) {
  auto check = [](const std::function<void(wire::Heartbeats*)>& damage, const char* what) {
    wire::MessageBatch b;
    AppendHeartbeat(Heartbeat(1, false), b.mutable_heartbeats());
    AppendHeartbeat(Heartbeat(2, true), b.mutable_heartbeats());
    damage(b.mutable_heartbeats());
    std::vector<raft::Message> out(1);
    Status s = BatchFromWire(&b, WireLimits{}, &out);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << what;
    EXPECT_EQ(out.size(), 1u) << what;
  };
  check([](wire::Heartbeats* h) { h->mutable_ctx()->RemoveLast(); }, "short column");
  check([](wire::Heartbeats* h) { h->set_to(1, 0); }, "zero replica");
  check([](wire::Heartbeats* h) { h->set_shard_id(0, 0); }, "zero shard");
  check([](wire::Heartbeats* h) { h->set_flags(0, 8); }, "unknown flag");
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
