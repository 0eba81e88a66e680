#include "tools/nodehost/logdb_tool.h"

#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "engine/raft/conf_change.h"
#include "engine/snapshot_files.h"
#include "logdb/kv_logdb.h"
#include "logdb/rocks_logdb.h"
#include "proto/kv.pb.h"
#include "tools/nodehost/cli.h"
#include "tools/nodehost/config.h"

namespace flotilla::nodehost {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct LogdbArgs {
  std::string data_dir;
  std::string wal_dir;
  std::string config;
  uint64_t shard = 0;
  uint64_t replica = 0;
  uint64_t from = 0;
  uint64_t to = UINT64_MAX;
};

void PrintJson(const json& j) {
  std::cout << j.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
}

std::string Hex32(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof(b), "%08x", v);
  return b;
}

// Printable ASCII as it is, every other byte as \xNN: keys may be binary.
std::string Escape(std::string_view s, size_t max = 64) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      char b[8];
      std::snprintf(b, sizeof(b), "\\x%02x", c);
      out += b;
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

// The daemon holds RocksDB's LOCK file with a POSIX record lock while it
// runs; F_GETLK reports the holder without taking the lock. Read-only
// RocksDB takes no lock, so this check is what keeps the inspector from
// reading a database a daemon is writing.
Status CheckNotInUse(const std::string& logdb_dir) {
  const std::string lock = logdb_dir + "/LOCK";
  const int fd = ::open(lock.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::Ok();
    return Status::IOError("open " + lock + ": " + std::strerror(errno));
  }
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  const int rc = ::fcntl(fd, F_GETLK, &fl);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return Status::IOError("lock check on " + lock + ": " + std::strerror(err));
  if (fl.l_type == F_UNLCK) return Status::Ok();
  return Status::Busy("the LogDB at " + logdb_dir + " is in use by process " +
                      std::to_string(fl.l_pid) +
                      " (a running `nodehost serve`?): stop the daemon first; the inspector "
                      "only reads a data directory no daemon holds");
}

// Resolves the LogDB directory of a stopped daemon (data_dir and wal_dir from
// --config when given) and checks that no daemon holds it. Prints why not
// and sets *rc when it cannot; returns "" then.
std::string OfflineLogdbDir(LogdbArgs* a, int* rc) {
  if (!a->config.empty()) {
    Result<DaemonConfig> c = LoadConfig(a->config);
    if (!c.ok()) {
      std::cerr << "nodehost logdb: " << c.status().message() << "\n";
      *rc = kExitUsage;
      return "";
    }
    if (a->data_dir.empty()) a->data_dir = c->data_dir;
    if (a->wal_dir.empty()) a->wal_dir = c->wal_dir;
  }
  if (a->data_dir.empty()) {
    std::cerr << "nodehost logdb: give --data-dir or --config\n";
    *rc = kExitUsage;
    return "";
  }
  // The daemon keeps its NodeHost under <data_dir>/nodehost; a NodeHost's
  // own data_dir (an embedding application's) is taken as it is.
  std::error_code ec;
  if (fs::is_directory(a->data_dir + "/nodehost/logdb", ec)) a->data_dir += "/nodehost";
  const std::string dir = a->data_dir + "/logdb";
  Status s = CheckNotInUse(dir);
  if (!s.ok()) {
    std::cerr << "nodehost logdb: " << s.message() << "\n";
    *rc = s.code() == StatusCode::kBusy ? kExitUnavailable : kExitError;
    return "";
  }
  if (!fs::exists(dir + "/CURRENT", ec)) {
    std::cerr << "nodehost logdb: no LogDB at " << dir << "\n";
    *rc = kExitUsage;
    return "";
  }
  return dir;
}

// Opens the LogDB of a stopped daemon read-only.
std::unique_ptr<logdb::KvLogDB> OpenOffline(LogdbArgs* a, int* rc) {
  const std::string dir = OfflineLogdbDir(a, rc);
  if (dir.empty()) return nullptr;
  Result<std::unique_ptr<logdb::KvLogDB>> db = logdb::OpenRocksLogDBReadOnly(dir, a->wal_dir);
  if (!db.ok()) {
    std::cerr << "nodehost logdb: cannot open " << dir << ": " << db.status().ToString() << "\n";
    *rc = db.status().code() == StatusCode::kCorruption ? kExitDamaged : kExitError;
    return nullptr;
  }
  return std::move(db).value();
}

std::string Ids(const std::vector<raft::ReplicaId>& ids) {
  std::string out;
  for (raft::ReplicaId id : ids) out += (out.empty() ? "" : ",") + std::to_string(id);
  return out;
}

json MembershipJson(const raft::Membership& m) {
  return {{"voters", m.voters},         {"voters_outgoing", m.voters_outgoing},
          {"non_voting", m.non_voting}, {"witnesses", m.witnesses},
          {"removed", m.removed},       {"auto_leave", m.auto_leave}};
}

json StateJson(const logdb::ReplicaKey& k, const logdb::ReplicaState& st) {
  json j = {{"shard", k.shard_id},
            {"replica", k.replica_id},
            {"term", st.hard_state.term},
            {"vote", st.hard_state.vote},
            {"commit", st.hard_state.commit},
            {"first_index", st.first_index},
            {"last_index", st.last_index},
            {"snapshot",
             {{"index", st.snapshot.index},
              {"term", st.snapshot.term},
              {"membership", MembershipJson(st.snapshot.membership)}}}};
  if (st.bootstrap) {
    json members = json::object();
    for (const auto& [id, addr] : st.bootstrap->members) members[std::to_string(id)] = addr;
    j["bootstrap"] = {{"join", st.bootstrap->join},
                      {"state_machine_kind", st.bootstrap->state_machine_kind},
                      {"members", members}};
  }
  return j;
}

int CmdList(LogdbArgs* a, bool as_json) {
  int rc = kExitOk;
  std::unique_ptr<logdb::KvLogDB> db = OpenOffline(a, &rc);
  if (!db) return rc;
  Result<std::vector<logdb::ReplicaKey>> keys = db->ListReplicas();
  if (!keys.ok()) {
    std::cerr << "nodehost logdb list: " << keys.status().ToString() << "\n";
    return kExitDamaged;
  }
  json all = json::array();
  std::vector<std::vector<std::string>> rows;
  for (const logdb::ReplicaKey& k : *keys) {
    Result<logdb::ReplicaState> st = db->ReadState(k.shard_id, k.replica_id);
    if (!st.ok()) {
      rc = kExitDamaged;
      all.push_back(
          {{"shard", k.shard_id}, {"replica", k.replica_id}, {"error", st.status().ToString()}});
      rows.push_back({std::to_string(k.shard_id), std::to_string(k.replica_id), "-", "-", "-", "-",
                      "-", "-", "damaged: " + st.status().message()});
      continue;
    }
    all.push_back(StateJson(k, *st));
    const bool empty = st->last_index < st->first_index;
    rows.push_back(
        {std::to_string(k.shard_id), std::to_string(k.replica_id),
         std::to_string(st->hard_state.term), std::to_string(st->hard_state.vote),
         std::to_string(st->hard_state.commit), empty ? "-" : std::to_string(st->first_index),
         empty ? "-" : std::to_string(st->last_index),
         st->snapshot.IsEmpty()
             ? "-"
             : std::to_string(st->snapshot.index) + "/" + std::to_string(st->snapshot.term),
         "voters " + Ids(st->snapshot.IsEmpty() ? std::vector<raft::ReplicaId>{}
                                                : st->snapshot.membership.voters)});
  }
  if (as_json) {
    PrintJson({{"replicas", all}});
    return rc;
  }
  PrintTable({"SHARD", "REPLICA", "TERM", "VOTE", "COMMIT", "FIRST", "LAST", "SNAPSHOT", "NOTE"},
             rows);
  return rc;
}

const char* TypeName(raft::EntryType t) {
  switch (t) {
    case raft::EntryType::kNormal:
      return "normal";
    case raft::EntryType::kConfChange:
      return "conf-change";
    case raft::EntryType::kMetadata:
      return "metadata";
  }
  return "unknown";
}

const char* ConfTypeName(raft::ConfChangeType t) {
  switch (t) {
    case raft::ConfChangeType::kAddVoter:
      return "add-voter";
    case raft::ConfChangeType::kAddNonVoting:
      return "add-non-voting";
    case raft::ConfChangeType::kAddWitness:
      return "add-witness";
    case raft::ConfChangeType::kRemove:
      return "remove";
  }
  return "unknown";
}

// A one-line reading of an entry's command: a membership change spelled
// out, a key-value command summarised, anything else by its size.
std::string Summary(const raft::Entry& e) {
  if (e.type == raft::EntryType::kConfChange) {
    raft::ConfChange cc;
    if (!raft::DecodeConfChange(e.cmd, &cc)) return "malformed conf change";
    if (cc.IsLeaveJoint()) return "leave joint configuration";
    std::string out;
    for (const raft::ConfChangeItem& i : cc.items) {
      out += (out.empty() ? "" : "; ") + std::string(ConfTypeName(i.type)) + " " +
             std::to_string(i.replica);
      if (!i.context.empty()) out += " at " + Escape(i.context);
    }
    return out;
  }
  if (e.cmd.empty()) return "(empty)";
  Command c;
  if (e.type == raft::EntryType::kNormal &&
      c.ParseFromArray(e.cmd.data(), static_cast<int>(e.cmd.size())) &&
      c.op_case() != Command::OP_NOT_SET) {
    switch (c.op_case()) {
      case Command::kPut:
        return "put " + Escape(c.put().key()) + " (" + std::to_string(c.put().value().size()) +
               " bytes)";
      case Command::kDel:
        return "delete " + Escape(c.del().key());
      case Command::kCas:
        return "cas " + Escape(c.cas().key()) + " (" + std::to_string(c.cas().value().size()) +
               " bytes)";
      default:
        break;
    }
  }
  return std::to_string(e.cmd.size()) + " bytes";
}

int CmdDump(LogdbArgs* a, bool as_json) {
  int rc = kExitOk;
  std::unique_ptr<logdb::KvLogDB> db = OpenOffline(a, &rc);
  if (!db) return rc;
  Result<logdb::ReplicaState> st = db->ReadState(a->shard, a->replica);
  if (!st.ok()) {
    std::cerr << "nodehost logdb dump: " << st.status().ToString() << "\n";
    return kExitDamaged;
  }
  const raft::Index lo = std::max(a->from, st->first_index);
  const raft::Index hi = std::min(a->to, st->last_index);  // inclusive
  json entries = json::array();
  if (!as_json) std::cout << "INDEX  TERM  TYPE  CLIENT  SERIES  COMMAND\n";
  Status err;
  for (raft::Index next = lo; next <= hi && err.ok();) {
    std::vector<raft::Entry> out;
    err = db->Entries(a->shard, a->replica, next, hi + 1, 4 << 20, &out);
    for (const raft::Entry& e : out) {
      if (as_json) {
        entries.push_back({{"index", e.index},
                           {"term", e.term},
                           {"type", TypeName(e.type)},
                           {"key", e.key},
                           {"client_id", e.client_id},
                           {"series_id", e.series_id},
                           {"responded_to", e.responded_to},
                           {"bytes", e.cmd.size()},
                           {"command", Summary(e)}});
      } else {
        std::cout << e.index << "  " << e.term << "  " << TypeName(e.type) << "  " << e.client_id
                  << "  " << e.series_id << "  " << Summary(e) << "\n";
      }
    }
    if (out.empty()) break;
    next = out.back().index + 1;
  }
  if (as_json) {
    json j = {{"shard", a->shard}, {"replica", a->replica}, {"entries", entries}};
    if (!err.ok()) j["error"] = err.ToString();
    PrintJson(j);
  }
  if (!err.ok()) {
    std::cerr << "nodehost logdb dump: " << err.ToString() << "\n";
    return kExitDamaged;
  }
  return kExitOk;
}

// One snapshot directory checked against its checksums file, file by file.
json CheckSnapshotDir(const std::string& dir, std::vector<std::string>* problems) {
  json j = {{"dir", dir}, {"files", json::array()}};
  Result<std::vector<engine::SnapshotFileSum>> sums = engine::ReadSnapshotChecksums(dir);
  if (sums.status().code() == StatusCode::kNotFound) {
    j["checksums"] = "none (written before checksums were kept; the daemon adds them on restore)";
    return j;
  }
  if (!sums.ok()) {
    j["checksums"] = sums.status().message();
    problems->push_back(sums.status().message());
    return j;
  }
  j["checksums"] = "present";
  const size_t problems_before = problems->size();
  for (const engine::SnapshotFileSum& want : *sums) {
    engine::SnapshotFileSum got;
    Status s = engine::ChecksumFile(dir + "/" + want.name, &got);
    json f = {{"name", want.name}, {"size", want.size}, {"crc32c", Hex32(want.crc)}};
    if (!s.ok()) {
      f["status"] = s.ToString();
    } else if (got.size != want.size || got.crc != want.crc) {
      f["status"] = "checksum mismatch: found " + std::to_string(got.size) + " bytes, crc32c " +
                    Hex32(got.crc);
    } else {
      f["status"] = "ok";
    }
    if (f["status"] != "ok") {
      problems->push_back("snapshot " + dir + ": file " + want.name + ": " +
                          f["status"].get<std::string>());
    }
    j["files"].push_back(f);
  }
  // The whole check, for what the per-file loop cannot see (unlisted files).
  Status whole = engine::CheckSnapshotFiles(dir, *sums);
  if (!whole.ok() && problems->size() == problems_before) problems->push_back(whole.message());
  return j;
}

// The snapshot directories of every replica under <data_dir>/snapshots.
json CheckAllSnapshots(const std::string& data_dir, std::vector<std::string>* problems) {
  json out = json::array();
  std::error_code ec;
  std::vector<fs::path> dirs;
  for (const auto& root : fs::directory_iterator(data_dir + "/snapshots", ec)) {
    if (!root.is_directory()) continue;
    for (const auto& d : fs::directory_iterator(root.path(), ec)) {
      const std::string name = d.path().filename().string();
      if (d.is_directory() && name.rfind("snapshot-", 0) == 0 && !name.ends_with(".tmp"))
        dirs.push_back(d.path());
    }
  }
  std::sort(dirs.begin(), dirs.end());
  for (const fs::path& d : dirs) out.push_back(CheckSnapshotDir(d.string(), problems));
  return out;
}

int CmdVerify(LogdbArgs* a, bool as_json) {
  int rc = kExitOk;
  std::unique_ptr<logdb::KvLogDB> db = OpenOffline(a, &rc);
  if (!db) return rc;
  std::vector<std::string> problems;
  logdb::KvLogDB::VerifyCounts counts;
  Status s = db->VerifyAll([&](const Status& p) { problems.push_back(p.message()); }, &counts);
  if (!s.ok()) problems.push_back("reading the LogDB: " + s.ToString());
  const json snapshots = CheckAllSnapshots(a->data_dir, &problems);
  if (as_json) {
    PrintJson({{"records", counts.records},
               {"entries", counts.entries},
               {"snapshots", snapshots.size()},
               {"problems", problems},
               {"ok", problems.empty()}});
  } else {
    for (const std::string& p : problems) std::cout << "damaged: " << p << "\n";
    std::cout << "records " << counts.records << ", entries " << counts.entries
              << ", snapshot directories " << snapshots.size() << ": "
              << (problems.empty() ? "every checksum matches"
                                   : std::to_string(problems.size()) + " problem(s)")
              << "\n";
  }
  return problems.empty() ? kExitOk : kExitDamaged;
}

int CmdSnapshot(LogdbArgs* a, bool as_json) {
  int rc = kExitOk;
  std::unique_ptr<logdb::KvLogDB> db = OpenOffline(a, &rc);
  if (!db) return rc;
  std::vector<std::string> problems;
  json recorded = json::array();
  Result<std::vector<logdb::ReplicaKey>> keys = db->ListReplicas();
  if (!keys.ok()) problems.push_back(keys.status().message());
  for (const logdb::ReplicaKey& k : keys.ok() ? *keys : std::vector<logdb::ReplicaKey>{}) {
    if (a->shard != 0 && k.shard_id != a->shard) continue;
    Result<logdb::ReplicaState> st = db->ReadState(k.shard_id, k.replica_id);
    if (!st.ok()) {
      problems.push_back(st.status().message());
      continue;
    }
    if (st->snapshot.IsEmpty()) continue;
    const std::string dir = engine::SnapshotPath(
        engine::SnapshotRoot(a->data_dir, k.shard_id, k.replica_id), st->snapshot.index);
    json j = CheckSnapshotDir(dir, &problems);
    j["shard"] = k.shard_id;
    j["replica"] = k.replica_id;
    j["index"] = st->snapshot.index;
    j["term"] = st->snapshot.term;
    j["membership"] = MembershipJson(st->snapshot.membership);
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) problems.push_back("snapshot " + dir + " is missing");
    recorded.push_back(j);
  }
  if (as_json) {
    PrintJson({{"snapshots", recorded}, {"problems", problems}, {"ok", problems.empty()}});
  } else {
    for (const json& j : recorded) {
      std::cout << "shard " << j["shard"] << " replica " << j["replica"] << ": snapshot "
                << j["index"] << " term " << j["term"] << ", voters "
                << Ids(j["membership"]["voters"].get<std::vector<raft::ReplicaId>>()) << "\n  "
                << j["dir"].get<std::string>() << " (checksums "
                << j["checksums"].get<std::string>() << ")\n";
      for (const json& f : j["files"]) {
        std::cout << "    " << f["name"].get<std::string>() << "  " << f["size"]
                  << " bytes  crc32c " << f["crc32c"].get<std::string>() << "  "
                  << f["status"].get<std::string>() << "\n";
      }
    }
    for (const std::string& p : problems) std::cout << "damaged: " << p << "\n";
  }
  return problems.empty() ? kExitOk : kExitDamaged;
}

}  // namespace

void AddLogdbCommands(CLI::App* app, const std::string* output, int* rc) {
  auto a = std::make_shared<LogdbArgs>();
  auto* cmd =
      app->add_subcommand("logdb", "inspect a data directory offline (the daemon must be stopped)");
  cmd->require_subcommand(1);
  cmd->fallthrough();
  cmd->add_option("--data-dir", a->data_dir, "the daemon's data_dir");
  cmd->add_option("--wal-dir", a->wal_dir, "the daemon's wal_dir, when it has one");
  cmd->add_option("--config", a->config, "take data_dir and wal_dir from this daemon config");
  const auto json_out = [output] { return *output == "json"; };
  cmd->add_subcommand("list", "replicas: hard state, first and last index, snapshot")
      ->callback([=] { *rc = CmdList(a.get(), json_out()); });
  auto* dump = cmd->add_subcommand("dump", "the entries of one replica, decoded");
  dump->add_option("--shard", a->shard, "shard id")->required();
  dump->add_option("--replica", a->replica, "replica id")->required();
  dump->add_option("--from", a->from, "first index (default: the first held)");
  dump->add_option("--to", a->to, "last index, inclusive (default: the last held)");
  dump->callback([=] { *rc = CmdDump(a.get(), json_out()); });
  cmd->add_subcommand("verify", "check every checksum of every record and snapshot file")
      ->callback([=] { *rc = CmdVerify(a.get(), json_out()); });
  auto* snap = cmd->add_subcommand("snapshot", "recorded snapshots: metadata and file checksums");
  snap->add_option("--shard", a->shard, "this shard only");
  snap->callback([=] { *rc = CmdSnapshot(a.get(), json_out()); });
}

std::unique_ptr<logdb::LogDB> OpenStoppedLogdbForWriting(const std::string& data_dir,
                                                         const std::string& wal_dir,
                                                         const std::string& config, int* rc) {
  LogdbArgs a;
  a.data_dir = data_dir;
  a.wal_dir = wal_dir;
  a.config = config;
  const std::string dir = OfflineLogdbDir(&a, rc);
  if (dir.empty()) return nullptr;
  logdb::RocksOptions o;
  o.dir = dir;
  o.wal_dir = a.wal_dir;
  Result<std::unique_ptr<logdb::LogDB>> db = logdb::OpenRocksLogDB(o);
  if (!db.ok()) {
    std::cerr << "nodehost: cannot open " << dir << ": " << db.status().ToString() << "\n";
    *rc = db.status().code() == StatusCode::kCorruption ? kExitDamaged : kExitError;
    return nullptr;
  }
  return std::move(db).value();
}

}  // namespace flotilla::nodehost
