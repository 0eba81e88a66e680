// The RocksDB LogDB under injected storage faults: failed fsync, full disk,
// power cut with unsynced data dropped, and damaged bytes on disk.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>

#include "logdb/fault_fs.h"
#include "logdb/rocks_logdb.h"
#include "tests/logdb/test_util.h"
#include "tests/logdb/workload.h"

namespace flotilla::logdb {
namespace {

using testing::Workload;

class RocksFaultTest : public ::testing::Test {
 protected:
  RocksFaultTest()
      : fs_(std::make_shared<FaultFs>(rocksdb::FileSystem::Default())), env_(NewFaultEnv(fs_)) {}

  std::unique_ptr<LogDB> Open(bool sync = true) {
    RocksOptions o;
    o.dir = dir_.path() + "/db";
    o.sync = sync;
    o.env = env_.get();
    auto r = OpenRocksLogDB(o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }

  // Saves 1..n of the workload.
  void SaveMany(LogDB* db, uint64_t n) {
    for (uint64_t k = 1; k <= n; ++k) ASSERT_TRUE(workload_.Save(db, k).ok()) << k;
  }

  // A power cut: nothing more reaches the disk, the process state is gone,
  // and what was never synced is lost.
  void PowerCut(std::unique_ptr<LogDB>* db) {
    fs_->Crash();
    db->reset();
    Status dropped = fs_->DropUnsyncedData();
    fs_->Recover();
    ASSERT_TRUE(dropped.ok()) << dropped.ToString();
  }

  testing::TempDir dir_;
  std::shared_ptr<FaultFs> fs_;
  std::unique_ptr<rocksdb::Env> env_;
  Workload workload_;
};

TEST_F(RocksFaultTest, FailedFsyncIsAnErrorAndIsNeverRetried) {
  auto db = Open();
  SaveMany(db.get(), 5);
  fs_->set_fail_sync(true);
  Status failed = workload_.Save(db.get(), 6);
  EXPECT_EQ(failed.code(), StatusCode::kIOError) << failed.ToString();
  fs_->set_fail_sync(false);
  // The disk "works" again, but the LogDB keeps refusing: the pages of the
  // failed fsync may be gone, so pretending it succeeded would lie.
  Status again = workload_.Save(db.get(), 6);
  EXPECT_EQ(again.code(), StatusCode::kIOError);
  EXPECT_NE(again.message().find("refuses writes after a failed write"), std::string::npos)
      << again.ToString();
  EXPECT_EQ(db->SaveBootstrap(1, 1, Bootstrap{}).code(), StatusCode::kIOError);
  // Nor is it resumed: only a full disk is (see FullDiskResumesOnceSpaceIsFreed).
  EXPECT_EQ(db->Resume().code(), StatusCode::kIOError);
  EXPECT_EQ(workload_.Save(db.get(), 6).code(), StatusCode::kIOError);
  // Reads keep working for the diagnosis.
  EXPECT_EQ(Workload::Verify(db.get()).value(), 5u);
  // A restart (the operator's decision) recovers what was acknowledged.
  PowerCut(&db);
  db = Open();
  auto k = Workload::Verify(db.get());
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  EXPECT_EQ(k.value(), 5u);
}

TEST_F(RocksFaultTest, FullDiskIsNoSpace) {
  auto db = Open();
  SaveMany(db.get(), 3);
  fs_->set_no_space(true);
  Status full = workload_.Save(db.get(), 4);
  EXPECT_EQ(full.code(), StatusCode::kNoSpace) << full.ToString();
  fs_->set_no_space(false);
  EXPECT_EQ(workload_.Save(db.get(), 4).code(), StatusCode::kNoSpace);
  PowerCut(&db);
  db = Open();
  auto k = Workload::Verify(db.get());
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  EXPECT_EQ(k.value(), 3u);
  // After the restart the LogDB takes writes again.
  SaveMany(db.get(), 0);
  EXPECT_TRUE(workload_.Save(db.get(), 4).ok());
}

// RocksDB's own write failed for want of space: Resume says NoSpace while
// the disk is still full, then takes writes again once space is freed, and
// the save that failed, saved again, is durable with everything before it.
TEST_F(RocksFaultTest, FullDiskResumesOnceSpaceIsFreed) {
  auto db = Open();
  SaveMany(db.get(), 3);
  fs_->set_no_space(true, /*new_files_too=*/false);
  EXPECT_EQ(workload_.Save(db.get(), 4).code(), StatusCode::kNoSpace);
  for (int attempt = 0; attempt < 3; ++attempt) {
    EXPECT_EQ(db->Resume().code(), StatusCode::kNoSpace) << attempt;
  }
  EXPECT_EQ(workload_.Save(db.get(), 4).code(), StatusCode::kNoSpace);
  fs_->set_no_space(false);
  const Status resumed = db->Resume();
  ASSERT_TRUE(resumed.ok()) << resumed.ToString();
  ASSERT_TRUE(workload_.Save(db.get(), 4).ok());
  ASSERT_TRUE(workload_.Save(db.get(), 5).ok());
  PowerCut(&db);
  db = Open();
  auto k = Workload::Verify(db.get());
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  EXPECT_EQ(k.value(), 5u);
}

// RocksDB 7.8 gives up resuming for good when the flush of a failed resume
// could not even create its file: the LogDB then says so (IOError, "restart")
// rather than NoSpace, so that its owner stops waiting for space; a restart
// recovers everything acknowledged.
TEST_F(RocksFaultTest, AResumeRocksDbGaveUpOnIsAnErrorUntilARestart) {
  auto db = Open();
  SaveMany(db.get(), 3);
  fs_->set_no_space(true, /*new_files_too=*/true);
  EXPECT_EQ(workload_.Save(db.get(), 4).code(), StatusCode::kNoSpace);
  Status s = db->Resume();
  for (int attempt = 0; attempt < 3 && s.code() == StatusCode::kNoSpace; ++attempt) {
    s = db->Resume();
  }
  fs_->set_no_space(false);
  s = db->Resume();
  EXPECT_EQ(s.code(), StatusCode::kIOError) << s.ToString();
  EXPECT_NE(s.message().find("restart"), std::string::npos) << s.ToString();
  PowerCut(&db);
  db = Open();
  ASSERT_TRUE(workload_.Save(db.get(), 4).ok());
  PowerCut(&db);
  db = Open();
  auto k = Workload::Verify(db.get());
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  EXPECT_EQ(k.value(), 4u);
}

TEST_F(RocksFaultTest, PowerCutKeepsEverySyncedSave) {
  // Twelve power cuts at different points, with compactions (unsynced
  // writes of their own) in between: every synced save survives each one.
  auto db = Open();
  uint64_t saved = 0;
  for (uint64_t cycle = 1; cycle <= 12; ++cycle) {
    SCOPED_TRACE(cycle);
    for (uint64_t i = 0; i < cycle * 3 % 17 + 1; ++i) {
      ASSERT_TRUE(workload_.Save(db.get(), ++saved).ok());
      if (saved % 7 == 0 && saved > 3) {
        for (raft::ShardId s = 1; s <= Workload::kShards; ++s) {
          ASSERT_TRUE(db->CompactTo(s, 1, (saved - 3) * Workload::kEntriesPerSave).ok());
        }
      }
    }
    PowerCut(&db);
    db = Open();
    ASSERT_NE(db, nullptr);
    auto k = Workload::Verify(db.get());
    ASSERT_TRUE(k.ok()) << k.status().ToString();
    EXPECT_EQ(k.value(), saved);
  }
}

TEST_F(RocksFaultTest, PowerCutWithoutSyncLosesWholeSavesOnly) {
  // With sync off the injected power cut drops writes that were acknowledged
  // (that is what sync=false means), but never part of a save.
  auto db = Open(/*sync=*/true);
  SaveMany(db.get(), 10);
  db.reset();
  db = Open(/*sync=*/false);
  for (uint64_t k = 11; k <= 30; ++k) ASSERT_TRUE(workload_.Save(db.get(), k).ok());
  PowerCut(&db);
  db = Open();
  auto k = Workload::Verify(db.get());
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  EXPECT_GE(k.value(), 10u);
  // The injected power cut really drops what was never synced.
  EXPECT_LT(k.value(), 30u);
}

TEST_F(RocksFaultTest, DamagedLogRecordRefusesToOpen) {
  auto db = Open();
  SaveMany(db.get(), 30);
  PowerCut(&db);
  // Flip a bit in the middle of the write-ahead log: recovery must not stop
  // there and open without the later, acknowledged saves.
  std::string wal;
  for (const auto& f : std::filesystem::directory_iterator(dir_.path() + "/db")) {
    if (f.path().extension() == ".log" && f.file_size() > 0) wal = f.path().string();
  }
  ASSERT_FALSE(wal.empty());
  const auto size = std::filesystem::file_size(wal);
  ASSERT_TRUE(FaultFs::FlipFileBit(wal, size / 2, 3).ok());
  RocksOptions o;
  o.dir = dir_.path() + "/db";
  auto r = OpenRocksLogDB(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption) << r.status().ToString();
  // The damaged file is named.
  EXPECT_NE(r.status().message().find(std::filesystem::path(wal).filename().string()),
            std::string::npos)
      << r.status().ToString();
}

}  // namespace
}  // namespace flotilla::logdb
