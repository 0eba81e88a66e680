// Snapshots over real loopback gRPC: a large snapshot streamed and verified,
// and streams broken half-way that must leave nothing behind.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "proto/raft.grpc.pb.h"
#include "tests/transport/grpc_test_util.h"
#include "transport/convert.h"
#include "transport/crc32c.h"

namespace flotilla::transport {
namespace {

using namespace std::chrono_literals;
using testing::FastConfig;
using testing::ListWithPrefix;
using testing::MakeInstall;
using testing::Node;
using testing::TcpProxy;
using testing::TempDir;

// Passes another source through, and calls `at_half` once after `half_bytes`
// were read, or fails from then on when `fail` is set.
class InterruptingSource final : public SnapshotSource {
 public:
  InterruptingSource(std::unique_ptr<SnapshotSource> inner, uint64_t half_bytes,
                     std::function<void()> at_half, bool fail)
      : inner_(std::move(inner)),
        half_bytes_(half_bytes),
        at_half_(std::move(at_half)),
        fail_(fail) {}
  Result<bool> NextFile(std::string* name) override { return inner_->NextFile(name); }
  Result<size_t> Read(size_t max_bytes, std::string* out) override {
    if (read_ >= half_bytes_) {
      if (fail_) return Status::IOError("disk went away");
      if (!fired_) {
        fired_ = true;
        at_half_();
        // Give the cut time to reach both ends before the next chunk.
        std::this_thread::sleep_for(50ms);
      }
    }
    Result<size_t> n = inner_->Read(max_bytes, out);
    if (n.ok()) read_ += *n;
    return n;
  }

 private:
  std::unique_ptr<SnapshotSource> inner_;
  const uint64_t half_bytes_;
  std::function<void()> at_half_;
  const bool fail_;
  bool fired_ = false;
  uint64_t read_ = 0;
};

// A snapshot stream that sends its first chunk (half of a file) and then
// nothing: what a stalled or hostile peer does.
class StalledStream {
 public:
  StalledStream(const std::string& address, const std::string& source, raft::Index index)
      : stub_(
            wire::Raft::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))) {
    writer_ = stub_->Snapshot(&ctx_, &result_);
    wire::SnapshotChunk chunk;
    MakeHeader(1, source, chunk.mutable_header());
    ToWire(MakeInstall(1, 1, 2, index), chunk.mutable_install());
    const std::string data(64 << 10, 'x');
    chunk.set_file_name("state");
    chunk.set_data(data);
    chunk.set_data_crc32c(Crc32c(data));
    written_ = writer_->Write(chunk);
  }
  ~StalledStream() { ctx_.TryCancel(); }
  bool written() const { return written_; }
  // Waits for the receiver to end the stream; returns its status.
  grpc::Status Finish() { return writer_->Finish(); }

 private:
  std::unique_ptr<wire::Raft::Stub> stub_;
  grpc::ClientContext ctx_;
  wire::SnapshotResult result_;
  std::unique_ptr<grpc::ClientWriter<wire::SnapshotChunk>> writer_;
  bool written_ = false;
};

// Receive limits small enough for a test: 4 slots, 2 per peer, idle
// deadline 1.5 s, a stalled stream gives its slot away after 300 ms.
TransportConfig StrictReceiver(const std::string& dir) {
  TransportConfig c = FastConfig(dir);
  c.snapshot_receive.max_streams = 4;
  c.snapshot_receive.max_streams_per_peer = 2;
  c.snapshot_receive.idle_timeout_ms = 1500;
  c.snapshot_receive.evict_idle_ms = 300;
  return c;
}

class GrpcSnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(tmp_.Sub("src"));
    testing::WriteRandomFile(tmp_.Sub("src/state"), kStateBytes, 11);
    testing::WriteRandomFile(tmp_.Sub("src/meta"), 100, 12);
    a_ = std::make_unique<Node>(FastConfig(tmp_.Sub("a")), &registry_);
    b_ = std::make_unique<Node>(StrictReceiver(tmp_.Sub("b")), &registry_);
    ASSERT_TRUE(a_->transport->Start().ok());
    ASSERT_TRUE(b_->transport->Start().ok());
    registry_.Add(1, 2, b_->transport->address());
  }

  std::unique_ptr<SnapshotSource> Source() {
    auto s = NewFileSnapshotSource(tmp_.Sub("src"));
    EXPECT_TRUE(s.ok());
    return std::move(s).value();
  }

  // Waits for the n-th snapshot status at the sender and returns it.
  bool WaitStatus(size_t n, bool* failed) {
    bool got = a_->handler.WaitFor([&] { return a_->handler.statuses().size() >= n; }, 60s);
    if (got) {
      std::lock_guard lock(a_->handler.mu());
      *failed = a_->handler.statuses()[n - 1].failed;
    }
    return got;
  }

  void ExpectNothingLeftBehind() {
    // The receiver cleans up on its own thread; give it a moment.
    for (int i = 0; i < 100 && !ListWithPrefix(tmp_.Sub("b"), "").empty(); ++i) {
      std::this_thread::sleep_for(20ms);
    }
    EXPECT_TRUE(ListWithPrefix(tmp_.Sub("b"), "").empty());
    EXPECT_TRUE(b_->handler.snapshots().empty());
  }

  void ExpectReceived(size_t n) {
    ASSERT_TRUE(b_->handler.WaitFor([&] { return b_->handler.snapshots().size() == n; }));
    std::lock_guard lock(b_->handler.mu());
    const auto& got = b_->handler.snapshots()[n - 1];
    EXPECT_EQ(got.install.snapshot.index, 77u);
    EXPECT_EQ(got.install.snapshot.membership.voters, (std::vector<raft::ReplicaId>{1, 2, 3}));
    EXPECT_EQ(got.path, tmp_.Sub("b") + "/snapshot-1-2-77");
    EXPECT_TRUE(testing::SameFiles(tmp_.Sub("src"), got.path));
    EXPECT_TRUE(ListWithPrefix(tmp_.Sub("b"), "tmp-").empty());
  }

  static constexpr size_t kStateBytes = 64u << 20;
  TempDir tmp_;
  Registry registry_;
  std::unique_ptr<Node> a_;
  std::unique_ptr<Node> b_;
};

TEST_F(GrpcSnapshotTest, SixtyFourMebibytesStreamedAndVerified) {
  ASSERT_TRUE(a_->transport->SendSnapshot({MakeInstall(1, 1, 2, 77), Source()}).ok());
  bool failed = true;
  ASSERT_TRUE(WaitStatus(1, &failed));
  EXPECT_FALSE(failed);
  ExpectReceived(1);
}

TEST_F(GrpcSnapshotTest, ConnectionCutMidStreamLeavesNothingAndRetrySucceeds) {
  TcpProxy proxy(b_->transport->address());
  registry_.Add(1, 2, proxy.address());
  auto cutting = std::make_unique<InterruptingSource>(
      Source(), kStateBytes / 2, [&] { proxy.Cut(); }, false);
  ASSERT_TRUE(a_->transport->SendSnapshot({MakeInstall(1, 1, 2, 77), std::move(cutting)}).ok());
  bool failed = false;
  ASSERT_TRUE(WaitStatus(1, &failed));
  EXPECT_TRUE(failed);
  ExpectNothingLeftBehind();

  // The next attempt, through the same proxy, succeeds.
  ASSERT_TRUE(a_->transport->SendSnapshot({MakeInstall(1, 1, 2, 77), Source()}).ok());
  ASSERT_TRUE(WaitStatus(2, &failed));
  EXPECT_FALSE(failed);
  ExpectReceived(1);
}

// A peer whose connection answers late (far away, or on a loaded machine)
// but within connect_timeout_ms (500 ms here) gets its snapshot at the first
// attempt: gRPC gives a connection attempt only GRPC_ARG_MIN_RECONNECT_BACKOFF_MS
// to receive the peer's SETTINGS frame, so that must not be the short
// reconnect backoff.
TEST_F(GrpcSnapshotTest, SlowConnectionWithinConnectTimeoutStillDelivers) {
  TcpProxy proxy(b_->transport->address());
  proxy.SetConnectDelay(150ms);
  registry_.Add(1, 2, proxy.address());
  ASSERT_TRUE(a_->transport->SendSnapshot({MakeInstall(1, 1, 2, 77), Source()}).ok());
  bool failed = true;
  ASSERT_TRUE(WaitStatus(1, &failed));
  EXPECT_FALSE(failed);
  ExpectReceived(1);
}

TEST_F(GrpcSnapshotTest, SourceFailureAbortsCleanly) {
  auto failing = std::make_unique<InterruptingSource>(
      Source(), 8u << 20, [] {}, true);
  ASSERT_TRUE(a_->transport->SendSnapshot({MakeInstall(1, 1, 2, 77), std::move(failing)}).ok());
  bool failed = false;
  ASSERT_TRUE(WaitStatus(1, &failed));
  EXPECT_TRUE(failed);
  ExpectNothingLeftBehind();
}

TEST_F(GrpcSnapshotTest, MalformedJobsAreRefusedAtOnce) {
  EXPECT_EQ(a_->transport->SendSnapshot({MakeInstall(1, 1, 2, 77), nullptr}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(a_->transport->SendSnapshot({MakeInstall(1, 1, 9, 77), Source()}).code(),
            StatusCode::kNotFound);
}

TEST_F(GrpcSnapshotTest, StoppedReceiverFailsTheSnapshot) {
  b_.reset();
  ASSERT_TRUE(a_->transport->SendSnapshot({MakeInstall(1, 1, 2, 77), Source()}).ok());
  bool failed = false;
  ASSERT_TRUE(WaitStatus(1, &failed));
  EXPECT_TRUE(failed);
}

// Issue 14: four snapshot streams that never finish held every receive slot
// for ever, and their temporary files stayed until the next start.
TEST_F(GrpcSnapshotTest, StalledStreamsDoNotKeepALegitimateSnapshotOut) {
  std::vector<std::unique_ptr<StalledStream>> stalled;
  // Each claims another source, as an outsider can (the per-peer quota alone
  // would not do).
  for (int i = 0; i < 4; ++i) {
    stalled.push_back(std::make_unique<StalledStream>(b_->transport->address(),
                                                      "stalled-" + std::to_string(i), 70 + i));
    ASSERT_TRUE(stalled.back()->written());
  }
  for (int i = 0; i < 100 && ListWithPrefix(tmp_.Sub("b"), "tmp-").size() < 4; ++i) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(ListWithPrefix(tmp_.Sub("b"), "tmp-").size(), 4u) << "every slot is taken";
  std::this_thread::sleep_for(400ms);  // past the eviction grace, well before the idle deadline

  ASSERT_TRUE(a_->transport->SendSnapshot({MakeInstall(1, 1, 2, 77), Source()}).ok());
  bool failed = true;
  ASSERT_TRUE(WaitStatus(1, &failed));
  EXPECT_FALSE(failed) << "a legitimate snapshot was kept out by streams that never finish";

  // Every stalled stream has ended by its idle deadline, with the reason,
  // and left no temporary file.
  for (auto& s : stalled) {
    grpc::Status st = s->Finish();
    EXPECT_FALSE(st.ok());
    EXPECT_TRUE(st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
                st.error_code() == grpc::StatusCode::CANCELLED)
        << st.error_code() << " " << st.error_message();
  }
  for (int i = 0; i < 100 && !ListWithPrefix(tmp_.Sub("b"), "tmp-").empty(); ++i) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(ListWithPrefix(tmp_.Sub("b"), "tmp-").empty());
  ExpectReceived(1);
  const SnapshotStreamStats st = b_->transport->SnapshotReceiveStats();
  EXPECT_EQ(st.active, 0u);
  EXPECT_GE(st.evicted, 1u);
  EXPECT_EQ(st.evicted + st.ended_idle, 4u);
}

TEST_F(GrpcSnapshotTest, OnePeerGetsItsQuotaOfStreams) {
  StalledStream s1(b_->transport->address(), "one-peer", 70);
  StalledStream s2(b_->transport->address(), "one-peer", 71);
  ASSERT_TRUE(s1.written() && s2.written());
  // A write returning only means the client buffered it: wait until the
  // receiver has admitted both, or the third may overtake one of them.
  for (int i = 0; i < 250 && b_->transport->SnapshotReceiveStats().active < 2; ++i) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(b_->transport->SnapshotReceiveStats().active, 2u);
  StalledStream s3(b_->transport->address(), "one-peer", 72);
  grpc::Status st = s3.Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  EXPECT_NE(st.error_message().find("from this peer"), std::string::npos) << st.error_message();
  EXPECT_EQ(b_->transport->SnapshotReceiveStats().refused_peer_streams, 1u);
}

// Issue 14: a snapshot stream was written to disk before anyone asked who
// sent it. The engine's refusal at the first chunk (Handler::AdmitSnapshot)
// ends the stream at once, counted and logged, with nothing written.
TEST_F(GrpcSnapshotTest, ASenderTheHandlerRefusesWritesNothing) {
  testing::LogCapture log;
  b_->handler.RefuseSnapshotsFrom(1);
  StalledStream s(b_->transport->address(), "not-the-leader:1", 70);
  ASSERT_TRUE(s.written());
  grpc::Status st = s.Finish();  // the stream stays open on this side: only a refusal ends it
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  EXPECT_TRUE(ListWithPrefix(tmp_.Sub("b"), "").empty());
  EXPECT_EQ(b_->handler.Refused(StreamRefusal::kSnapshotSender), 1u);
  EXPECT_TRUE(log.Contains("snapshot_sender")) << "the refusal is logged";
  // Another sender still gets its snapshot through.
  b_->handler.RefuseSnapshotsFrom(9);
  ASSERT_TRUE(a_->transport->SendSnapshot({MakeInstall(1, 1, 2, 77), Source()}).ok());
  bool failed = true;
  ASSERT_TRUE(WaitStatus(1, &failed));
  EXPECT_FALSE(failed);
  ExpectReceived(1);
}

}  // namespace
}  // namespace flotilla::transport
