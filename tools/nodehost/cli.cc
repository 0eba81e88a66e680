#include "tools/nodehost/cli.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include "flotilla/version.h"
#include "tools/nodehost/bench.h"
#include "tools/nodehost/check_perf.h"
#include "tools/nodehost/client.h"
#include "tools/nodehost/config.h"
#include "tools/nodehost/logdb_tool.h"
#include "tools/nodehost/ops_cli.h"
#include "tools/nodehost/recover.h"
#include "tools/nodehost/serve.h"

namespace flotilla::nodehost {
namespace {

using json = nlohmann::json;

struct Globals {
  std::string endpoints = "127.0.0.1:7201";
  std::string output = "table";
  std::string token_file;
  std::string cacert, cert, key;
  uint32_t timeout_ms = 5000;
  bool no_follow = false;
};

bool Json(const Globals& g) { return g.output == "json"; }

void PrintJson(const json& j) {
  std::cout << j.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
}

// Prints why a call failed, with what to try, and returns its exit code.
int Fail(const Globals& g, const CallInfo& info, std::string_view what) {
  const grpc::Status& s = info.status;
  std::string msg = "nodehost " + std::string(what) + ": ";
  int code = kExitError;
  if (info.unreachable) {
    std::string tried;
    for (const std::string& e : info.unreachable_endpoints)
      tried += (tried.empty() ? "" : ", ") + e;
    msg +=
        "cannot reach " + (tried.empty() ? info.endpoint : tried) +
        " (connection refused or no route). Is `nodehost serve` running there? Check --endpoints.";
    code = kExitUnreachable;
  } else {
    msg += s.error_message() + " [" + std::string(GrpcCodeName(static_cast<int>(s.error_code()))) +
           " from " + info.endpoint + "]";
    switch (s.error_code()) {
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        msg += ". Timed out after " + std::to_string(g.timeout_ms) +
               " ms: try a longer --timeout, and `nodehost shards` to see whether the shard has "
               "a leader and its replicas keep up.";
        code = kExitTimeout;
        break;
      case grpc::StatusCode::UNAUTHENTICATED:
      case grpc::StatusCode::PERMISSION_DENIED:
        code = kExitAuth;
        break;
      case grpc::StatusCode::FAILED_PRECONDITION:
        if (!info.leader_hint.empty()) {
          msg += ". Send it to the leader: --endpoints " + info.leader_hint;
          code = kExitNotLeader;
        } else {
          code = kExitRejected;
        }
        break;
      case grpc::StatusCode::INVALID_ARGUMENT:
      case grpc::StatusCode::NOT_FOUND:
      case grpc::StatusCode::ALREADY_EXISTS:
        code = kExitRejected;
        break;
      case grpc::StatusCode::UNIMPLEMENTED:
        code = kExitUnsupported;
        break;
      case grpc::StatusCode::UNAVAILABLE:
      case grpc::StatusCode::RESOURCE_EXHAUSTED:
      case grpc::StatusCode::ABORTED:
        msg += ". Retry in a moment.";
        code = kExitUnavailable;
        break;
      default:
        break;
    }
  }
  std::cerr << msg << "\n";
  return code;
}

std::unique_ptr<Client> MakeClient(const Globals& g, int* exit_code) {
  ClientOptions o;
  o.endpoints = SplitList(g.endpoints);
  o.timeout = std::chrono::milliseconds(g.timeout_ms);
  o.follow_leader = !g.no_follow;
  o.ca_file = g.cacert;
  o.cert_file = g.cert;
  o.key_file = g.key;
  if (!g.token_file.empty()) {
    Result<std::string> token = ReadTokenFile(g.token_file, "--token-file");
    if (!token.ok()) {
      std::cerr << "nodehost: " << token.status().message() << "\n";
      *exit_code = kExitUsage;
      return nullptr;
    }
    o.token = std::move(*token);
  }
  std::string error;
  std::unique_ptr<Client> c = Client::Create(std::move(o), &error);
  if (!c) {
    std::cerr << "nodehost: " << error << "\n";
    *exit_code = kExitUsage;
  }
  return c;
}

json ReplicaJson(const ReplicaStatus& r, uint64_t lag) {
  return {{"shard", r.shard()},
          {"replica", r.replica()},
          {"node", r.node_id()},
          {"role", r.role()},
          {"leader", r.leader()},
          {"leader_address", r.leader_client_address()},
          {"term", r.term()},
          {"commit_index", r.commit_index()},
          {"applied_index", r.applied_index()},
          {"lag", lag},
          {"quiesced", r.quiesced()}};
}

// Every replica that the endpoints report, with lag = the shard's highest
// commit index minus the replica's applied index.
// What the daemons at --endpoints report of their replicas (of one shard, or
// of all when `only_shard` is 0), and the membership as the most advanced
// replica knows it.
struct ShardView {
  std::vector<ReplicaStatus> replicas;  // by shard, then replica
  std::vector<std::string> unreachable;
  CallInfo last;                                 // the last failed call
  std::map<uint64_t, uint64_t> max_commit;       // per shard
  const ReplicaStatus* most_advanced = nullptr;  // of `replicas`
  uint64_t Lag(const ReplicaStatus& r) const {
    const uint64_t m = max_commit.at(r.shard());
    return m > r.applied_index() ? m - r.applied_index() : 0;
  }
};

ShardView GatherReplicas(Client* c, uint64_t only_shard) {
  ShardView v;
  for (const std::string& e : c->options().endpoints) {
    ShardsResponse res;
    CallInfo info = c->Shards(e, &res);
    if (!info.ok()) {
      v.unreachable.push_back(
          e + " (" + (info.unreachable ? "unreachable" : info.status.error_message()) + ")");
      v.last = std::move(info);
      continue;
    }
    for (const ReplicaStatus& r : res.replicas())
      if (only_shard == 0 || r.shard() == only_shard) v.replicas.push_back(r);
  }
  for (const ReplicaStatus& r : v.replicas)
    v.max_commit[r.shard()] = std::max(v.max_commit[r.shard()], r.commit_index());
  std::sort(
      v.replicas.begin(), v.replicas.end(), [](const ReplicaStatus& a, const ReplicaStatus& b) {
        return std::make_pair(a.shard(), a.replica()) < std::make_pair(b.shard(), b.replica());
      });
  for (const ReplicaStatus& r : v.replicas)
    if (v.most_advanced == nullptr || r.applied_index() > v.most_advanced->applied_index())
      v.most_advanced = &r;
  return v;
}

int PrintReplicas(const Globals& g, Client* c, uint64_t only_shard) {
  const ShardView v = GatherReplicas(c, only_shard);
  const std::vector<ReplicaStatus>& all = v.replicas;
  const std::vector<std::string>& unreachable = v.unreachable;
  if (all.empty() && unreachable.size() == c->options().endpoints.size())
    return Fail(g, v.last, "shards");
  if (all.empty() && only_shard != 0) {
    std::cerr << "nodehost shard: no daemon at --endpoints hosts shard " << only_shard << "\n";
    return kExitRejected;
  }
  const auto lag = [&](const ReplicaStatus& r) { return v.Lag(r); };
  // The membership as the most advanced replica knows it (shard only).
  const ReplicaStatus* view = v.most_advanced;
  const auto kind_name = [](MemberKind k) {
    return k == NON_VOTING ? "non-voting" : k == WITNESS ? "witness" : "voter";
  };
  if (Json(g)) {
    json j = {{"replicas", json::array()}, {"unreachable", unreachable}};
    for (const ReplicaStatus& r : all) j["replicas"].push_back(ReplicaJson(r, lag(r)));
    if (only_shard != 0 && view != nullptr) {
      j["members"] = json::array();
      for (const Member& m : view->members()) {
        j["members"].push_back({{"replica", m.replica()},
                                {"kind", kind_name(m.kind())},
                                {"raft_address", m.raft_address()}});
      }
    }
    PrintJson(j);
  } else {
    std::vector<std::vector<std::string>> rows;
    for (const ReplicaStatus& r : all) {
      rows.push_back({std::to_string(r.shard()), std::to_string(r.replica()),
                      std::to_string(r.node_id()), r.role() + (r.quiesced() ? " (quiesced)" : ""),
                      r.leader() == 0 ? "-" : std::to_string(r.leader()), std::to_string(r.term()),
                      std::to_string(r.commit_index()), std::to_string(r.applied_index()),
                      std::to_string(lag(r))});
    }
    PrintTable({"SHARD", "REPLICA", "NODE", "ROLE", "LEADER", "TERM", "COMMIT", "APPLIED", "LAG"},
               rows);
    for (const std::string& u : unreachable) std::cout << "unreachable: " << u << "\n";
    if (only_shard != 0 && view != nullptr) {
      std::cout << "members:";
      for (const Member& m : view->members())
        std::cout << " " << m.replica() << " (" << kind_name(m.kind()) << ", " << m.raft_address()
                  << ")";
      std::cout << "\n";
    }
  }
  return kExitOk;
}

int CmdStatus(const Globals& g, Client* c) {
  json nodes = json::array();
  std::vector<std::vector<std::string>> rows;
  CallInfo last;
  int reachable = 0;
  for (const std::string& e : c->options().endpoints) {
    StatusResponse s;
    last = c->Status(e, &s);
    if (!last.ok()) {
      const std::string why = last.unreachable ? "unreachable" : last.status.error_message();
      nodes.push_back({{"endpoint", e}, {"error", why}});
      rows.push_back({e, "-", "-", "-", "-", "-", why});
      continue;
    }
    ++reachable;
    nodes.push_back({{"endpoint", e},
                     {"node", s.node_id()},
                     {"raft_address", s.raft_address()},
                     {"metrics_address", s.metrics_address()},
                     {"deployment_id", s.deployment_id()},
                     {"replicas", s.replicas()},
                     {"leaders", s.leaders()},
                     {"uptime_seconds", s.uptime_seconds()},
                     {"version", s.version()},
                     {"tls", s.tls()}});
    rows.push_back({e, std::to_string(s.node_id()), s.raft_address(), std::to_string(s.replicas()),
                    std::to_string(s.leaders()), std::to_string(s.uptime_seconds()) + "s",
                    "ok (v" + s.version() + (s.tls() ? ", tls" : "") + ")"});
  }
  if (reachable == 0) return Fail(g, last, "status");
  if (Json(g))
    PrintJson({{"nodes", nodes}});
  else
    PrintTable({"ENDPOINT", "NODE", "RAFT", "REPLICAS", "LEADERS", "UPTIME", "STATUS"}, rows);
  return kExitOk;
}

int CmdMembership(const Globals& g, Client* c, std::string_view what, uint64_t shard,
                  uint64_t replica, std::string address, MemberKind kind, bool remove) {
  MembershipResponse res;
  CallInfo info;
  if (remove) {
    RemoveReplicaRequest req;
    req.set_shard(shard);
    req.set_replica(replica);
    req.set_timeout_ms(g.timeout_ms);
    info = c->RemoveReplica(req, &res);
  } else {
    if (address.empty()) {
      // The replica id is the node id of its daemon: take its raft address
      // from the cluster's node table.
      ShardMapResponse map;
      CallInfo mi = c->GetShardMap(&map);
      if (!mi.ok()) return Fail(g, mi, what);
      for (const NodeAddress& n : map.nodes())
        if (n.node_id() == replica) address = n.raft_address();
      if (address.empty()) {
        std::cerr << "nodehost " << what << ": node " << replica
                  << " is not in the daemons' [[nodes]] table; give its raft address\n";
        return kExitUsage;
      }
    }
    AddReplicaRequest req;
    req.set_shard(shard);
    req.set_replica(replica);
    req.set_raft_address(address);
    req.set_kind(kind);
    req.set_timeout_ms(g.timeout_ms);
    info = c->AddReplica(req, &res);
  }
  if (!info.ok()) return Fail(g, info, what);
  if (Json(g)) {
    PrintJson({{"ok", true},
               {"operation", what},
               {"shard", shard},
               {"replica", replica},
               {"address", address},
               {"leader_endpoint", info.endpoint}});
  } else {
    std::cout << what << ": shard " << shard << " replica " << replica
              << (address.empty() ? "" : " (" + address + ")") << " done via " << info.endpoint
              << "\n";
  }
  return kExitOk;
}

using ClientFn = std::function<Client*()>;

// Every daemon at --endpoints snapshots its replica of `shard`.
int CmdSnapshot(const Globals& g, Client* c, uint64_t shard) {
  json out = json::array();
  std::vector<std::vector<std::string>> rows;
  int done = 0;
  CallInfo failed;
  for (const std::string& e : c->options().endpoints) {
    SnapshotRequest req;
    req.set_shard(shard);
    req.set_timeout_ms(g.timeout_ms);
    SnapshotResponse res;
    const CallInfo info = c->Snapshot(e, req, &res);
    const bool not_hosted = info.status.error_code() == grpc::StatusCode::FAILED_PRECONDITION &&
                            !info.hosts_hint.empty();
    if (!info.ok() && !not_hosted) {
      if (failed.ok()) failed = info;
      continue;
    }
    if (not_hosted) continue;
    ++done;
    out.push_back({{"endpoint", e}, {"node", res.node_id()}, {"index", res.index()}});
    rows.push_back({e, std::to_string(res.node_id()), std::to_string(res.index())});
  }
  if (!failed.ok()) return Fail(g, failed, "snapshot");
  if (done == 0) {
    std::cerr << "nodehost snapshot: no daemon at --endpoints hosts shard " << shard << "\n";
    return kExitRejected;
  }
  if (Json(g))
    PrintJson({{"ok", true}, {"shard", shard}, {"snapshots", out}});
  else
    PrintTable({"ENDPOINT", "NODE", "SNAPSHOT INDEX"}, rows);
  return kExitOk;
}

// Why removing `replica` from the shard `v` describes would leave it without
// a quorum of running voters, or "" when it would not. A voter (or witness)
// counts as running when a daemon at --endpoints reports it knowing a leader.
std::string RemovalWouldLoseQuorum(const ShardView& v, uint64_t replica) {
  if (v.most_advanced == nullptr) return "no daemon at --endpoints reports the shard";
  std::vector<uint64_t> after;
  bool votes = false;
  for (const Member& m : v.most_advanced->members()) {
    if (m.kind() == NON_VOTING) continue;
    if (m.replica() == replica) {
      votes = true;
    } else {
      after.push_back(m.replica());
    }
  }
  if (!votes) return "";  // a non-voting replica: the quorum does not change
  if (after.empty()) return "it is the shard's last voter";
  std::vector<uint64_t> down;
  for (uint64_t id : after) {
    const auto it = std::find_if(v.replicas.begin(), v.replicas.end(),
                                 [id](const ReplicaStatus& r) { return r.replica() == id; });
    if (it == v.replicas.end() || it->leader() == 0) down.push_back(id);
  }
  const size_t need = after.size() / 2 + 1;
  if (after.size() - down.size() >= need) return "";
  std::string ids;
  for (uint64_t id : down) ids += (ids.empty() ? "" : ", ") + std::to_string(id);
  return "after it the shard has " + std::to_string(after.size()) + " voters and needs " +
         std::to_string(need) + " running, but " + ids + (down.size() == 1 ? " is" : " are") +
         " down, unreachable at --endpoints or without a leader";
}

// add-replica --via-learner: add REPLICA as non-voting, wait until a daemon
// at --endpoints reports it knowing the leader within `max_lag` entries of
// the shard's commit index, then promote it.
int CmdAddViaLearner(const Globals& g, Client* c, uint64_t shard, uint64_t replica,
                     const std::string& address, uint64_t max_lag, int wait_seconds) {
  int rc = CmdMembership(g, c, "add-non-voting", shard, replica, address, NON_VOTING, false);
  if (rc != kExitOk) return rc;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(wait_seconds);
  auto next_note = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    const ShardView v = GatherReplicas(c, shard);
    const auto it =
        std::find_if(v.replicas.begin(), v.replicas.end(),
                     [replica](const ReplicaStatus& r) { return r.replica() == replica; });
    const bool seen = it != v.replicas.end();
    if (seen && it->leader() != 0 && v.Lag(*it) <= max_lag) break;
    const auto now = std::chrono::steady_clock::now();
    const std::string state =
        seen ? "lag " + std::to_string(v.Lag(*it)) + (it->leader() == 0 ? ", no leader known" : "")
             : "not reported by any daemon at --endpoints (start it with joining = [" +
                   std::to_string(replica) + "] and list its client address in --endpoints)";
    if (now >= deadline) {
      std::cerr << "nodehost add-replica: replica " << replica << " of shard " << shard
                << " did not catch up within " << wait_seconds << " s (" << state
                << "); it stays non-voting: run `nodehost promote " << shard << " " << replica
                << "` once it has\n";
      return kExitTimeout;
    }
    if (now >= next_note) {
      std::cerr << "waiting for replica " << replica << " of shard " << shard << ": " << state
                << "\n";
      next_note = now + std::chrono::seconds(5);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return CmdMembership(g, c, "promote", shard, replica, address, VOTER, false);
}

void AddMembershipCommands(CLI::App* app, const Globals* g, const ClientFn& client, int* rc) {
  struct Args {
    uint64_t shard = 0, replica = 0;
    std::string address;
    bool via_learner = false;
    uint64_t max_lag = 100;
    int wait_seconds = 300;
    bool force = false;
  };
  auto a = std::make_shared<Args>();
  struct MemberCmd {
    const char* name;
    const char* help;
    MemberKind kind;
  };
  for (const MemberCmd& m : {MemberCmd{"add-replica", "add a voting replica", VOTER},
                             MemberCmd{"add-non-voting", "add a non-voting replica", NON_VOTING},
                             MemberCmd{"add-witness", "add a witness replica", WITNESS},
                             MemberCmd{"promote", "make a non-voting replica a voter", VOTER}}) {
    auto* sub = app->add_subcommand(m.name, m.help);
    sub->add_option("SHARD", a->shard, "shard id")->required();
    sub->add_option("REPLICA", a->replica, "replica id (= the node id of its daemon)")->required();
    sub->add_option("RAFT_ADDRESS", a->address, "its raft address (default: from [[nodes]])");
    const bool add_voter = std::string_view(m.name) == "add-replica";
    if (add_voter) {
      sub->add_flag("--via-learner", a->via_learner,
                    "add it non-voting, wait until it has caught up, then promote it");
      sub->add_option("--max-lag", a->max_lag,
                      "--via-learner: caught up means at most this many entries behind");
      sub->add_option("--wait", a->wait_seconds, "--via-learner: seconds to wait for it")
          ->check(CLI::PositiveNumber);
    }
    sub->callback([=] {
      Client* c = client();
      if (c == nullptr) return;
      *rc = add_voter && a->via_learner
                ? CmdAddViaLearner(*g, c, a->shard, a->replica, a->address, a->max_lag,
                                   a->wait_seconds)
                : CmdMembership(*g, c, m.name, a->shard, a->replica, a->address, m.kind, false);
    });
  }
  auto* remove = app->add_subcommand("remove-replica", "remove a replica from a shard");
  remove->add_option("SHARD", a->shard, "shard id")->required();
  remove->add_option("REPLICA", a->replica, "replica id")->required();
  remove->add_flag("--force", a->force,
                   "remove it even when the voters left would not have a quorum running");
  remove->callback([=] {
    Client* c = client();
    if (c == nullptr) return;
    if (!a->force) {
      const std::string why = RemovalWouldLoseQuorum(GatherReplicas(c, a->shard), a->replica);
      if (!why.empty()) {
        std::cerr << "nodehost remove-replica: refused: removing replica " << a->replica
                  << " of shard " << a->shard << " would lose the shard's quorum: " << why
                  << ". Start them or list every daemon in --endpoints; --force removes it "
                     "anyway\n";
        *rc = kExitRejected;
        return;
      }
    }
    *rc = CmdMembership(*g, c, "remove-replica", a->shard, a->replica, "", VOTER, true);
  });
}

void AddAdminCommands(CLI::App* app, const Globals* g, const ClientFn& client, int* rc) {
  auto shard = std::make_shared<uint64_t>(0);
  auto target = std::make_shared<uint64_t>(0);
  auto* transfer =
      app->add_subcommand("transfer-leader", "make another replica the shard's leader");
  transfer->add_option("SHARD", *shard, "shard id")->required();
  transfer->add_option("TARGET", *target, "replica id of the new leader")->required();
  transfer->callback([=] {
    Client* c = client();
    if (c == nullptr) return;
    TransferLeaderRequest req;
    req.set_shard(*shard);
    req.set_target(*target);
    req.set_timeout_ms(g->timeout_ms);
    TransferLeaderResponse res;
    const CallInfo info = c->TransferLeader(req, &res);
    if (!info.ok()) {
      *rc = Fail(*g, info, "transfer-leader");
      return;
    }
    if (Json(*g))
      PrintJson({{"ok", true}, {"shard", *shard}, {"leader", res.leader()}, {"term", res.term()}});
    else
      std::cout << "shard " << *shard << ": leader is now replica " << res.leader() << " (term "
                << res.term() << ")\n";
  });
  auto* snap = app->add_subcommand(
      "snapshot", "snapshot a shard's replicas now (and compact); export, verify, restore");
  // Optional here, so that `snapshot export ...` parses; required without
  // a subcommand.
  auto* shard_opt = snap->add_option("SHARD", *shard, "shard id");
  snap->callback([=] {
    if (!snap->get_subcommands().empty()) return;
    if (shard_opt->count() == 0) {
      std::cerr << "nodehost snapshot: give a SHARD, or one of export, verify, restore\n";
      *rc = kExitUsage;
      return;
    }
    Client* c = client();
    if (c != nullptr) *rc = CmdSnapshot(*g, c, *shard);
  });
}

struct KvArgs {
  std::string key, value, expect;
  Client::ScanRange range;
  bool expect_absent = false;
  bool stale = false;
  uint32_t limit = 100;
  uint64_t shard = 0;
};

void AddWriteCommands(CLI::App* app, const Globals* g, const ClientFn& client, int* rc,
                      std::shared_ptr<KvArgs> a) {
  auto* put = app->add_subcommand("put", "write a key");
  put->add_option("KEY", a->key)->required();
  put->add_option("VALUE", a->value)->required();
  put->callback([=] {
    Client* c = client();
    if (c == nullptr) return;
    PutResponse res;
    const CallInfo info = c->Put(a->key, a->value, &res);
    if (!info.ok()) {
      *rc = Fail(*g, info, "put");
      return;
    }
    if (Json(*g))
      PrintJson({{"ok", true}, {"key", a->key}, {"shard", res.shard()}, {"index", res.index()}});
    else
      std::cout << "OK (shard " << res.shard() << ", index " << res.index() << ")\n";
  });
  auto* del = app->add_subcommand("del", "delete a key");
  del->add_option("KEY", a->key)->required();
  del->callback([=] {
    Client* c = client();
    if (c == nullptr) return;
    DeleteResponse res;
    const CallInfo info = c->Delete(a->key, &res);
    if (!info.ok()) {
      *rc = Fail(*g, info, "del");
      return;
    }
    if (Json(*g))
      PrintJson(
          {{"ok", true}, {"key", a->key}, {"existed", res.existed()}, {"shard", res.shard()}});
    else
      std::cout << (res.existed() ? "deleted" : "not found (nothing deleted)") << "\n";
  });
  auto* cas =
      app->add_subcommand("cas", "set KEY to VALUE only if it holds --expect (or is absent)");
  cas->add_option("KEY", a->key)->required();
  cas->add_option("VALUE", a->value)->required();
  auto* expect = cas->add_option("--expect", a->expect, "the value KEY must hold");
  auto* absent = cas->add_flag("--expect-absent", a->expect_absent, "KEY must not exist");
  expect->excludes(absent);
  cas->callback([=] {
    if (expect->count() == 0 && !a->expect_absent) {
      std::cerr << "nodehost cas: give --expect VALUE or --expect-absent\n";
      *rc = kExitUsage;
      return;
    }
    Client* c = client();
    if (c == nullptr) return;
    CasResponse res;
    const std::optional<std::string> expected =
        a->expect_absent ? std::nullopt : std::optional<std::string>(a->expect);
    const CallInfo info = c->Cas(a->key, expected, a->value, &res);
    if (!info.ok()) {
      *rc = Fail(*g, info, "cas");
      return;
    }
    if (Json(*g)) {
      json j = {{"key", a->key}, {"swapped", res.swapped()}, {"shard", res.shard()}};
      j["previous"] = res.found() ? json(res.current()) : json(nullptr);
      PrintJson(j);
    } else if (res.swapped()) {
      std::cout << "swapped\n";
    } else {
      std::cout << "not swapped: current value is "
                << (res.found() ? "\"" + res.current() + "\"" : "absent") << "\n";
    }
    if (!res.swapped()) *rc = kExitCasMismatch;
  });
}

void AddReadCommands(CLI::App* app, const Globals* g, const ClientFn& client, int* rc,
                     std::shared_ptr<KvArgs> a) {
  auto* get = app->add_subcommand("get", "read a key (linearizable unless --stale)");
  get->add_option("KEY", a->key)->required();
  get->add_flag("--stale", a->stale, "read the contacted replica's state now");
  get->callback([=] {
    Client* c = client();
    if (c == nullptr) return;
    GetResponse res;
    const CallInfo info = c->Get(a->key, a->stale, &res);
    if (!info.ok()) {
      *rc = Fail(*g, info, "get");
      return;
    }
    if (Json(*g)) {
      PrintJson({{"key", a->key},
                 {"found", res.found()},
                 {"value", res.found() ? json(res.value()) : json(nullptr)},
                 {"shard", res.shard()}});
    } else if (res.found()) {
      std::cout << res.value() << "\n";
    } else {
      std::cerr << "nodehost get: key not found: " << a->key << "\n";
    }
    if (!res.found()) *rc = kExitKeyNotFound;
  });
  auto* scan = app->add_subcommand("scan", "keys with a prefix, in order");
  scan->add_option("PREFIX", a->range.prefix, "key prefix (empty: every key)");
  scan->add_option("--from", a->range.start, "only keys at or after this one");
  scan->add_option("--to", a->range.end, "only keys before this one");
  scan->add_option("--limit", a->limit, "at most this many keys")->check(CLI::Range(1u, 1000u));
  scan->add_option("--after", a->range.start_after, "only keys after this one (the next page)");
  scan->add_option("--shard", a->shard,
                   "scan this shard only (default: the prefix's hash tag, or all)");
  scan->add_flag("--stale", a->stale, "read the contacted replicas' state now");
  scan->callback([=] {
    Client* c = client();
    if (c == nullptr) return;
    std::vector<KeyValue> kvs;
    bool more = false;
    const CallInfo info = c->Scan(a->range, a->limit, a->shard, a->stale, &kvs, &more);
    if (!info.ok()) {
      *rc = Fail(*g, info, "scan");
      return;
    }
    if (Json(*g)) {
      json j = {{"kvs", json::array()}, {"more", more}};
      for (const KeyValue& kv : kvs) j["kvs"].push_back({{"key", kv.key()}, {"value", kv.value()}});
      PrintJson(j);
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const KeyValue& kv : kvs) rows.push_back({kv.key(), kv.value()});
    PrintTable({"KEY", "VALUE"}, rows);
    if (more && !kvs.empty())
      std::cout << "(more keys: raise --limit, or --after " << kvs.back().key() << ")\n";
  });
}

}  // namespace

// Prints rows as aligned columns under a header.
void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size() && i < width.size(); ++i)
      width[i] = std::max(width[i], r[i].size());
  auto line = [&](const std::vector<std::string>& r) {
    std::string out;
    for (size_t i = 0; i < r.size(); ++i) {
      out += r[i];
      if (i + 1 < r.size()) out += std::string(width[i] - r[i].size() + 2, ' ');
    }
    std::cout << out << "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
}

namespace {

void AddBenchCommand(CLI::App* app, const Globals* g, int* rc) {
  auto o = std::make_shared<BenchOptions>();
  auto* b = app->add_subcommand("bench", "closed-loop load: put, get (linearizable) or mixed");
  b->add_option("OP", o->op, "put, get or mixed")->check(CLI::IsMember({"put", "get", "mixed"}));
  b->add_option("--clients", o->clients, "concurrent clients, each one request in flight")
      ->check(CLI::Range(1u, 100000u));
  b->add_option("--conns", o->conns, "connections per daemon")->check(CLI::Range(1u, 4096u));
  b->add_option("--seconds", o->seconds, "measured seconds")->check(CLI::PositiveNumber);
  b->add_option("--warmup", o->warmup, "seconds of load before measuring")
      ->check(CLI::NonNegativeNumber);
  b->add_option("--key-size", o->key_size, "bytes per key")->check(CLI::Range(1u, 1u << 20));
  b->add_option("--val-size", o->val_size, "bytes per value")->check(CLI::Range(0u, 16u << 20));
  b->add_option("--key-space", o->key_space, "get and mixed: keys read (written first)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 32));
  b->add_option("--read-ratio", o->read_ratio, "mixed: the share of gets")
      ->check(CLI::Range(0.0, 1.0));
  b->add_option("--pids", o->pids, "the daemons' pids: report their CPU time per request")
      ->delimiter(',');
  b->add_flag("--json", o->json, "one JSON object (as -o json)");
  b->callback([=] {
    o->endpoints = SplitList(g->endpoints);
    o->timeout_ms = g->timeout_ms;
    o->json = o->json || Json(*g);
    if (!g->token_file.empty()) {
      Result<std::string> token = ReadTokenFile(g->token_file, "--token-file");
      if (!token.ok()) {
        std::cerr << "nodehost: " << token.status().message() << "\n";
        *rc = kExitUsage;
        return;
      }
      o->token = std::move(*token);
    }
    *rc = RunBench(*o);
  });
}

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{"nodehost: the Flotilla key-value daemon and its command-line client"};
  app.require_subcommand(1);
  app.fallthrough();
  Globals g;
  app.set_version_flag("--version", "nodehost " FLOTILLA_NODEHOST_VERSION " (libflotilla " +
                                        std::string(Version()) + ")");
  // Every global flag can also come from the environment (NODEHOST_<FLAG>);
  // the flag wins when both are given.
  app.add_option("--endpoints", g.endpoints, "daemons' client addresses, host:port,...")
      ->envname("NODEHOST_ENDPOINTS");
  app.add_option("-o,--output", g.output, "output format")
      ->check(CLI::IsMember({"table", "json"}))
      ->envname("NODEHOST_OUTPUT");
  app.add_option("--token-file", g.token_file, "file holding the admin token")
      ->envname("NODEHOST_TOKEN_FILE");
  app.add_option("--cacert", g.cacert, "CA certificate (PEM): TLS to the daemons")
      ->envname("NODEHOST_CACERT");
  app.add_option("--cert", g.cert, "client certificate (PEM) for mutual TLS")
      ->envname("NODEHOST_CERT");
  app.add_option("--key", g.key, "client private key (PEM) for mutual TLS")
      ->envname("NODEHOST_KEY");
  app.add_option("--timeout", g.timeout_ms, "per-command timeout in milliseconds")
      ->check(CLI::PositiveNumber)
      ->envname("NODEHOST_TIMEOUT");
  app.add_flag("--no-follow", g.no_follow, "do not follow a follower's pointer to the leader")
      ->envname("NODEHOST_NO_FOLLOW");

  int rc = kExitOk;
  std::unique_ptr<Client> client;
  auto need_client = [&]() -> Client* {
    if (!client) client = MakeClient(g, &rc);
    return client.get();
  };

  std::string config;
  std::string check_config;
  auto* serve = app.add_subcommand("serve", "run the daemon");
  auto* config_opt = serve->add_option("--config", config, "TOML configuration file");
  auto* check_opt = serve->add_option(
      "--check-config", check_config,
      "check FILE as the daemon would start with it (files it names read, certificates "
      "loaded), print what is wrong, exit 0 if nothing is, 2 otherwise; start nothing");
  config_opt->excludes(check_opt);
  serve->callback([&] {
    if (!check_config.empty()) {
      rc = CheckServeConfig(check_config);
    } else if (config.empty()) {
      std::fprintf(stderr, "nodehost serve: --config FILE is required\n");
      rc = kExitUsage;
    } else {
      rc = RunServe(config);
    }
  });

  app.add_subcommand("status", "each daemon: node, addresses, replicas, uptime")->callback([&] {
    if (Client* c = need_client()) rc = CmdStatus(g, c);
  });
  app.add_subcommand("shards", "every replica: role, leader, term, commit, applied, lag")
      ->callback([&] {
        if (Client* c = need_client()) rc = PrintReplicas(g, c, 0);
      });
  uint64_t shard = 0;
  auto* shard_cmd = app.add_subcommand("shard", "the replicas of one shard");
  shard_cmd->add_option("SHARD", shard, "shard id")->required();
  shard_cmd->callback([&] {
    if (Client* c = need_client()) rc = PrintReplicas(g, c, shard);
  });

  AddMembershipCommands(&app, &g, need_client, &rc);
  AddAdminCommands(&app, &g, need_client, &rc);
  auto kv = std::make_shared<KvArgs>();
  AddWriteCommands(&app, &g, need_client, &rc, kv);
  AddReadCommands(&app, &g, need_client, &rc, kv);
  AddLogdbCommands(&app, &g.output, &rc);
  AddRecoverCommand(&app, &g.output, &rc);
  AddCheckCommands(
      &app, &g.output,
      [&g] {
        PerfLoadTarget t;
        t.endpoints = SplitList(g.endpoints);
        t.timeout_ms = g.timeout_ms;
        if (!g.token_file.empty()) {
          Result<std::string> token = ReadTokenFile(g.token_file, "--token-file");
          if (token.ok())
            t.token = std::move(*token);
          else
            t.error = token.status().message();
        }
        return t;
      },
      &rc);
  const OpsEnvFn ops_env = [&](bool with_client) {
    OpsEnv e;
    e.json = Json(g);
    e.timeout_ms = g.timeout_ms;
    e.fail = [&g](const CallInfo& info, std::string_view what) { return Fail(g, info, what); };
    if (with_client) e.client = need_client();
    return e;
  };
  AddArchiveCommands(app.get_subcommand("snapshot"), ops_env, &rc);
  AddConsistencyCommand(app.get_subcommand("check"), ops_env, &rc);
  AddBenchCommand(&app, &g, &rc);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  return rc;
}

}  // namespace flotilla::nodehost
