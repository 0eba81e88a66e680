// An embedder's program, built against an installed Flotilla (see
// CMakeLists.txt beside it; docs/embedding.md walks through it): one NodeHost,
// one single-replica shard of each state-machine kind, writes and
// linearizable reads on each, an exactly-once session, a membership change
// that adds a replica on a second NodeHost and removes it again, a restart of
// every kind, and the library's version. It exits 0 only if every step gave
// the expected answer.
#include <flotilla/logging.h>
#include <flotilla/node_host.h>
#include <flotilla/version.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// "add N" adds N to a total; a read returns the total.
int64_t Parse(std::string_view cmd) {
  return cmd.rfind("add ", 0) == 0 ? std::stoll(std::string(cmd.substr(4))) : 0;
}

flotilla::Status ReadAll(flotilla::SnapshotReader* r, std::string* all) {
  std::string chunk;
  do {
    FLOTILLA_RETURN_IF_ERROR(r->Read(4096, &chunk));
    *all += chunk;
  } while (!chunk.empty());
  return flotilla::Status::Ok();
}

class Total final : public flotilla::StateMachine {
 public:
  flotilla::Status Update(std::span<flotilla::SMEntry> entries) override {
    for (auto& e : entries) e.result = static_cast<uint64_t>(total_ += Parse(e.cmd));
    return flotilla::Status::Ok();
  }
  flotilla::Result<std::string> Lookup(std::string_view) override { return std::to_string(total_); }
  flotilla::Status SaveSnapshot(flotilla::SnapshotWriter* w) override {
    return w->Write(std::to_string(total_));
  }
  flotilla::Status RecoverFromSnapshot(flotilla::SnapshotReader* r) override {
    std::string all;
    FLOTILLA_RETURN_IF_ERROR(ReadAll(r, &all));
    total_ = all.empty() ? 0 : std::stoll(all);
    return flotilla::Status::Ok();
  }

 private:
  int64_t total_ = 0;
};

class ConcurrentTotal : public flotilla::ConcurrentStateMachine {
 public:
  flotilla::Status Update(std::span<flotilla::SMEntry> entries) override {
    for (auto& e : entries) {
      if (!e.noop) e.result = static_cast<uint64_t>(total_ += Parse(e.cmd));
      index_ = e.index;
    }
    return flotilla::Status::Ok();
  }
  flotilla::Result<std::string> Lookup(std::string_view) override {
    return std::to_string(total_.load());
  }
  flotilla::Result<std::shared_ptr<void>> PrepareSnapshot() override {
    return std::shared_ptr<void>(std::make_shared<std::string>(Encode()));
  }
  flotilla::Status SaveSnapshot(std::shared_ptr<void> prepared,
                                flotilla::SnapshotWriter* w) override {
    return w->Write(*static_cast<std::string*>(prepared.get()));
  }
  flotilla::Status RecoverFromSnapshot(flotilla::SnapshotReader* r) override {
    std::string all;
    FLOTILLA_RETURN_IF_ERROR(ReadAll(r, &all));
    Decode(all);
    return flotilla::Status::Ok();
  }

 protected:
  std::string Encode() const { return std::to_string(total_) + " " + std::to_string(index_); }
  void Decode(const std::string& s) {
    if (s.empty()) return;
    const size_t sp = s.find(' ');
    total_ = std::stoll(s.substr(0, sp));
    index_ = std::stoull(s.substr(sp + 1));
  }
  std::atomic<int64_t> total_{0};
  uint64_t index_ = 0;
};

// The on-disk kind keeps its total and applied index in a file of its own.
class FileTotal final : public ConcurrentTotal {
 public:
  explicit FileTotal(fs::path file) : file_(std::move(file)) {}
  flotilla::Result<uint64_t> Open() {
    std::ifstream in(file_);
    std::string s;
    std::getline(in, s);
    Decode(s);
    return index_;
  }
  flotilla::Status Sync() {
    const fs::path tmp = file_.string() + ".tmp";
    std::ofstream(tmp, std::ios::trunc) << Encode() << "\n";
    fs::rename(tmp, file_);
    return flotilla::Status::Ok();
  }

 private:
  fs::path file_;
};

class OnDiskTotal final : public flotilla::OnDiskStateMachine {
 public:
  explicit OnDiskTotal(fs::path file) : impl_(std::move(file)) {}
  flotilla::Result<uint64_t> Open() override { return impl_.Open(); }
  flotilla::Status Sync() override { return impl_.Sync(); }
  flotilla::Status Update(std::span<flotilla::SMEntry> entries) override {
    FLOTILLA_RETURN_IF_ERROR(impl_.Update(entries));
    return impl_.Sync();
  }
  flotilla::Result<std::string> Lookup(std::string_view q) override { return impl_.Lookup(q); }
  flotilla::Result<std::shared_ptr<void>> PrepareSnapshot() override {
    return impl_.PrepareSnapshot();
  }
  flotilla::Status SaveSnapshot(std::shared_ptr<void> p, flotilla::SnapshotWriter* w) override {
    return impl_.SaveSnapshot(std::move(p), w);
  }
  flotilla::Status RecoverFromSnapshot(flotilla::SnapshotReader* r) override {
    FLOTILLA_RETURN_IF_ERROR(impl_.RecoverFromSnapshot(r));
    return impl_.Sync();
  }

 private:
  FileTotal impl_;
};

int failures = 0;

void Expect(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

// Proposes "add 1" .. "add n" and reads the total back linearizably.
void WriteAndRead(flotilla::NodeHost* nh, uint64_t shard, int n, int64_t expected) {
  for (int i = 1; i <= n; ++i) {
    flotilla::RequestResult r;
    for (int attempt = 0; attempt < 100; ++attempt) {
      r = nh->SyncPropose(shard, "add " + std::to_string(i), 5s);
      if (r.ok()) break;
      std::this_thread::sleep_for(50ms);  // no leader yet
    }
    if (!r.ok()) {
      Expect(false,
             "shard " + std::to_string(shard) + " write " + std::to_string(i) + ": " + r.data);
      return;
    }
  }
  flotilla::RequestResult read;
  for (int attempt = 0; attempt < 100; ++attempt) {
    read = nh->SyncRead(shard, "", 5s);
    if (read.ok()) break;
    std::this_thread::sleep_for(50ms);
  }
  Expect(read.ok() && read.data == std::to_string(expected),
         "shard " + std::to_string(shard) + " reads " + read.data + ", expected " +
             std::to_string(expected));
}

std::unique_ptr<flotilla::NodeHost> Open(const fs::path& dir, std::string address) {
  flotilla::NodeHostConfig cfg;
  cfg.data_dir = (dir / "host").string();
  cfg.raft_address = std::move(address);
  cfg.rtt_ms = 10;
  if (flotilla::Status s = cfg.Validate(); !s.ok()) {
    std::fprintf(stderr, "bad config: %s\n", s.ToString().c_str());
    std::exit(1);
  }
  auto nh = flotilla::NodeHost::Create(cfg);
  if (!nh.ok()) {
    std::fprintf(stderr, "NodeHost::Create: %s\n", nh.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(nh).value();
}

void StartAll(flotilla::NodeHost* nh, const fs::path& dir, const flotilla::Members& members) {
  auto config = [](uint64_t shard) {
    flotilla::ShardConfig sc;
    sc.shard_id = shard;
    sc.replica_id = 1;
    return sc;
  };
  Expect(nh->StartReplica(config(1), members, flotilla::StartMode::kNewShard,
                          [](uint64_t, uint64_t) { return std::make_unique<Total>(); })
             .ok(),
         "start an in-memory replica");
  Expect(nh->StartConcurrentReplica(
               config(2), members, flotilla::StartMode::kNewShard,
               [](uint64_t, uint64_t) { return std::make_unique<ConcurrentTotal>(); })
             .ok(),
         "start a concurrent replica");
  const fs::path file = dir / "on-disk-total";
  Expect(nh->StartOnDiskReplica(
               config(3), members, flotilla::StartMode::kNewShard,
               [file](uint64_t, uint64_t) { return std::make_unique<OnDiskTotal>(file); })
             .ok(),
         "start an on-disk replica");
}

// Exactly-once writes: a proposal retried with the same session state is
// applied once, and the retry gets the first answer.
void SessionWritesApplyOnce(flotilla::NodeHost* nh, uint64_t shard, int64_t before) {
  flotilla::Result<flotilla::Session> session = nh->SyncRegisterSession(shard, 5s);
  if (!session.ok()) {
    Expect(false, "register a session: " + session.status().ToString());
    return;
  }
  uint64_t first = 0;
  for (int attempt = 0; attempt < 2; ++attempt) {  // the second is a retry
    flotilla::Result<flotilla::RequestHandle> h = nh->ProposeInSession(*session, "add 100", 5s);
    const flotilla::RequestResult r = h.ok() ? h->Wait() : flotilla::RequestResult{};
    Expect(r.ok(), "session write, attempt " + std::to_string(attempt + 1));
    if (attempt == 0) first = r.value;
    Expect(r.value == first, "the retry is answered with the first result");
  }
  session->ProposalCompleted();
  Expect(nh->SyncCloseSession(*session, 5s).ok(), "close the session");
  const flotilla::RequestResult read = nh->SyncRead(shard, "", 5s);
  Expect(read.data == std::to_string(before + 100), "the retried write applied once: " + read.data);
}

// Adds a non-voting replica of `shard` on a second NodeHost, waits until it
// has caught up, then removes it and deletes its data.
void AddAndRemoveAReplica(flotilla::NodeHost* nh, const fs::path& dir, uint64_t shard,
                          const std::string& expected) {
  auto second = Open(dir / "second", "127.0.0.1:0");
  flotilla::Result<flotilla::RequestHandle> add = nh->AddReplica(
      shard, 2, second->raft_address(), flotilla::NodeHost::MemberKind::kNonVoting, 5s);
  Expect(add.ok() && add->Wait().ok(), "add replica 2 (non-voting)");
  flotilla::ShardConfig sc;
  sc.shard_id = shard;
  sc.replica_id = 2;
  // join = true: the membership comes from the leader; `initial` is only
  // the address book of the current members.
  Expect(second
             ->StartReplica(sc, {{1, nh->raft_address()}}, flotilla::StartMode::kJoin,
                            [](uint64_t, uint64_t) { return std::make_unique<Total>(); })
             .ok(),
         "start replica 2 on the second NodeHost");
  std::string seen;
  for (int i = 0; i < 200 && seen != expected; ++i) {
    flotilla::Result<std::string> r = second->StaleRead(shard, "");
    seen = r.ok() ? *r : "";
    if (seen != expected) std::this_thread::sleep_for(50ms);
  }
  Expect(seen == expected, "replica 2 caught up: " + seen);
  flotilla::Result<flotilla::RequestHandle> remove = nh->RemoveReplica(shard, 2, 5s);
  Expect(remove.ok() && remove->Wait().ok(), "remove replica 2");
  Expect(second->StopReplica(shard).ok(), "stop replica 2");
  Expect(second->RemoveData(shard, 2).ok(), "delete replica 2's data");
  second->Close();
}

}  // namespace

int main() {
  Expect(flotilla::Version() == flotilla::kHeaderVersion,
         "library version " + std::string(flotilla::Version()) + " matches the headers' " +
             std::string(flotilla::kHeaderVersion));
  flotilla::SetLogSink(
      [](flotilla::LogLevel level, std::string_view line) {
        std::fprintf(stderr, "[flotilla %s] %.*s\n", flotilla::LogLevelName(level).data(),
                     static_cast<int>(line.size()), line.data());
      },
      flotilla::LogLevel::kWarning);
  const fs::path dir =
      fs::temp_directory_path() / ("flotilla-consumer-" + std::to_string(getpid()));
  fs::remove_all(dir);

  auto nh = Open(dir, "127.0.0.1:0");
  const std::string address = nh->raft_address();
  const flotilla::Members members{{1, address}};
  StartAll(nh.get(), dir, members);
  for (uint64_t shard = 1; shard <= 3; ++shard) WriteAndRead(nh.get(), shard, 10, 55);
  SessionWritesApplyOnce(nh.get(), 1, 55);
  AddAndRemoveAReplica(nh.get(), dir, 1, "155");

  // A restart: every kind comes back with its total (the on-disk kind from
  // its own file, the others from the log).
  nh->Close();
  nh.reset();
  nh = Open(dir, address);
  StartAll(nh.get(), dir, {});
  WriteAndRead(nh.get(), 1, 2, 158);
  for (uint64_t shard = 2; shard <= 3; ++shard) WriteAndRead(nh.get(), shard, 2, 58);
  nh->Close();
  nh.reset();
  fs::remove_all(dir);
  std::printf("%s\n", failures == 0 ? "consumer: all checks passed" : "consumer: FAILED");
  return failures == 0 ? 0 : 1;
}
