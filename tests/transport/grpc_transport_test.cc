// The gRPC transport over real loopback: batches of many shards, deployment
// ids, unreachable peers and reconnection, control-message priority.
#include <gtest/gtest.h>

#include <map>
#include <thread>

#include "tests/transport/grpc_test_util.h"

namespace flotilla::transport {
namespace {

using namespace std::chrono_literals;
using testing::FastConfig;
using testing::LogCapture;
using testing::MakeAppend;
using testing::MakeHeartbeat;
using testing::Node;
using testing::TempDir;

class GrpcTransportTest : public ::testing::Test {
 protected:
  std::unique_ptr<Node> StartNode(TransportConfig c) {
    auto n = std::make_unique<Node>(std::move(c), &registry_);
    Status s = n->transport->Start();
    EXPECT_TRUE(s.ok()) << s.ToString();
    return n;
  }
  TempDir tmp_;
  Registry registry_;
};

TEST_F(GrpcTransportTest, ThousandShardsDeliveredInOrderPerShard) {
  TransportConfig ca = FastConfig(tmp_.Sub("a"));
  TransportConfig cb = FastConfig(tmp_.Sub("b"));
  ca.max_queue_messages = 1u << 20;  // this test checks delivery, not drops
  ca.max_batch_bytes = 64u << 10;
  auto a = StartNode(ca);
  auto b = StartNode(cb);
  constexpr raft::ShardId kShards = 1000;
  constexpr raft::Index kPerShard = 20;
  for (raft::ShardId s = 1; s <= kShards; ++s) {
    registry_.Add(s, 1, a->transport->address());
    registry_.Add(s, 2, b->transport->address());
  }
  // Half through Send, half through SendBatch, heartbeats mixed in.
  std::vector<raft::Message> pass;
  std::vector<DroppedTarget> dropped;
  for (raft::Index i = 1; i <= kPerShard; ++i) {
    for (raft::ShardId s = 1; s <= kShards; ++s) {
      std::string payload(16, static_cast<char>('a' + s % 26));
      raft::Message m = MakeAppend(s, 1, 2, i, payload);
      if (i % 2 == 0) {
        ASSERT_TRUE(a->transport->Send(std::move(m)));
      } else {
        pass.push_back(std::move(m));
      }
      if (i == kPerShard) pass.push_back(MakeHeartbeat(s, 1, 2));
    }
    a->transport->SendBatch(pass, &dropped);
    ASSERT_TRUE(pass.empty());
  }
  ASSERT_TRUE(dropped.empty());
  const size_t total = kShards * (kPerShard + 1);
  ASSERT_TRUE(b->handler.WaitFor([&] { return b->handler.messages().size() == total; }))
      << b->handler.MessageCount();
  std::lock_guard lock(b->handler.mu());
  std::map<raft::ShardId, raft::Index> last;
  size_t heartbeats = 0;
  for (const raft::Message& m : b->handler.messages()) {
    EXPECT_EQ(m.to, 2u);
    EXPECT_EQ(m.from, 1u);
    if (m.type == raft::MessageType::kHeartbeat) {
      ++heartbeats;
      continue;
    }
    ASSERT_EQ(m.entries.size(), 1u);
    EXPECT_EQ(m.entries[0].cmd, std::string(16, static_cast<char>('a' + m.shard_id % 26)));
    EXPECT_EQ(m.entries[0].index, last[m.shard_id] + 1) << "shard " << m.shard_id;
    last[m.shard_id] = m.entries[0].index;
  }
  EXPECT_EQ(heartbeats, kShards);
  EXPECT_EQ(last.size(), kShards);
  // Coalesced: far fewer batches than messages.
  EXPECT_LT(b->handler.batches(), total / 10);
}

// A quiescing leader's last heartbeats and its Quiesce often leave in one
// pass. The heartbeats travel in the batch's coalesced columns, which the
// receiver decodes after the batch's other messages: a Quiesce packed with an
// earlier heartbeat of its shard arrived before it, and the heartbeat woke
// the follower it had just quiesced (the shard cycled quiesce, wake,
// pre-vote). Per shard, the Quiesce must arrive last.
TEST_F(GrpcTransportTest, AQuiesceIsNeverOvertakenByAnEarlierHeartbeat) {
  auto a = StartNode(FastConfig(tmp_.Sub("a")));
  auto b = StartNode(FastConfig(tmp_.Sub("b")));
  constexpr raft::ShardId kShards = 200;
  std::vector<raft::Message> pass;
  for (raft::ShardId s = 1; s <= kShards; ++s) {
    registry_.Add(s, 2, b->transport->address());
    pass.push_back(MakeHeartbeat(s, 1, 2));
    raft::Message q;
    q.type = raft::MessageType::kQuiesce;
    q.shard_id = s;
    q.from = 1;
    q.to = 2;
    q.term = 5;
    pass.push_back(std::move(q));
  }
  std::vector<DroppedTarget> dropped;
  a->transport->SendBatch(pass, &dropped);
  ASSERT_TRUE(dropped.empty());
  ASSERT_TRUE(b->handler.WaitFor([&] { return b->handler.messages().size() == 2 * kShards; }))
      << b->handler.MessageCount();
  std::lock_guard lock(b->handler.mu());
  std::map<raft::ShardId, raft::MessageType> last;
  for (const raft::Message& m : b->handler.messages()) last[m.shard_id] = m.type;
  ASSERT_EQ(last.size(), kShards);
  for (const auto& [shard, type] : last) {
    EXPECT_EQ(raft::MessageTypeName(type), raft::MessageTypeName(raft::MessageType::kQuiesce))
        << "shard " << shard << ": the heartbeat sent before the Quiesce arrived after it";
  }
}

TEST_F(GrpcTransportTest, OtherDeploymentIsRefused) {
  LogCapture log;
  auto a = StartNode(FastConfig(tmp_.Sub("a"), 1));
  auto b = StartNode(FastConfig(tmp_.Sub("b"), 2));
  registry_.Add(1, 2, b->transport->address());
  ASSERT_TRUE(a->handler.WaitFor([&] {
    // Keep sending until the sender learns the peer is unreachable.
    a->handler.mu().unlock();
    bool sent = a->transport->Send(MakeHeartbeat(1, 1, 2));
    (void)sent;
    a->handler.mu().lock();
    return !a->handler.unreachable().empty();
  }));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(b->handler.MessageCount(), 0u);
  EXPECT_TRUE(log.Contains("deployment id mismatch")) << "no clear log line";
  EXPECT_TRUE(log.Contains("refused"));
}

// Sends heartbeats from `from` to shard 1 replica 2 until `pred` holds.
bool SendUntil(Node& from, testing::RecordingHandler& watch, const std::function<bool()>& pred) {
  for (int i = 0; i < 400; ++i) {
    (void)from.transport->Send(MakeHeartbeat(1, 1, 2));
    if (watch.WaitFor(pred, 50ms)) return true;
  }
  return false;
}

TEST_F(GrpcTransportTest, StoppedPeerIsUnreachableAndReachedAgain) {
  auto a = StartNode(FastConfig(tmp_.Sub("a")));
  auto b = StartNode(FastConfig(tmp_.Sub("b")));
  const std::string b_address = b->transport->address();
  registry_.Add(1, 2, b_address);
  ASSERT_TRUE(SendUntil(*a, b->handler, [&] { return !b->handler.messages().empty(); }));
  EXPECT_TRUE(a->handler.WaitFor([&] { return !a->handler.ups().empty(); }));

  b.reset();  // stops the peer
  ASSERT_TRUE(SendUntil(*a, a->handler, [&] { return !a->handler.unreachable().empty(); }));
  {
    std::lock_guard lock(a->handler.mu());
    EXPECT_EQ(a->handler.unreachable()[0], (std::pair<raft::ShardId, raft::ReplicaId>{1, 2}));
  }
  EXPECT_TRUE(a->handler.WaitFor([&] { return !a->handler.downs().empty(); }));

  TransportConfig cb = FastConfig(tmp_.Sub("b"));
  cb.listen_address = b_address;  // the same NodeHost comes back
  b = StartNode(cb);
  ASSERT_TRUE(SendUntil(*a, b->handler, [&] { return !b->handler.messages().empty(); }));
  EXPECT_TRUE(a->handler.WaitFor([&] { return a->handler.ups().size() >= 2; }));
}

TEST_F(GrpcTransportTest, UnknownAddressAndFullQueueAreDropped) {
  TransportConfig ca = FastConfig(tmp_.Sub("a"));
  ca.max_queue_messages = 4;
  ca.connect_timeout_ms = 2000;
  auto a = StartNode(ca);
  EXPECT_FALSE(a->transport->Send(MakeHeartbeat(1, 1, 2)));  // no address
  // A port nobody listens on: the lane is stuck connecting, the queue fills.
  registry_.Add(1, 2, "127.0.0.1:1");
  int accepted = 0;
  for (int i = 0; i < 20; ++i) accepted += a->transport->Send(MakeHeartbeat(1, 1, 2)) ? 1 : 0;
  EXPECT_LT(accepted, 20);
  EXPECT_TRUE(a->handler.WaitFor([&] { return !a->handler.unreachable().empty(); }));
}

TEST_F(GrpcTransportTest, ControlMessagesDoNotWaitBehindAppends) {
  TransportConfig ca = FastConfig(tmp_.Sub("a"));
  ca.max_queue_bytes = 512u << 20;
  auto a = StartNode(ca);
  auto b = StartNode(FastConfig(tmp_.Sub("b")));
  registry_.Add(1, 2, b->transport->address());
  ASSERT_TRUE(SendUntil(*a, b->handler, [&] { return !b->handler.messages().empty(); }));
  // The receiver stalls on appends: the data lane backs up behind them, and
  // the vote must still arrive, on its own lane. (Deterministic: it does not
  // depend on how the two lanes' threads are scheduled.)
  b->handler.HoldAppends(true);
  constexpr int kAppends = 96;
  for (int i = 1; i <= kAppends; ++i) {
    ASSERT_TRUE(a->transport->Send(
        MakeAppend(1, 1, 2, static_cast<raft::Index>(i), std::string(1u << 20, 'x'))));
  }
  raft::Message vote;
  vote.type = raft::MessageType::kRequestVote;
  vote.shard_id = 1;
  vote.from = 1;
  vote.to = 2;
  ASSERT_TRUE(a->transport->Send(std::move(vote)));
  const bool vote_arrived = b->handler.WaitFor([&] {
    for (auto& m : b->handler.messages()) {
      if (m.type == raft::MessageType::kRequestVote) return true;
    }
    return false;
  });
  b->handler.HoldAppends(false);
  ASSERT_TRUE(vote_arrived) << "the vote waited behind the stalled appends";
  ASSERT_TRUE(b->handler.WaitFor([&] {
    size_t appends = 0;
    for (auto& m : b->handler.messages()) appends += m.type == raft::MessageType::kReplicate;
    return appends == kAppends;
  }));
  std::lock_guard lock(b->handler.mu());
  size_t appends_before_vote = 0;
  for (auto& m : b->handler.messages()) {
    if (m.type == raft::MessageType::kRequestVote) break;
    appends_before_vote += m.type == raft::MessageType::kReplicate;
  }
  // The vote was sent after 96 MiB of appends and overtook all of them.
  EXPECT_EQ(appends_before_vote, 0u);
}

TEST_F(GrpcTransportTest, StoppedTransportStartsAgain) {
  auto a = StartNode(FastConfig(tmp_.Sub("a")));
  auto b = StartNode(FastConfig(tmp_.Sub("b")));
  b->transport->Stop();
  EXPECT_FALSE(b->transport->Send(MakeHeartbeat(1, 2, 1)));
  ASSERT_TRUE(b->transport->Start().ok());
  registry_.Add(1, 2, b->transport->address());
  EXPECT_TRUE(SendUntil(*a, b->handler, [&] { return !b->handler.messages().empty(); }));
}

TEST_F(GrpcTransportTest, BadListenAddressFails) {
  TransportConfig c = FastConfig(tmp_.Sub("a"));
  c.listen_address = "256.1.1.1:1";
  Node n(c, &registry_);
  EXPECT_FALSE(n.transport->Start().ok());
}

}  // namespace
}  // namespace flotilla::transport
