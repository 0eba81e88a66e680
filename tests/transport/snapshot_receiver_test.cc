// The snapshot stream: chunker -> receiver, verification and clean-up.
#include <gtest/gtest.h>

#include <filesystem>

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

}  // namespace
}  // namespace flotilla::transport
