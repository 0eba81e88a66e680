// The snapshot stream: chunker -> receiver, verification and clean-up.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "tests/transport/test_util.h"
#include "transport/snapshot_chunker.h"
#include "transport/snapshot_receiver.h"

namespace flotilla::transport {
namespace {

using testing::ListWithPrefix;
using testing::MakeInstall;
using testing::TempDir;
using testing::WriteRandomFile;

struct OwnedChunk {
  std::string name;
  std::string data;
  ChunkData view;
};

std::vector<OwnedChunk> ChunksOf(const std::string& path, size_t chunk_bytes) {
  auto source = NewFileSnapshotSource(path);
  EXPECT_TRUE(source.ok()) << source.status().ToString();
  SnapshotChunker chunker(source->get(), chunk_bytes);
  std::vector<OwnedChunk> out;
  ChunkData c;
  for (;;) {
    Result<bool> more = chunker.Next(&c);
    EXPECT_TRUE(more.ok());
    if (!more.ok() || !*more) break;
    out.push_back({std::string(c.file_name), std::string(c.data), c});
  }
  for (auto& o : out) {
    o.view.file_name = o.name;
    o.view.data = o.data;
  }
  return out;
}

Status Receive(const std::string& dir, const std::vector<OwnedChunk>& chunks, std::string* path) {
  SnapshotReceiver rx(dir, SnapshotReceiverLimits{});
  FLOTILLA_RETURN_IF_ERROR(rx.Begin(MakeInstall(5, 1, 2, 30)));
  for (const auto& c : chunks) FLOTILLA_RETURN_IF_ERROR(rx.Add(c.view));
  if (!rx.complete()) return Status::Corruption("incomplete");
  Result<std::string> r = rx.Finish();
  if (!r.ok()) return r.status();
  *path = *r;
  return Status::Ok();
}

class SnapshotStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(tmp_.Sub("src"));
    WriteRandomFile(tmp_.Sub("src/data"), 100000, 1);
    WriteRandomFile(tmp_.Sub("src/empty"), 0, 2);
    WriteRandomFile(tmp_.Sub("src/meta"), 17, 3);
  }
  TempDir tmp_;
};

TEST_F(SnapshotStreamTest, DirectoryRoundTrip) {
  auto chunks = ChunksOf(tmp_.Sub("src"), 4096);
  std::string path;
  Status s = Receive(tmp_.Sub("rx"), chunks, &path);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(path, tmp_.Sub("rx") + "/snapshot-5-2-30");
  EXPECT_TRUE(testing::SameFiles(tmp_.Sub("src"), path));
  EXPECT_TRUE(ListWithPrefix(tmp_.Sub("rx"), "tmp-").empty());
}

TEST_F(SnapshotStreamTest, EveryCorruptionIsRejectedAndCleanedUp) {
  const auto good = ChunksOf(tmp_.Sub("src"), 4096);
  // One kind of damage per case; each must fail and leave nothing behind.
  std::vector<std::function<void(std::vector<OwnedChunk>&)>> damage = {
      [](auto& c) { c[3].data[10] ^= 1; },              // flipped bit
      [](auto& c) { c[3].view.data_crc32c ^= 1; },      // bad chunk checksum
      [](auto& c) { c.erase(c.begin() + 2); },          // lost chunk
      [](auto& c) { c.pop_back(); },                    // no last chunk
      [](auto& c) { c.back().view.total_bytes += 1; },  // wrong total
      [](auto& c) { c.back().view.file_count += 1; },   // wrong file count
      [](auto& c) { c[1].view.file_offset += 1; },      // wrong offset
      [](auto& c) { c[0].name = "../escape"; },         // path escape
      [](auto& c) { c[0].name = ""; },                  // no name
      [](auto& c) { c.insert(c.begin() + 3, c[2]); },   // duplicated chunk
  };
  for (size_t i = 0; i < damage.size(); ++i) {
    auto chunks = good;
    damage[i](chunks);
    for (auto& o : chunks) {
      o.view.file_name = o.name;
      o.view.data = o.data;
    }
    std::string path;
    EXPECT_FALSE(Receive(tmp_.Sub("rx"), chunks, &path).ok()) << "case " << i;
    EXPECT_TRUE(ListWithPrefix(tmp_.Sub("rx"), "").empty()) << "case " << i;
  }
}

TEST_F(SnapshotStreamTest, SizeLimit) {
  auto chunks = ChunksOf(tmp_.Sub("src"), 4096);
  SnapshotReceiver rx(tmp_.Sub("rx"), SnapshotReceiverLimits{1000, 10});
  ASSERT_TRUE(rx.Begin(MakeInstall(5, 1, 2, 30)).ok());
  Status s;
  for (const auto& c : chunks) {
    s = rx.Add(c.view);
    if (!s.ok()) break;
  }
  EXPECT_EQ(s.code(), StatusCode::kTooLarge);
}

// ---------------------------------------------------------------------------
// SnapshotStreamSlots: admission control and deadlines of incoming streams.

using namespace std::chrono_literals;

SnapshotStreamLimits FastLimits() {
  SnapshotStreamLimits l;
  l.max_streams = 3;
  l.max_streams_per_peer = 2;
  l.max_bytes_per_peer = 1000;
  l.idle_timeout_ms = 300;
  l.total_timeout_ms = 60'000;
  l.evict_idle_ms = 100;
  return l;
}

TEST(SnapshotStreamSlots, APeerGetsItsQuotaOfStreamsAndBytes) {
  SnapshotStreamSlots slots(FastLimits());
  auto a1 = slots.Acquire(nullptr);
  auto a2 = slots.Acquire(nullptr);
  auto a3 = slots.Acquire(nullptr);
  ASSERT_TRUE(a1.ok() && a2.ok() && a3.ok());
  ASSERT_TRUE((*a1)->SetPeer("a:1").ok());
  ASSERT_TRUE((*a2)->SetPeer("a:1").ok());
  EXPECT_EQ((*a3)->SetPeer("a:1").code(), StatusCode::kBusy);
  EXPECT_TRUE((*a3)->SetPeer("b:1").ok());
  EXPECT_EQ(slots.Stats().refused_peer_streams, 1u);
  // Bytes: both of a's streams count against a's quota; b's do not.
  EXPECT_TRUE((*a1)->Received(600).ok());
  EXPECT_TRUE((*a3)->Received(900).ok());
  EXPECT_EQ((*a2)->Received(600).code(), StatusCode::kBusy);
  EXPECT_EQ((*a2)->Received(0).code(), StatusCode::kBusy) << "an ended stream stays ended";
  EXPECT_EQ(slots.Stats().ended_peer_bytes, 1u);
}

TEST(SnapshotStreamSlots, LiveStreamsRefuseANewOneIdleOnesGiveWay) {
  SnapshotStreamSlots slots(FastLimits());
  std::atomic<int> cancelled{0};
  std::vector<std::unique_ptr<SnapshotStreamSlots::Slot>> held;
  for (int i = 0; i < 3; ++i) {
    auto s = slots.Acquire([&] { ++cancelled; });
    ASSERT_TRUE(s.ok());
    held.push_back(std::move(s).value());
  }
  // All three just started: none is idle long enough to give way.
  EXPECT_EQ(slots.Acquire(nullptr).status().code(), StatusCode::kBusy);
  EXPECT_EQ(slots.Stats().refused_busy, 1u);
  std::this_thread::sleep_for(150ms);
  ASSERT_TRUE(held[0]->Received(10).ok());  // this one is alive
  (void)held[2]->Received(10);
  auto fresh = slots.Acquire(nullptr);
  ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
  EXPECT_EQ(cancelled.load(), 1);
  EXPECT_EQ(held[1]->Received(10).code(), StatusCode::kTimeout) << "the idlest one was evicted";
  EXPECT_TRUE(held[0]->Received(10).ok());
  EXPECT_EQ(slots.Stats().evicted, 1u);
}

TEST(SnapshotStreamSlots, IdleAndTotalDeadlinesEndStreams) {
  SnapshotStreamLimits l = FastLimits();
  l.total_timeout_ms = 700;
  SnapshotStreamSlots slots(l);
  std::atomic<int> cancelled{0};
  auto idle = slots.Acquire([&] { ++cancelled; });
  auto busy = slots.Acquire([&] { ++cancelled; });
  ASSERT_TRUE(idle.ok() && busy.ok());
  // `busy` delivers every 50 ms and outlives the idle deadline, not the total.
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < 2s && (*busy)->Received(1).ok()) {
    std::this_thread::sleep_for(50ms);
  }
  const auto lived = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(lived, 650ms);
  EXPECT_LT(lived, 1500ms);
  EXPECT_EQ((*idle)->Received(1).code(), StatusCode::kTimeout);
  EXPECT_EQ(cancelled.load(), 2);
  const SnapshotStreamStats st = slots.Stats();
  EXPECT_EQ(st.ended_idle, 1u);
  EXPECT_EQ(st.ended_total, 1u);
  EXPECT_EQ(st.active, 2u);
  idle->reset();
  busy->reset();
  EXPECT_EQ(slots.Stats().active, 0u);
}

TEST_F(SnapshotStreamTest, AStreamStopsAtTheFreeSpaceReserve) {
  // No file system has this much free: the stream is refused at its start.
  SnapshotReceiver rx(tmp_.Sub("rx"), SnapshotReceiverLimits{1u << 30, 10, uint64_t{1} << 62});
  Status s = rx.Begin(MakeInstall(5, 1, 2, 30));
  EXPECT_EQ(s.code(), StatusCode::kNoSpace) << s.ToString();
  EXPECT_NE(s.message().find("below the reserve"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace flotilla::transport
