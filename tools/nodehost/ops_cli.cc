#include "tools/nodehost/ops_cli.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "tools/nodehost/archive.h"
#include "tools/nodehost/cli.h"
#include "tools/nodehost/client.h"
#include "tools/nodehost/kv_state_machine.h"

namespace flotilla::nodehost {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

void PrintJson(const json& j) {
  std::cout << j.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
}

std::string Hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, v);
  return buf;
}

const char* KindName(MemberKind k) {
  return k == NON_VOTING ? "non-voting" : k == WITNESS ? "witness" : "voter";
}

bool NotHosted(const CallInfo& info) {
  return info.status.error_code() == grpc::StatusCode::FAILED_PRECONDITION &&
         !info.hosts_hint.empty();
}

// Writes `bytes` to `path` through a temporary file, synced and renamed, so
// that a crash never leaves a half archive under the name asked for.
std::string WriteFileAtomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return "cannot create " + tmp + ": " + std::strerror(errno);
  const bool written = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size() &&
                       std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  const int saved = errno;
  if (std::fclose(f) != 0 || !written) {
    std::remove(tmp.c_str());
    return "writing " + tmp + ": " + std::strerror(written ? errno : saved);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    return "renaming " + tmp + " to " + path + ": " + why;
  }
  return "";
}

std::string NowUtc() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The daemons to ask for shard `shard`'s replica: node `node`'s client
// address (from the daemons' node table) when it is non-zero, otherwise
// every --endpoints one in order.
std::vector<std::string> ExportEndpoints(const OpsEnv& env, uint64_t node, int* rc) {
  if (node == 0) return env.client->options().endpoints;
  ShardMapResponse map;
  const CallInfo info = env.client->GetShardMap(&map);
  if (!info.ok()) {
    *rc = env.fail(info, "snapshot export");
    return {};
  }
  for (const NodeAddress& n : map.nodes())
    if (n.node_id() == node) return {n.client_address()};
  std::cerr << "nodehost snapshot export: node " << node << " is not in the daemons' node table\n";
  *rc = kExitUsage;
  return {};
}

json ArchiveHeader(uint64_t shard, const ExportShardResponse& res, uint64_t keys) {
  json members = json::array();
  for (const Member& m : res.members()) {
    members.push_back({{"replica", m.replica()},
                       {"kind", KindName(m.kind())},
                       {"raft_address", m.raft_address()}});
  }
  return {{"format", "flotilla-kv-archive"},
          {"version", 1},
          {"shard", shard},
          {"node", res.node_id()},
          {"replica", res.replica()},
          {"applied_index", res.applied_index()},
          {"term", res.term()},
          {"members", members},
          {"keys", keys},
          {"state_bytes", res.state().size()},
          {"exported_at", NowUtc()},
          {"nodehost_version", FLOTILLA_NODEHOST_VERSION}};
}

int CmdExport(const OpsEnv& env, uint64_t shard, uint64_t node, const std::string& path) {
  int rc = kExitOk;
  ExportShardRequest req;
  req.set_shard(shard);
  req.set_timeout_ms(env.timeout_ms);
  ExportShardResponse res;
  CallInfo failed;
  bool done = false;
  for (const std::string& e : ExportEndpoints(env, node, &rc)) {
    const CallInfo info = env.client->ExportShard(e, req, &res);
    if (info.ok()) {
      done = true;
      break;
    }
    if (!NotHosted(info) || failed.ok()) failed = info;
  }
  if (rc != kExitOk) return rc;
  if (!done) {
    if (NotHosted(failed)) {
      std::cerr << "nodehost snapshot export: no daemon at --endpoints hosts shard " << shard
                << "; it is hosted at " << failed.hosts_hint << "\n";
      return kExitRejected;
    }
    return env.fail(failed, "snapshot export");
  }
  uint64_t applied = 0, keys = 0;
  const Status parsed = ParseKvState(res.state(), &applied, [&keys](auto, auto) {
    ++keys;
    return Status::Ok();
  });
  if (!parsed.ok() || applied != res.applied_index()) {
    std::cerr << "nodehost snapshot export: node " << res.node_id()
              << " sent a state that does not parse: " << parsed.ToString() << "\n";
    return kExitError;
  }
  const json header = ArchiveHeader(shard, res, keys);
  const std::string archive = EncodeArchive(header.dump(), res.state());
  if (const std::string err = WriteFileAtomically(path, archive); !err.empty()) {
    std::cerr << "nodehost snapshot export: " << err << "\n";
    return kExitError;
  }
  if (env.json) {
    json out = header;
    out["ok"] = true;
    out["file"] = path;
    out["file_bytes"] = archive.size();
    PrintJson(out);
  } else {
    std::cout << "exported shard " << shard << " from node " << res.node_id() << " (replica "
              << res.replica() << ") at applied index " << res.applied_index() << ", term "
              << res.term() << ": " << keys << " keys, " << archive.size() << " bytes, to " << path
              << "\n";
  }
  return kExitOk;
}

// An archive read, checked and parsed: its header and every key.
struct LoadedArchive {
  std::string bytes;
  json header;
  std::vector<std::pair<std::string_view, std::string_view>> kvs;  // into bytes
  uint64_t applied = 0;
};

// Reads and checks `path`; prints why and returns a non-zero exit code when
// it cannot be used.
int LoadArchive(const std::string& path, std::string_view what, LoadedArchive* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::cerr << "nodehost " << what << ": cannot open " << path << ": " << std::strerror(errno)
              << "\n";
    return kExitUsage;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  out->bytes = ss.str();
  Result<DecodedArchive> d = DecodeArchive(out->bytes);
  std::string why;
  if (!d.ok()) {
    why = d.status().message();
  } else {
    out->header = json::parse(d->header_json, nullptr, false);
    const Status s = ParseKvState(d->state, &out->applied, [out](auto k, auto v) {
      out->kvs.emplace_back(k, v);
      return Status::Ok();
    });
    if (out->header.is_discarded() || !out->header.is_object()) {
      why = "its header is not JSON";
    } else if (!s.ok()) {
      why = s.message();
    } else if (out->header.value("applied_index", uint64_t{0}) != out->applied ||
               out->header.value("keys", uint64_t{0}) != out->kvs.size()) {
      why = "its header does not match its state (applied index or key count)";
    }
  }
  if (why.empty()) return kExitOk;
  std::cerr << "nodehost " << what << ": " << path << ": refused: " << why << "\n";
  return kExitDamaged;
}

int CmdVerify(const OpsEnv& env, const std::string& path) {
  LoadedArchive a;
  if (const int rc = LoadArchive(path, "snapshot verify", &a); rc != kExitOk) return rc;
  if (env.json) {
    json out = a.header;
    out["ok"] = true;
    out["file"] = path;
    PrintJson(out);
  } else {
    std::cout << path << ": OK: shard " << a.header.value("shard", uint64_t{0}) << ", "
              << a.kvs.size() << " keys at applied index " << a.applied << ", exported from node "
              << a.header.value("node", uint64_t{0}) << " at "
              << a.header.value("exported_at", std::string()) << "\n";
  }
  return kExitOk;
}

// Puts every key of `a` with `parallel` threads; each put is tried up to
// three times (a put is idempotent, so one whose outcome was unknown may be
// sent again). Returns the first failure, or an OK CallInfo.
CallInfo PutAll(Client* c, const LoadedArchive& a, uint32_t parallel) {
  std::atomic<size_t> next{0};
  std::mutex mu;
  CallInfo failed;
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < parallel; ++t) {
    threads.emplace_back([&] {
      for (size_t i = next++; i < a.kvs.size() && !stop; i = next++) {
        const std::string key(a.kvs[i].first), value(a.kvs[i].second);
        CallInfo info;
        for (int attempt = 0; attempt < 3; ++attempt) {
          PutResponse res;
          info = c->Put(key, value, &res);
          if (info.ok()) break;
        }
        if (!info.ok()) {
          std::lock_guard<std::mutex> l(mu);
          if (failed.ok()) failed = info;
          stop = true;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return failed;
}

int CmdRestore(const OpsEnv& env, const std::string& path, bool force, uint32_t parallel) {
  LoadedArchive a;
  if (const int rc = LoadArchive(path, "snapshot restore", &a); rc != kExitOk) return rc;
  if (!force) {
    std::vector<KeyValue> some;
    bool more = false;
    const CallInfo info = env.client->Scan(Client::ScanRange(), 1, 0, false, &some, &more);
    if (!info.ok()) return env.fail(info, "snapshot restore");
    if (!some.empty()) {
      std::cerr << "nodehost snapshot restore: refused: the cluster at --endpoints already holds "
                   "keys (\""
                << some[0].key()
                << "\", ...); restore into a new, empty cluster, or pass --force to write the "
                   "archive's keys over what is there (keys it does not hold are kept)\n";
      return kExitRejected;
    }
  }
  const auto start = Clock::now();
  const CallInfo failed = PutAll(env.client, a, parallel);
  if (!failed.ok()) return env.fail(failed, "snapshot restore");
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const uint64_t shard = a.header.value("shard", uint64_t{0});
  if (env.json) {
    PrintJson({{"ok", true},
               {"file", path},
               {"shard", shard},
               {"keys", a.kvs.size()},
               {"applied_index", a.applied},
               {"seconds", seconds}});
  } else {
    std::printf("restored %zu keys of shard %" PRIu64 " (applied index %" PRIu64 " of node %" PRIu64
                ") in %.2f s\n",
                a.kvs.size(), shard, a.applied, a.header.value("node", uint64_t{0}), seconds);
  }
  return kExitOk;
}

}  // namespace

void AddArchiveCommands(CLI::App* snapshot, const OpsEnvFn& env, int* rc) {
  struct Args {
    uint64_t shard = 0, node = 0;
    std::string out, in;
    bool force = false;
    uint32_t parallel = 16;
  };
  auto a = std::make_shared<Args>();
  auto* exp = snapshot->add_subcommand(
      "export", "write one shard's data, read linearizably from one replica, to a checked archive");
  exp->add_option("--shard", a->shard, "the shard")->required();
  exp->add_option("--out", a->out, "the archive file to write")->required();
  exp->add_option("--node", a->node,
                  "export from this node's replica (default: the first "
                  "daemon at --endpoints that hosts the shard)");
  exp->callback([=] {
    const OpsEnv e = env(true);
    if (e.client != nullptr) *rc = CmdExport(e, a->shard, a->node, a->out);
  });
  auto* verify = snapshot->add_subcommand("verify", "check an archive's checksum and layout");
  verify->add_option("FILE", a->in, "the archive")->required();
  verify->callback([=] { *rc = CmdVerify(env(false), a->in); });
  auto* restore = snapshot->add_subcommand(
      "restore", "write every key of an archive into the (empty) cluster at --endpoints");
  restore->add_option("--in", a->in, "the archive")->required();
  restore->add_flag("--force", a->force, "write even when the cluster already holds keys");
  restore->add_option("--parallel", a->parallel, "puts in flight")->check(CLI::Range(1u, 1024u));
  restore->callback([=] {
    const OpsEnv e = env(true);
    if (e.client != nullptr) *rc = CmdRestore(e, a->in, a->force, a->parallel);
  });
}

namespace {

// One replica's answer to a consistency check.
struct ReplicaHash {
  uint64_t replica = 0, node = 0, index = 0, hash = 0;
  std::string endpoint;
  std::string result;  // match, MISMATCH, behind, superseded, not checked
};

struct ShardCheck {
  uint64_t shard = 0, index = 0, hash = 0;  // hash: the majority's
  std::vector<ReplicaHash> replicas;
  bool mismatch = false, incomplete = false;
  std::string summary;
};

// Polls the daemon at `endpoint` until its replica of the shard has applied
// the HashOp at `index` (or a later one), or `deadline`. False when the
// daemon does not host the shard or hosts a witness of it.
bool PollHash(Client* c, const std::string& endpoint, uint64_t shard, uint64_t index,
              Clock::time_point deadline, ReplicaHash* out) {
  GetHashRequest req;
  req.set_shard(shard);
  out->endpoint = endpoint;
  while (true) {
    GetHashResponse res;
    const CallInfo info = c->GetHash(endpoint, req, &res);
    if (NotHosted(info)) return false;
    if (info.ok() && res.witness()) return false;  // nothing to compare
    if (info.ok()) {
      out->replica = res.replica();
      out->node = res.node_id();
      out->index = res.index();
      out->hash = res.hash();
      if (res.index() >= index) {
        out->result.clear();
        return true;
      }
      out->result = "behind (applied " + std::to_string(res.applied_index()) + ")";
    } else {
      out->result = "not checked (" +
                    (info.unreachable ? std::string("unreachable") : info.status.error_message()) +
                    ")";
    }
    if (Clock::now() >= deadline) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// Names each replica's result against the hash most replicas at `index`
// hold; with no majority every one that differs from another is a mismatch.
void Judge(ShardCheck* sc) {
  std::map<uint64_t, size_t> votes;
  size_t at_index = 0;
  for (const ReplicaHash& r : sc->replicas) {
    if (r.index == sc->index && r.result.empty()) {
      ++votes[r.hash];
      ++at_index;
    }
  }
  const auto best = std::max_element(votes.begin(), votes.end(),
                                     [](auto& x, auto& y) { return x.second < y.second; });
  const bool majority = best != votes.end() && best->second * 2 > at_index;
  if (majority) sc->hash = best->first;
  std::string differ;
  for (ReplicaHash& r : sc->replicas) {
    if (!r.result.empty() && r.index < sc->index) {
      sc->incomplete = true;
      continue;
    }
    if (r.index > sc->index) {
      r.result = "superseded (a later check, index " + std::to_string(r.index) + ")";
      sc->incomplete = true;
    } else if (votes.size() == 1 || (majority && r.hash == sc->hash)) {
      r.result = "match";
    } else {
      r.result = "MISMATCH";
      sc->mismatch = true;
      differ += (differ.empty() ? "" : ", ") + std::string("replica ") + std::to_string(r.replica) +
                " (node " + std::to_string(r.node) + ")";
    }
  }
  const std::string where =
      "shard " + std::to_string(sc->shard) + " at index " + std::to_string(sc->index);
  if (sc->mismatch) {
    const bool one = differ.find(',') == std::string::npos;
    sc->summary = where + ": MISMATCH: " + differ +
                  (majority ? (one ? " differs" : " differ") + std::string(" from the ") +
                                  std::to_string(best->second) + " that agree"
                            : " (no majority agrees)");
  } else if (sc->incomplete) {
    sc->summary = where + ": INCOMPLETE: not every replica could be compared";
  } else {
    sc->summary = where + ": " + std::to_string(sc->replicas.size()) + " replicas agree";
  }
}

// Adds a row for each member with a state machine (voters, non-voting) that
// no daemon at --endpoints answered for.
void AddUnchecked(Client* c, ShardCheck* sc) {
  ShardResponse res;
  if (!c->Shard(sc->shard, &res).ok()) return;
  // A witness may be listed as a voter too (it votes): leave out every id
  // listed as a witness.
  std::set<uint64_t> witnesses;
  for (const Member& m : res.replica().members())
    if (m.kind() == WITNESS) witnesses.insert(m.replica());
  for (const Member& m : res.replica().members()) {
    if (witnesses.count(m.replica()) != 0) continue;
    const bool seen = std::any_of(sc->replicas.begin(), sc->replicas.end(),
                                  [&m](const ReplicaHash& r) { return r.replica == m.replica(); });
    if (seen) continue;
    ReplicaHash r;
    r.replica = m.replica();
    r.result = "not checked (no daemon at --endpoints answered for it)";
    sc->replicas.push_back(r);
  }
}

int CheckShard(const OpsEnv& env, uint64_t shard, double wait_seconds, ShardCheck* sc) {
  sc->shard = shard;
  ComputeHashRequest req;
  req.set_shard(shard);
  req.set_timeout_ms(env.timeout_ms);
  ComputeHashResponse res;
  const CallInfo info = env.client->ComputeHash(req, &res);
  if (!info.ok()) return env.fail(info, "check consistency");
  sc->index = res.index();
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(wait_seconds));
  for (const std::string& e : env.client->options().endpoints) {
    ReplicaHash r;
    if (PollHash(env.client, e, shard, sc->index, deadline, &r)) sc->replicas.push_back(r);
  }
  AddUnchecked(env.client, sc);
  std::sort(sc->replicas.begin(), sc->replicas.end(),
            [](const ReplicaHash& x, const ReplicaHash& y) { return x.replica < y.replica; });
  Judge(sc);
  return kExitOk;
}

void PrintChecks(const OpsEnv& env, const std::vector<ShardCheck>& checks) {
  if (env.json) {
    json out = {{"shards", json::array()}};
    for (const ShardCheck& sc : checks) {
      json reps = json::array();
      for (const ReplicaHash& r : sc.replicas) {
        reps.push_back({{"replica", r.replica},
                        {"node", r.node},
                        {"endpoint", r.endpoint},
                        {"index", r.index},
                        {"hash", Hex16(r.hash)},
                        {"result", r.result}});
      }
      out["shards"].push_back({{"shard", sc.shard},
                               {"index", sc.index},
                               {"hash", Hex16(sc.hash)},
                               {"result", sc.mismatch     ? "mismatch"
                                          : sc.incomplete ? "incomplete"
                                                          : "match"},
                               {"summary", sc.summary},
                               {"replicas", reps}});
    }
    PrintJson(out);
    return;
  }
  std::vector<std::vector<std::string>> rows;
  for (const ShardCheck& sc : checks) {
    for (const ReplicaHash& r : sc.replicas) {
      rows.push_back({std::to_string(sc.shard), std::to_string(r.replica),
                      r.node == 0 ? "-" : std::to_string(r.node),
                      r.index == 0 ? "-" : std::to_string(r.index),
                      r.index == 0 ? "-" : Hex16(r.hash), r.result});
    }
  }
  PrintTable({"SHARD", "REPLICA", "NODE", "HASH INDEX", "HASH", "RESULT"}, rows);
  for (const ShardCheck& sc : checks) std::cout << sc.summary << "\n";
}

int CmdConsistency(const OpsEnv& env, uint64_t shard, double wait_seconds) {
  std::vector<uint64_t> shards;
  if (shard != 0) {
    shards.push_back(shard);
  } else {
    ShardMapResponse map;
    const CallInfo info = env.client->GetShardMap(&map);
    if (!info.ok()) return env.fail(info, "check consistency");
    shards.assign(map.shard_ids().begin(), map.shard_ids().end());
  }
  std::vector<ShardCheck> checks(shards.size());
  for (size_t i = 0; i < shards.size(); ++i) {
    if (const int rc = CheckShard(env, shards[i], wait_seconds, &checks[i]); rc != kExitOk)
      return rc;
  }
  PrintChecks(env, checks);
  const auto any = [&](bool ShardCheck::*f) {
    return std::any_of(checks.begin(), checks.end(), [f](const ShardCheck& c) { return c.*f; });
  };
  if (any(&ShardCheck::mismatch)) return kExitCheckFailed;
  return any(&ShardCheck::incomplete) ? kExitUnavailable : kExitOk;
}

}  // namespace

void AddConsistencyCommand(CLI::App* check, const OpsEnvFn& env, int* rc) {
  struct Args {
    uint64_t shard = 0;
    double wait = 10;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = check->add_subcommand(
      "consistency",
      "hash every replica's state at one index (a Raft entry asks for it) and compare them");
  cmd->add_option("--shard", a->shard, "the shard (default: every shard)");
  cmd->add_option("--wait", a->wait, "seconds to wait for each replica to apply the entry")
      ->check(CLI::Range(0.0, 3600.0));
  cmd->callback([=] {
    const OpsEnv e = env(true);
    if (e.client != nullptr) *rc = CmdConsistency(e, a->shard, a->wait);
  });
}

}  // namespace flotilla::nodehost
