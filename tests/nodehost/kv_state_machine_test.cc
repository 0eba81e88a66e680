// The key-value state machine over RocksDB: commands, queries, malformed
// input, the applied index across reopen, and snapshots.
#include "tools/nodehost/kv_state_machine.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "proto/kv.pb.h"
#include "tests/tmpfs_mount.h"

namespace flotilla::nodehost {
namespace {

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = (std::filesystem::temp_directory_path() / ("flotilla-kvsm-" + std::to_string(rd())))
                .string();
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string PutCmd(const std::string& k, const std::string& v) {
  Command c;
  c.mutable_put()->set_key(k);
  c.mutable_put()->set_value(v);
  return c.SerializeAsString();
}
std::string DelCmd(const std::string& k) {
  Command c;
  c.mutable_del()->set_key(k);
  return c.SerializeAsString();
}
std::string CasCmd(const std::string& k, std::optional<std::string> expected,
                   const std::string& v) {
  Command c;
  c.mutable_cas()->set_key(k);
  c.mutable_cas()->set_expect_absent(!expected);
  if (expected) c.mutable_cas()->set_expected(*expected);
  c.mutable_cas()->set_value(v);
  return c.SerializeAsString();
}

// Applies `cmds` as one batch starting at `first_index`; returns the entries.
std::vector<SMEntry> Apply(KvStateMachine* sm, const std::vector<std::string>& cmds,
                           uint64_t first_index) {
  std::vector<SMEntry> entries(cmds.size());
  for (size_t i = 0; i < cmds.size(); ++i) {
    entries[i].index = first_index + i;
    entries[i].cmd = cmds[i];
  }
  EXPECT_TRUE(sm->Update(entries).ok());
  return entries;
}

std::optional<std::string> Get(KvStateMachine* sm, const std::string& k) {
  Query q;
  q.mutable_get()->set_key(k);
  Result<std::string> r = sm->Lookup(q.SerializeAsString());
  EXPECT_TRUE(r.ok());
  QueryResult out;
  EXPECT_TRUE(out.ParseFromString(*r));
  if (!out.found()) return std::nullopt;
  return out.value();
}

std::vector<std::string> ScanKeys(KvStateMachine* sm, const std::string& prefix,
                                  const std::string& after, uint32_t limit, bool* more,
                                  const std::string& start = "", const std::string& end = "") {
  Query q;
  q.mutable_scan()->set_prefix(prefix);
  q.mutable_scan()->set_start(start);
  q.mutable_scan()->set_end(end);
  q.mutable_scan()->set_start_after(after);
  q.mutable_scan()->set_limit(limit);
  Result<std::string> r = sm->Lookup(q.SerializeAsString());
  EXPECT_TRUE(r.ok());
  QueryResult out;
  EXPECT_TRUE(out.ParseFromString(*r));
  std::vector<std::string> keys;
  for (const KeyValue& kv : out.kvs()) keys.push_back(kv.key());
  *more = out.more();
  return keys;
}

TEST(KvStateMachine, PutGetDeleteCasInOneBatch) {
  TempDir dir;
  KvStateMachine sm(dir.path());
  ASSERT_EQ(*sm.Open(), 0u);
  // Later commands of a batch see the earlier ones.
  std::vector<SMEntry> e = Apply(&sm,
                                 {PutCmd("a", "1"), CasCmd("a", "1", "2"), CasCmd("a", "1", "3"),
                                  CasCmd("b", std::nullopt, "x"), DelCmd("a"), DelCmd("zz")},
                                 1);
  EXPECT_EQ(e[0].result, kApplied);
  EXPECT_EQ(e[1].result, kApplied);
  EXPECT_EQ(e[2].result, kCasMismatch);
  CommandResult r;
  ASSERT_TRUE(r.ParseFromString(e[2].data));
  EXPECT_TRUE(r.found());
  EXPECT_EQ(r.previous(), "2");
  EXPECT_EQ(r.index(), 3u);
  EXPECT_EQ(e[3].result, kApplied);
  ASSERT_TRUE(r.ParseFromString(e[4].data));
  EXPECT_TRUE(r.found());
  ASSERT_TRUE(r.ParseFromString(e[5].data));
  EXPECT_FALSE(r.found());
  EXPECT_EQ(Get(&sm, "a"), std::nullopt);
  EXPECT_EQ(Get(&sm, "b"), "x");
  EXPECT_EQ(sm.applied_index(), 6u);
}

TEST(KvStateMachine, MalformedCommandAndQueryAreRefusedWithoutHarm) {
  TempDir dir;
  KvStateMachine sm(dir.path());
  ASSERT_TRUE(sm.Open().ok());
  std::vector<SMEntry> e = Apply(&sm, {"\xff\xff garbage", PutCmd("k", "v")}, 1);
  EXPECT_EQ(e[0].result, kMalformed);
  CommandResult r;
  ASSERT_TRUE(r.ParseFromString(e[0].data));
  EXPECT_NE(r.error().find("malformed"), std::string::npos);
  EXPECT_EQ(e[1].result, kApplied);
  Result<std::string> bad = sm.Lookup("\xff\xff");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Get(&sm, "k"), "v");
}

TEST(KvStateMachine, ScanIsOrderedByPrefixWithLimitAndStartAfter) {
  TempDir dir;
  KvStateMachine sm(dir.path());
  ASSERT_TRUE(sm.Open().ok());
  Apply(&sm,
        {PutCmd("u/3", "c"), PutCmd("u/1", "a"), PutCmd("u/2", "b"), PutCmd("v/1", "x"),
         PutCmd("u", "root")},
        1);
  bool more = false;
  EXPECT_EQ(ScanKeys(&sm, "u/", "", 0, &more), (std::vector<std::string>{"u/1", "u/2", "u/3"}));
  EXPECT_FALSE(more);
  EXPECT_EQ(ScanKeys(&sm, "u/", "", 2, &more), (std::vector<std::string>{"u/1", "u/2"}));
  EXPECT_TRUE(more);
  EXPECT_EQ(ScanKeys(&sm, "u/", "u/2", 0, &more), (std::vector<std::string>{"u/3"}));
  EXPECT_EQ(ScanKeys(&sm, "", "", 0, &more).size(), 5u);
  EXPECT_EQ(ScanKeys(&sm, "", "", 0, &more, "u/2", "v/1"),
            (std::vector<std::string>{"u/2", "u/3"}));
  EXPECT_EQ(ScanKeys(&sm, "u/", "", 0, &more, "a", "u/2"), (std::vector<std::string>{"u/1"}));
}

TEST(KvStateMachine, OpenReturnsTheIndexStoredWithTheData) {
  TempDir dir;
  {
    KvStateMachine sm(dir.path());
    ASSERT_EQ(*sm.Open(), 0u);
    Apply(&sm, {PutCmd("a", "1"), PutCmd("b", "2")}, 7);
    ASSERT_TRUE(sm.Sync().ok());
  }
  KvStateMachine again(dir.path());
  EXPECT_EQ(*again.Open(), 8u);
  EXPECT_EQ(Get(&again, "b"), "2");
}

class StringWriter final : public SnapshotWriter {
 public:
  Status Write(std::string_view b) override {
    data.append(b);
    return Status::Ok();
  }
  std::string data;
};
class StringReader final : public SnapshotReader {
 public:
  explicit StringReader(std::string d, size_t chunk) : data_(std::move(d)), chunk_(chunk) {}
  Status Read(size_t max, std::string* out) override {
    const size_t n = std::min({max, chunk_, data_.size() - pos_});
    out->assign(data_, pos_, n);
    pos_ += n;
    return Status::Ok();
  }

 private:
  std::string data_;
  size_t chunk_;
  size_t pos_ = 0;
};

TEST(KvStateMachine, SnapshotIsAPointInTimeAndRestoresReplacingOldData) {
  TempDir a, b;
  KvStateMachine src(a.path());
  ASSERT_TRUE(src.Open().ok());
  std::vector<std::string> cmds;
  for (int i = 0; i < 500; ++i)
    cmds.push_back(PutCmd("k" + std::to_string(i), std::string(100, 'v')));
  Apply(&src, cmds, 1);
  Result<std::shared_ptr<void>> prepared = src.PrepareSnapshot();
  ASSERT_TRUE(prepared.ok());
  Apply(&src, {PutCmd("late", "x")}, 501);  // after the snapshot point: not in it
  StringWriter w;
  ASSERT_TRUE(src.SaveSnapshot(*prepared, &w).ok());

  KvStateMachine dst(b.path());
  ASSERT_TRUE(dst.Open().ok());
  Apply(&dst, {PutCmd("stale", "gone")}, 1);
  StringReader r(w.data, 7);  // odd chunk size: records straddle reads
  ASSERT_TRUE(dst.RecoverFromSnapshot(&r).ok());
  EXPECT_EQ(dst.applied_index(), 500u);
  EXPECT_EQ(Get(&dst, "k499"), std::string(100, 'v'));
  EXPECT_EQ(Get(&dst, "late"), std::nullopt);
  EXPECT_EQ(Get(&dst, "stale"), std::nullopt);

  // A truncated stream is an error, not a silent partial restore.
  StringReader cut(w.data.substr(0, w.data.size() / 2), 4096);
  EXPECT_FALSE(dst.RecoverFromSnapshot(&cut).ok());
  StringReader bad("not a snapshot at all", 4096);
  EXPECT_EQ(dst.RecoverFromSnapshot(&bad).code(), StatusCode::kCorruption);
}

// Issue 15: on a full disk the store's write failed, and the next call into
// RocksDB (a Sync, another write) hit RocksDB's assertion on a file that had
// seen an error: SIGABRT. Now every call fails with NoSpace, none aborts,
// and RocksDB's info log is not written to the full disk.
TEST(KvStateMachine, AFullDiskFailsWritesWithoutAborting) {
  testing::TmpfsMount disk(16 << 20);
  FLOTILLA_SKIP_OR_FAIL_FULL_DISK(disk);
  const std::string dir = disk.path() + "/kv";
  KvStateMachine sm(dir);
  ASSERT_TRUE(sm.Open().ok());
  Apply(&sm, {PutCmd("before", "full")}, 1);
  testing::TmpfsMount::Fill(disk.path() + "/filler");
  const std::string value(256 << 10, 'v');
  Status failed;
  uint64_t index = 2;
  for (int i = 0; i < 64 && failed.ok(); ++i, ++index) {
    // SMEntry::cmd is a view: the command outlives the call.
    const std::string cmd = PutCmd("k" + std::to_string(i), value);
    std::vector<SMEntry> e(1);
    e[0].index = index;
    e[0].cmd = cmd;
    failed = sm.Update(e);
  }
  ASSERT_EQ(failed.code(), StatusCode::kNoSpace) << failed.ToString();
  // Each of these reached RocksDB's failed write-ahead log before.
  EXPECT_FALSE(sm.Sync().ok());
  const std::string after = PutCmd("after", "full");
  std::vector<SMEntry> more(1);
  more[0].index = index;
  more[0].cmd = after;
  EXPECT_FALSE(sm.Update(more).ok());
  EXPECT_FALSE(sm.Sync().ok());
  EXPECT_EQ(Get(&sm, "before"), "full") << "reads still work";
  EXPECT_FALSE(std::filesystem::exists(dir + "/LOG")) << "RocksDB's info log is on the data disk";
}

std::string HashCmd() {
  Command c;
  c.mutable_hash();
  return c.SerializeAsString();
}

QueryResult Ask(KvStateMachine* sm, bool dump) {
  Query q;
  if (dump)
    q.mutable_dump();
  else
    q.mutable_hash();
  Result<std::string> r = sm->Lookup(q.SerializeAsString());
  QueryResult out;
  EXPECT_TRUE(r.ok() && out.ParseFromString(*r));
  return out;
}

// A HashOp hashes the state as of its entry, the earlier entries of its own
// batch included: replicas with the same history agree; one whose store
// holds a different value does not.
TEST(KvStateMachine, HashOpHashesTheStateAtItsEntryAndKeepsIt) {
  TempDir a, b;
  KvStateMachine x(a.path()), y(b.path());
  ASSERT_TRUE(x.Open().ok());
  ASSERT_TRUE(y.Open().ok());
  EXPECT_EQ(Ask(&x, false).hash_index(), 0u) << "no hash yet";
  // x in one batch, y in two: the same history.
  std::vector<SMEntry> ex = Apply(&x, {PutCmd("a", "1"), PutCmd("b", "2"), HashCmd()}, 1);
  Apply(&y, {PutCmd("a", "1"), PutCmd("b", "2")}, 1);
  std::vector<SMEntry> ey = Apply(&y, {HashCmd()}, 3);
  CommandResult rx, ry;
  ASSERT_TRUE(rx.ParseFromString(ex[2].data));
  ASSERT_TRUE(ry.ParseFromString(ey[0].data));
  EXPECT_EQ(ex[2].result, kApplied);
  EXPECT_EQ(rx.index(), 3u);
  EXPECT_EQ(rx.hash(), ry.hash());
  EXPECT_EQ(Ask(&x, false).hash_index(), 3u);
  EXPECT_EQ(Ask(&x, false).hash(), rx.hash());
  // A different value, then a hash: it differs, and the kept one moves on.
  Apply(&y, {PutCmd("b", "3"), HashCmd()}, 4);
  Apply(&x, {PutCmd("b", "2"), HashCmd()}, 4);
  EXPECT_EQ(Ask(&y, false).hash_index(), 5u);
  EXPECT_NE(Ask(&y, false).hash(), Ask(&x, false).hash());
  EXPECT_EQ(Ask(&x, false).hash(), rx.hash()) << "the same state hashes the same";
}

TEST(KvStateMachine, DumpIsTheWholeStateAtItsAppliedIndex) {
  TempDir d;
  KvStateMachine sm(d.path());
  ASSERT_TRUE(sm.Open().ok());
  Apply(&sm, {PutCmd("a", "1"), PutCmd("b", std::string("\0two", 4)), DelCmd("a")}, 1);
  Apply(&sm, {PutCmd("c", "3")}, 4);
  const QueryResult dump = Ask(&sm, true);
  EXPECT_EQ(dump.applied_index(), 4u);
  uint64_t applied = 0;
  std::vector<std::pair<std::string, std::string>> kvs;
  ASSERT_TRUE(ParseKvState(dump.state(), &applied, [&](auto k, auto v) {
                kvs.emplace_back(k, v);
                return Status::Ok();
              }).ok());
  EXPECT_EQ(applied, 4u);
  const std::vector<std::pair<std::string, std::string>> want = {{"b", std::string("\0two", 4)},
                                                                 {"c", "3"}};
  EXPECT_EQ(kvs, want);
  // A stream cut short is refused.
  std::string cut = dump.state();
  cut.pop_back();
  EXPECT_EQ(ParseKvState(cut, &applied, [](auto, auto) { return Status::Ok(); }).code(),
            StatusCode::kCorruption);
}

}  // namespace
}  // namespace flotilla::nodehost
