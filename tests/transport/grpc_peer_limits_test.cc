// The per-peer bounds of incoming Batches streams over real loopback gRPC
// (issue 14, "Bounded cost per peer"): how many streams one peer holds open,
// and how many bytes of its batches are in flight (read, not yet handed to
// the engine). The excess of one peer is refused, counted and logged, while
// another peer still gets through.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <thread>

#include "proto/raft.grpc.pb.h"
#include "tests/transport/grpc_test_util.h"
#include "transport/convert.h"

namespace flotilla::transport {
namespace {

using namespace std::chrono_literals;
using testing::FastConfig;
using testing::LogCapture;
using testing::MakeAppend;
using testing::MakeHeartbeat;
using testing::Node;
using testing::TempDir;

// A Batches stream opened by hand, as any client of the raft port can:
// its header names `source` (the peer's identity without TLS).
class RawBatchStream {
 public:
  RawBatchStream(const std::string& address, const std::string& source)
      : stub_(
            wire::Raft::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))) {
    // A stream the receiver neither refuses nor serves must not hang the test.
    ctx_.set_deadline(std::chrono::system_clock::now() + 10s);
    stream_ = stub_->Batches(&ctx_);
    wire::MessageBatch header;
    MakeHeader(1, source, header.mutable_header());
    wire::BatchAck ack;
    accepted_ = stream_->Write(header) && stream_->Read(&ack) && ack.accepted();
  }
  ~RawBatchStream() { ctx_.TryCancel(); }
  bool accepted() const { return accepted_; }
  bool Send(std::vector<raft::Message> messages) {
    wire::MessageBatch b;
    for (raft::Message& m : messages) ToWire(std::move(m), b.add_messages());
    return stream_->Write(b);
  }
  // Closes this side and waits for the receiver to end the stream.
  grpc::Status Finish() {
    stream_->WritesDone();
    wire::BatchAck ack;
    while (stream_->Read(&ack)) {
    }
    return stream_->Finish();
  }

 private:
  std::unique_ptr<wire::Raft::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<wire::MessageBatch, wire::BatchAck>> stream_;
  bool accepted_ = false;
};

class GrpcPeerLimitsTest : public ::testing::Test {
 protected:
  void Start(TransportConfig c) {
    node_ = std::make_unique<Node>(std::move(c), &registry_);
    ASSERT_TRUE(node_->transport->Start().ok());
    address_ = node_->transport->address();
  }
  // Waits until `n` batches are held in the engine (HoldAppends).
  bool WaitHeld(size_t n) {
    for (int i = 0; i < 250 && node_->handler.Held() < n; ++i) std::this_thread::sleep_for(20ms);
    return node_->handler.Held() == n;
  }
  TempDir tmp_;
  Registry registry_;
  std::unique_ptr<Node> node_;
  std::string address_;
};

// Before, a peer could open Batches streams without end: each holds a
// gRPC stream and may have a batch of up to max_receive_message_bytes
// decoded at once.
TEST_F(GrpcPeerLimitsTest, OnePeerHoldsAtMostItsQuotaOfBatchStreams) {
  TransportConfig c = FastConfig(tmp_.Sub("b"));
  c.batch_receive.max_streams_per_peer = 2;
  Start(c);
  LogCapture log;
  auto a1 = std::make_unique<RawBatchStream>(address_, "peer-a:1");
  RawBatchStream a2(address_, "peer-a:1");
  ASSERT_TRUE(a1->accepted() && a2.accepted());
  RawBatchStream a3(address_, "peer-a:1");
  EXPECT_FALSE(a3.accepted()) << "a third stream of one peer was accepted";
  const grpc::Status st = a3.Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  EXPECT_EQ(node_->handler.Refused(StreamRefusal::kPeerBatchStreams), 1u);
  EXPECT_TRUE(log.Contains("peer_batch_streams")) << "the refusal is logged";

  // Another peer still gets through, and so do its messages.
  RawBatchStream b1(address_, "peer-b:1");
  ASSERT_TRUE(b1.accepted());
  ASSERT_TRUE(b1.Send({MakeHeartbeat(1, 5, 2)}));
  EXPECT_TRUE(node_->handler.WaitFor([&] { return node_->handler.messages().size() == 1; }));

  // A stream the peer closes gives its place back (the receiver learns of
  // the close a moment later).
  (void)a1->Finish();
  a1.reset();
  bool again = false;
  for (int i = 0; i < 100 && !again; ++i) {
    again = RawBatchStream(address_, "peer-a:1").accepted();
    if (!again) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(again);
}

// Before, nothing bounded the bytes one peer had in flight over its streams
// at once: with one batch blocked in the engine, its other streams' batches
// were decoded and queued behind it as well.
TEST_F(GrpcPeerLimitsTest, APeersBatchesInFlightAreBounded) {
  TransportConfig c = FastConfig(tmp_.Sub("b"));
  c.batch_receive.max_inflight_bytes_per_peer = 256u << 10;
  Start(c);
  LogCapture log;
  node_->handler.HoldAppends(true);
  RawBatchStream a1(address_, "peer-a:1");
  RawBatchStream a2(address_, "peer-a:1");
  RawBatchStream b1(address_, "peer-b:1");
  ASSERT_TRUE(a1.accepted() && a2.accepted() && b1.accepted());
  // 200 KiB of peer a's stays in flight (held in the engine).
  ASSERT_TRUE(a1.Send({MakeAppend(1, 1, 2, 10, std::string(200u << 10, 'a'))}));
  ASSERT_TRUE(WaitHeld(1));
  // 200 KiB more of peer a's, on its other stream, exceed its 256 KiB.
  ASSERT_TRUE(a2.Send({MakeAppend(1, 1, 2, 11, std::string(200u << 10, 'b'))}));
  const grpc::Status st = a2.Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  EXPECT_EQ(node_->handler.Refused(StreamRefusal::kPeerInflightBytes), 1u);
  EXPECT_TRUE(log.Contains("peer_inflight_bytes")) << "the refusal is logged";
  // Peer b has nothing in flight: its 200 KiB are taken.
  ASSERT_TRUE(b1.Send({MakeAppend(1, 5, 2, 12, std::string(200u << 10, 'c'))}));
  EXPECT_TRUE(WaitHeld(2));
  node_->handler.HoldAppends(false);
  ASSERT_TRUE(node_->handler.WaitFor([&] { return node_->handler.messages().size() >= 2; }));
  std::this_thread::sleep_for(100ms);  // nothing else arrives
  std::lock_guard lock(node_->handler.mu());
  std::string firsts;
  for (const raft::Message& m : node_->handler.messages()) firsts += m.entries.at(0).cmd.data()[0];
  std::sort(firsts.begin(), firsts.end());
  EXPECT_EQ(firsts, "ac") << "peer a's refused batch reached the engine";
}

// Without TLS a peer's identity is the source address it claims, and a
// holder of the deployment secret can claim as many as it likes: the
// per-peer bounds alone bounded nothing in total. Before, every claimed
// address got its streams.
TEST_F(GrpcPeerLimitsTest, ManyClaimedPeersTogetherHoldAtMostTheGlobalQuotaOfStreams) {
  TransportConfig c = FastConfig(tmp_.Sub("b"));
  c.batch_receive.max_streams_per_peer = 2;
  c.batch_receive.max_streams = 4;
  Start(c);
  LogCapture log;
  std::vector<std::unique_ptr<RawBatchStream>> streams;
  for (int i = 0; i < 4; ++i) {
    streams.push_back(
        std::make_unique<RawBatchStream>(address_, "claimed-" + std::to_string(i) + ":1"));
    ASSERT_TRUE(streams.back()->accepted()) << i;
  }
  RawBatchStream fifth(address_, "claimed-4:1");
  EXPECT_FALSE(fifth.accepted()) << "a fifth stream was accepted over a bound of four";
  const grpc::Status st = fifth.Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  // More claimed addresses: each refusal is counted, and the bound over all
  // peers is logged once per interval in all, not once per claimed address.
  for (int i = 6; i < 9; ++i) {
    RawBatchStream more(address_, "claimed-" + std::to_string(i) + ":1");
    EXPECT_FALSE(more.accepted());
    (void)more.Finish();
  }
  EXPECT_EQ(node_->handler.Refused(StreamRefusal::kBatchStreams), 4u);
  EXPECT_EQ(log.Count("(batch_streams)"), 1u) << "the refusal is logged, once";
  // A stream closed gives its place back, to any peer.
  (void)streams[0]->Finish();
  streams[0].reset();
  bool again = false;
  for (int i = 0; i < 100 && !again; ++i) {
    again = RawBatchStream(address_, "claimed-5:1").accepted();
    if (!again) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(again);
}

// The bytes in flight over all peers: with 200 KiB of one claimed peer held
// in the engine, another's 200 KiB exceed a 256 KiB bound. Before, each
// peer had its own 64 MiB, so N claimed addresses held N times that.
TEST_F(GrpcPeerLimitsTest, AllPeersBatchesInFlightAreBounded) {
  TransportConfig c = FastConfig(tmp_.Sub("b"));
  c.batch_receive.max_inflight_bytes = 256u << 10;
  Start(c);
  LogCapture log;
  node_->handler.HoldAppends(true);
  RawBatchStream a(address_, "claimed-a:1");
  RawBatchStream b(address_, "claimed-b:1");
  ASSERT_TRUE(a.accepted() && b.accepted());
  ASSERT_TRUE(a.Send({MakeAppend(1, 1, 2, 10, std::string(200u << 10, 'a'))}));
  ASSERT_TRUE(WaitHeld(1));
  ASSERT_TRUE(b.Send({MakeAppend(1, 5, 2, 11, std::string(200u << 10, 'b'))}));
  const grpc::Status st = b.Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  EXPECT_EQ(node_->handler.Refused(StreamRefusal::kBatchInflightBytes), 1u);
  EXPECT_TRUE(log.Contains("(batch_inflight_bytes)")) << "the refusal is logged";
  node_->handler.HoldAppends(false);
  ASSERT_TRUE(node_->handler.WaitFor([&] { return node_->handler.messages().size() >= 1; }));
  std::this_thread::sleep_for(100ms);  // nothing else arrives
  std::lock_guard lock(node_->handler.mu());
  ASSERT_EQ(node_->handler.messages().size(), 1u) << "the batch over the bound reached the engine";
  EXPECT_EQ(node_->handler.messages()[0].entries.at(0).cmd.data()[0], 'a');
}

}  // namespace
}  // namespace flotilla::transport
