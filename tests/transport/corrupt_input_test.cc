// Corrupt or random bytes in batches and snapshot chunks are rejected with an
// error and never crash the process: first straight into the parser and
// validators (many iterations), then over a real gRPC connection. Runs under
// ASan/UBSan in the sanitizer build (see docs/transport.md).
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "proto/raft.grpc.pb.h"
#include "tests/transport/grpc_test_util.h"
#include "transport/convert.h"
#include "transport/snapshot_receiver.h"

namespace flotilla::transport {
namespace {

using testing::FastConfig;
using testing::ListWithPrefix;
using testing::MakeAppend;
using testing::MakeHeartbeat;
using testing::MakeInstall;
using testing::TempDir;

constexpr int kParserIterations = 20000;
constexpr int kChunkIterations = 2000;

std::string RandomBytes(std::mt19937_64& rng, size_t max_len) {
  std::string s(rng() % (max_len + 1), '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// Damages a valid encoding: flips, overwrites, truncates or splices bytes.
std::string Mutate(std::string s, std::mt19937_64& rng) {
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int i = 0; i < edits && !s.empty(); ++i) {
    size_t at = rng() % s.size();
    switch (rng() % 4) {
      case 0:
        s[at] = static_cast<char>(s[at] ^ (1 << (rng() % 8)));
        break;
      case 1:
        s[at] = static_cast<char>(rng());
        break;
      case 2:
        s.resize(at);
        break;
      default:
        s.insert(at, RandomBytes(rng, 8));
        break;
    }
  }
  return s;
}

std::string ValidBatch() {
  wire::MessageBatch b;
  ToWire(MakeAppend(3, 1, 2, 10, "sixteen-byte-cmd"), b.add_messages());
  ToWire(MakeHeartbeat(4, 1, 2), b.add_messages());
  ToWire(MakeInstall(5, 1, 2, 9), b.add_messages());
  return b.SerializeAsString();
}

TEST(CorruptInputTest, RandomAndDamagedBatchesAreRejected) {
  std::mt19937_64 rng(20261123);
  const std::string valid = ValidBatch();
  WireLimits limits{64, 16};
  int parsed = 0, rejected = 0;
  for (int i = 0; i < kParserIterations; ++i) {
    const std::string bytes = i % 2 == 0 ? RandomBytes(rng, 256) : Mutate(valid, rng);
    wire::MessageBatch batch;
    if (!batch.ParseFromString(bytes)) continue;
    ++parsed;
    std::vector<raft::Message> out;
    Status s = BatchFromWire(&batch, limits, &out);
    if (!s.ok()) {
      ++rejected;
      EXPECT_TRUE(out.empty());
      EXPECT_FALSE(s.message().empty());
    }
  }
  // Both outcomes were exercised.
  EXPECT_GT(parsed, 0);
  EXPECT_GT(rejected, 0);
}

TEST(CorruptInputTest, RandomAndDamagedChunksAreRejected) {
  TempDir tmp;
  std::mt19937_64 rng(7);
  wire::SnapshotChunk good;
  good.set_file_name("state");
  good.set_data("some snapshot bytes");
  good.set_data_crc32c(0);  // wrong on purpose in half the cases below
  const std::string valid = good.SerializeAsString();
  int accepted = 0;
  for (int i = 0; i < kChunkIterations; ++i) {
    wire::SnapshotChunk chunk;
    const std::string bytes = i % 2 == 0 ? RandomBytes(rng, 128) : Mutate(valid, rng);
    if (!chunk.ParseFromString(bytes)) continue;
    SnapshotReceiver rx(tmp.path(), SnapshotReceiverLimits{1u << 20, 4});
    ASSERT_TRUE(rx.Begin(MakeInstall(1, 1, 2, 5)).ok());
    Status s = rx.Add(ChunkFromWire(chunk));
    if (s.ok() && rx.complete()) ++accepted;
    // Damaged install messages are validated too.
    raft::Message install;
    (void)FromWire(chunk.mutable_install(), WireLimits{}, &install).ok();
  }
  // Nothing random looks like a whole verified snapshot, and nothing is left.
  EXPECT_EQ(accepted, 0);
  EXPECT_TRUE(ListWithPrefix(tmp.path(), "").empty());
}

// Sends raw frames (any bytes, not necessarily protobuf) on one call of
// `method` with gRPC's generic stub; returns the call's final status.
grpc::Status SendRawFrames(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                           const std::vector<std::string>& frames, bool read_first_reply) {
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto await = [&cq] {
    void* tag = nullptr;
    bool ok = false;
    EXPECT_TRUE(cq.Next(&tag, &ok));
    return ok;
  };
  auto call = stub.PrepareCall(&ctx, method, &cq);
  call->StartCall(nullptr);
  await();
  for (size_t i = 0; i < frames.size(); ++i) {
    grpc::Slice slice(frames[i]);
    grpc::ByteBuffer buffer(&slice, 1);
    call->Write(buffer, nullptr);
    if (!await()) break;
    if (i == 0 && read_first_reply) {
      grpc::ByteBuffer reply;
      call->Read(&reply, nullptr);
      if (!await()) break;
    }
  }
  call->WritesDone(nullptr);
  await();
  grpc::Status status;
  call->Finish(&status, nullptr);
  await();
  return status;
}

TEST(CorruptInputTest, GarbageOverGrpcIsRefusedAndTheServerLivesOn) {
  TempDir tmp;
  Registry registry;
  testing::Node b(FastConfig(tmp.Sub("b")), &registry);
  testing::Node a(FastConfig(tmp.Sub("a")), &registry);
  ASSERT_TRUE(b.transport->Start().ok());
  ASSERT_TRUE(a.transport->Start().ok());
  auto channel = grpc::CreateChannel(b.transport->address(), grpc::InsecureChannelCredentials());

  wire::MessageBatch hello;
  MakeHeader(1, "fuzzer", hello.mutable_header());
  const std::string header = hello.SerializeAsString();
  std::mt19937_64 rng(99);
  const std::string valid = ValidBatch();
  for (int i = 0; i < 30; ++i) {
    // A valid header, then damaged or random frames.
    std::vector<std::string> frames{header, Mutate(valid, rng), RandomBytes(rng, 300)};
    (void)SendRawFrames(channel, "/flotilla.wire.Raft/Batches", frames, true);
    // Random bytes where a snapshot stream's first chunk should be.
    (void)SendRawFrames(channel, "/flotilla.wire.Raft/Snapshot",
                        {RandomBytes(rng, 300), Mutate(valid, rng)}, false);
  }
  // A well-formed batch with a nonsense message type gets a clear error.
  wire::MessageBatch bad;
  ToWire(MakeHeartbeat(1, 1, 2), bad.add_messages());
  bad.mutable_messages(0)->set_type(250);
  grpc::Status st = SendRawFrames(channel, "/flotilla.wire.Raft/Batches",
                                  {header, bad.SerializeAsString()}, true);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("unknown message type"), std::string::npos);

  // A snapshot chunk with a checksum that does not match is refused.
  wire::SnapshotChunk chunk;
  MakeHeader(1, "fuzzer", chunk.mutable_header());
  ToWire(MakeInstall(1, 1, 2, 5), chunk.mutable_install());
  chunk.set_file_name("state");
  chunk.set_data("bytes");
  chunk.set_data_crc32c(12345);
  st = SendRawFrames(channel, "/flotilla.wire.Raft/Snapshot", {chunk.SerializeAsString()}, false);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.error_message().find("checksum"), std::string::npos) << st.error_message();

  // A damaged batch may still be a valid one (a flipped payload bit); what
  // reached the engine passed validation. Nothing was left on disk, and b
  // still works.
  {
    std::lock_guard lock(b.handler.mu());
    for (const raft::Message& m : b.handler.messages()) {
      EXPECT_TRUE(IsWireMessageType(m.type));
      EXPECT_NE(m.from, 0u);
      EXPECT_NE(m.to, 0u);
    }
    b.handler.messages().clear();
  }
  EXPECT_TRUE(ListWithPrefix(tmp.Sub("b"), "").empty());
  registry.Add(1, 2, b.transport->address());
  bool delivered = false;
  for (int i = 0; i < 200 && !delivered; ++i) {
    (void)a.transport->Send(MakeHeartbeat(1, 1, 2));
    delivered = b.handler.WaitFor([&] { return !b.handler.messages().empty(); },
                                  std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(delivered);
}

}  // namespace
}  // namespace flotilla::transport
