#include "tools/nodehost/config.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include <toml++/toml.h>

namespace flotilla::nodehost {
namespace {

Status Bad(std::string_view source, std::string_view what) {
  return Status::InvalidArgument(std::string(source) + ": " + std::string(what));
}

// Reads an optional integer key into `out`; InvalidArgument when it is not
// a TOML integer (a float such as 1e9 is refused, not converted) or lies
// outside [lo, hi] (hi is capped at T's maximum, so nothing is truncated).
template <typename T>
Status ReadUint(const toml::node_view<const toml::node>& n, std::string_view name,
                std::string_view source, uint64_t lo, uint64_t hi, T* out) {
  if (!n) return Status::Ok();
  hi = std::min<uint64_t>(hi, std::numeric_limits<T>::max());
  std::optional<int64_t> v = n.value_exact<int64_t>();
  if (!v || *v < 0 || static_cast<uint64_t>(*v) < lo || static_cast<uint64_t>(*v) > hi) {
    return Bad(source, std::string(name) + " must be an integer in [" + std::to_string(lo) + ", " +
                           std::to_string(hi) + "]");
  }
  *out = static_cast<T>(*v);
  return Status::Ok();
}

// ReadUint over the type's whole range.
template <typename T>
Status ReadUint(const toml::node_view<const toml::node>& n, std::string_view name,
                std::string_view source, T* out) {
  return ReadUint(n, name, source, 0, std::numeric_limits<T>::max(), out);
}

Status ReadString(const toml::node_view<const toml::node>& n, std::string_view name,
                  std::string_view source, std::string* out) {
  if (!n) return Status::Ok();
  std::optional<std::string> v = n.value<std::string>();
  if (!v) return Bad(source, std::string(name) + " must be a string");
  *out = *v;
  return Status::Ok();
}

Status ReadIds(const toml::node_view<const toml::node>& n, std::string_view name,
               std::string_view source, std::vector<uint64_t>* out) {
  if (!n) return Status::Ok();
  const toml::array* a = n.as_array();
  if (a == nullptr) return Bad(source, std::string(name) + " must be an array of node ids");
  out->clear();
  for (const toml::node& e : *a) {
    std::optional<int64_t> v = e.value_exact<int64_t>();
    if (!v || *v <= 0) return Bad(source, std::string(name) + " must hold positive integers");
    out->push_back(static_cast<uint64_t>(*v));
  }
  return Status::Ok();
}

Status ReadStrings(const toml::node_view<const toml::node>& n, std::string_view name,
                   std::string_view source, std::vector<std::string>* out) {
  if (!n) return Status::Ok();
  const toml::array* a = n.as_array();
  if (a == nullptr) return Bad(source, std::string(name) + " must be an array of strings");
  out->clear();
  for (const toml::node& e : *a) {
    std::optional<std::string> v = e.value<std::string>();
    if (!v || v->empty()) return Bad(source, std::string(name) + " must hold non-empty strings");
    out->push_back(*v);
  }
  return Status::Ok();
}

Status ReadBool(const toml::node_view<const toml::node>& n, std::string_view name,
                std::string_view source, bool* out) {
  if (!n) return Status::Ok();
  const std::optional<bool> v = n.value_exact<bool>();
  if (!v) return Bad(source, std::string(name) + " must be true or false");
  *out = *v;
  return Status::Ok();
}

// Every key the file may hold, per table; anything else is an error (a
// misspelt key would otherwise silently leave its default in place).
const std::map<std::string, std::set<std::string>, std::less<>>& KnownKeys() {
  static const auto* const kKeys = new std::map<std::string, std::set<std::string>, std::less<>>{
      // Twenty keys: clang-format would put each on a line of its own.
      // clang-format off
      {"",
       {"node_id", "data_dir", "wal_dir", "deployment_id", "rtt_ms", "log_level", "raft_address",
        "client_address", "metrics_address", "metrics_per_shard", "insecure", "raft", "client",
        "auth", "tls", "client_tls", "nodes", "shards", "storage", "peer_limits"}},
      // clang-format on
      {"storage", {"min_free_bytes", "check_interval_ms"}},
      {"peer_limits",
       {"snapshot_streams", "snapshot_streams_per_peer", "snapshot_bytes_per_peer",
        "snapshot_idle_timeout_ms", "snapshot_total_timeout_ms", "snapshot_evict_idle_ms",
        "batch_streams", "batch_streams_per_peer", "batch_inflight_bytes",
        "batch_inflight_bytes_per_peer"}},
      {"raft",
       {"election_rtt", "heartbeat_rtt", "snapshot_entries", "compaction_overhead", "step_workers",
        "apply_workers", "quiesce_after_election_timeouts", "balance_leaders",
        "balance_interval_ms"}},
      {"client", {"request_timeout_ms", "max_request_bytes"}},
      {"auth", {"token_file", "secret_file", "every_call"}},
      {"tls", {"ca_file", "cert_file", "key_file", "peer_names"}},
      {"client_tls", {"ca_file", "cert_file", "key_file", "client_names"}},
      {"nodes", {"id", "raft_address", "client_address"}},
      {"shards", {"count", "id", "members", "joining"}},
  };
  return *kKeys;
}

// InvalidArgument naming the first key of `t` that table `name` may not hold.
Status CheckKeys(const toml::table& t, const std::string& name, std::string_view src) {
  const std::set<std::string>& known = KnownKeys().at(name);
  for (const auto& [key, value] : t) {
    if (known.count(std::string(key.str())) == 0) {
      return Bad(src, "unknown key " + (name.empty() ? "" : name + ".") + std::string(key.str()));
    }
  }
  return Status::Ok();
}

// Checks the keys of the top level and of every table in it: [raft],
// [client], [auth] and [tls] are tables; nodes and shards may also be arrays
// of tables.
Status CheckAllKeys(const toml::table& t, std::string_view src) {
  FLOTILLA_RETURN_IF_ERROR(CheckKeys(t, "", src));
  for (const std::string name : {"raft", "client", "auth", "tls", "client_tls", "nodes", "shards",
                                 "storage", "peer_limits"}) {
    const toml::node* n = t.get(name);
    if (n == nullptr) continue;
    const toml::array* a = n->as_array();
    if (const toml::table* sub = n->as_table()) {
      FLOTILLA_RETURN_IF_ERROR(CheckKeys(*sub, name, src));
    } else if (a != nullptr && (name == "nodes" || name == "shards")) {
      for (const toml::node& e : *a) {
        if (const toml::table* et = e.as_table())
          FLOTILLA_RETURN_IF_ERROR(CheckKeys(*et, name, src));
      }
    } else {
      return Bad(src, name + " must be a table");
    }
  }
  return Status::Ok();
}

Status ReadTop(const toml::table& t, std::string_view src, DaemonConfig* c) {
  FLOTILLA_RETURN_IF_ERROR(ReadUint(t["node_id"], "node_id", src, 1, UINT64_MAX, &c->node_id));
  FLOTILLA_RETURN_IF_ERROR(ReadString(t["data_dir"], "data_dir", src, &c->data_dir));
  FLOTILLA_RETURN_IF_ERROR(ReadString(t["wal_dir"], "wal_dir", src, &c->wal_dir));
  FLOTILLA_RETURN_IF_ERROR(ReadUint(t["deployment_id"], "deployment_id", src, &c->deployment_id));
  FLOTILLA_RETURN_IF_ERROR(ReadUint(t["rtt_ms"], "rtt_ms", src, 1, kMaxRttMs, &c->rtt_ms));
  FLOTILLA_RETURN_IF_ERROR(ReadString(t["log_level"], "log_level", src, &c->log_level));
  FLOTILLA_RETURN_IF_ERROR(ReadBool(t["insecure"], "insecure", src, &c->insecure));
  FLOTILLA_RETURN_IF_ERROR(
      ReadBool(t["metrics_per_shard"], "metrics_per_shard", src, &c->metrics_per_shard));
  FLOTILLA_RETURN_IF_ERROR(ReadString(t["raft_address"], "raft_address", src, &c->raft_address));
  FLOTILLA_RETURN_IF_ERROR(
      ReadString(t["client_address"], "client_address", src, &c->client_address));
  FLOTILLA_RETURN_IF_ERROR(
      ReadString(t["metrics_address"], "metrics_address", src, &c->metrics_address));
  FLOTILLA_RETURN_IF_ERROR(
      ReadString(t["auth"]["token_file"], "auth.token_file", src, &c->token_file));
  FLOTILLA_RETURN_IF_ERROR(ReadString(t["tls"]["ca_file"], "tls.ca_file", src, &c->tls_ca_file));
  FLOTILLA_RETURN_IF_ERROR(
      ReadString(t["tls"]["cert_file"], "tls.cert_file", src, &c->tls_cert_file));
  FLOTILLA_RETURN_IF_ERROR(ReadString(t["tls"]["key_file"], "tls.key_file", src, &c->tls_key_file));
  FLOTILLA_RETURN_IF_ERROR(
      ReadStrings(t["tls"]["peer_names"], "tls.peer_names", src, &c->tls_peer_names));
  return Status::Ok();
}

Status ReadAuth(const toml::table& t, std::string_view src, DaemonConfig* c) {
  const auto auth = t["auth"];
  FLOTILLA_RETURN_IF_ERROR(
      ReadString(auth["secret_file"], "auth.secret_file", src, &c->secret_file));
  FLOTILLA_RETURN_IF_ERROR(ReadBool(auth["every_call"], "auth.every_call", src, &c->every_call));
  const auto ct = t["client_tls"];
  FLOTILLA_RETURN_IF_ERROR(
      ReadString(ct["ca_file"], "client_tls.ca_file", src, &c->client_ca_file));
  FLOTILLA_RETURN_IF_ERROR(
      ReadString(ct["cert_file"], "client_tls.cert_file", src, &c->client_cert_file));
  FLOTILLA_RETURN_IF_ERROR(
      ReadString(ct["key_file"], "client_tls.key_file", src, &c->client_key_file));
  FLOTILLA_RETURN_IF_ERROR(
      ReadStrings(ct["client_names"], "client_tls.client_names", src, &c->client_names));
  return Status::Ok();
}

Status ReadRaftAndClient(const toml::table& t, std::string_view src, DaemonConfig* c) {
  const auto raft = t["raft"];
  FLOTILLA_RETURN_IF_ERROR(ReadUint(raft["election_rtt"], "raft.election_rtt", src, 2,
                                    kMaxElectionRtt, &c->election_rtt));
  FLOTILLA_RETURN_IF_ERROR(ReadUint(raft["heartbeat_rtt"], "raft.heartbeat_rtt", src, 1,
                                    kMaxElectionRtt - 1, &c->heartbeat_rtt));
  FLOTILLA_RETURN_IF_ERROR(
      ReadUint(raft["snapshot_entries"], "raft.snapshot_entries", src, &c->snapshot_entries));
  FLOTILLA_RETURN_IF_ERROR(ReadUint(raft["compaction_overhead"], "raft.compaction_overhead", src,
                                    &c->compaction_overhead));
  FLOTILLA_RETURN_IF_ERROR(
      ReadUint(raft["step_workers"], "raft.step_workers", src, 0, kMaxWorkers, &c->step_workers));
  FLOTILLA_RETURN_IF_ERROR(ReadUint(raft["apply_workers"], "raft.apply_workers", src, 0,
                                    kMaxWorkers, &c->apply_workers));
  FLOTILLA_RETURN_IF_ERROR(ReadUint(raft["quiesce_after_election_timeouts"],
                                    "raft.quiesce_after_election_timeouts", src,
                                    &c->quiesce_after_election_timeouts));
  FLOTILLA_RETURN_IF_ERROR(
      ReadBool(raft["balance_leaders"], "raft.balance_leaders", src, &c->balance_leaders));
  FLOTILLA_RETURN_IF_ERROR(ReadUint(raft["balance_interval_ms"], "raft.balance_interval_ms", src,
                                    kMinBalanceIntervalMs, kMaxBalanceIntervalMs,
                                    &c->balance_interval_ms));
  const auto client = t["client"];
  FLOTILLA_RETURN_IF_ERROR(ReadUint(client["request_timeout_ms"], "client.request_timeout_ms", src,
                                    1, kMaxRequestTimeoutMs, &c->request_timeout_ms));
  FLOTILLA_RETURN_IF_ERROR(ReadUint(client["max_request_bytes"], "client.max_request_bytes", src, 1,
                                    kMaxRequestBytes, &c->max_request_bytes));
  const auto storage = t["storage"];
  FLOTILLA_RETURN_IF_ERROR(
      ReadUint(storage["min_free_bytes"], "storage.min_free_bytes", src, &c->min_free_bytes));
  FLOTILLA_RETURN_IF_ERROR(ReadUint(storage["check_interval_ms"], "storage.check_interval_ms", src,
                                    1, kMaxStorageCheckIntervalMs, &c->storage_check_interval_ms));
  return Status::Ok();
}

// [peer_limits]: the engine's SnapshotStreamLimits and BatchStreamLimits
// (NodeHostConfig's Validate checks how they relate to each other).
Status ReadPeerLimits(const toml::table& t, std::string_view src, DaemonConfig* c) {
  const auto p = t["peer_limits"];
  SnapshotStreamLimits& s = c->snapshot_streams;
  BatchStreamLimits& b = c->batch_streams;
  for (const Status& st : {
           ReadUint(p["snapshot_streams"], "peer_limits.snapshot_streams", src, 1, kMaxStreamLimit,
                    &s.max_streams),
           ReadUint(p["snapshot_streams_per_peer"], "peer_limits.snapshot_streams_per_peer", src, 1,
                    kMaxStreamLimit, &s.max_streams_per_peer),
           ReadUint(p["snapshot_bytes_per_peer"], "peer_limits.snapshot_bytes_per_peer", src, 1,
                    UINT64_MAX, &s.max_bytes_per_peer),
           ReadUint(p["snapshot_idle_timeout_ms"], "peer_limits.snapshot_idle_timeout_ms", src, 1,
                    kMaxStreamTimeoutMs, &s.idle_timeout_ms),
           ReadUint(p["snapshot_total_timeout_ms"], "peer_limits.snapshot_total_timeout_ms", src, 1,
                    kMaxStreamTimeoutMs, &s.total_timeout_ms),
           ReadUint(p["snapshot_evict_idle_ms"], "peer_limits.snapshot_evict_idle_ms", src, 0,
                    kMaxStreamTimeoutMs, &s.evict_idle_ms),
           ReadUint(p["batch_streams"], "peer_limits.batch_streams", src, 2, kMaxStreamLimit,
                    &b.max_streams),
           ReadUint(p["batch_inflight_bytes"], "peer_limits.batch_inflight_bytes", src, 1,
                    UINT64_MAX, &b.max_inflight_bytes),
           ReadUint(p["batch_streams_per_peer"], "peer_limits.batch_streams_per_peer", src, 2,
                    kMaxStreamLimit, &b.max_streams_per_peer),
           ReadUint(p["batch_inflight_bytes_per_peer"], "peer_limits.batch_inflight_bytes_per_peer",
                    src, 1, UINT64_MAX, &b.max_inflight_bytes_per_peer),
       }) {
    FLOTILLA_RETURN_IF_ERROR(st);
  }
  return Status::Ok();
}

Status ReadNodes(const toml::table& t, std::string_view src, DaemonConfig* c) {
  const toml::array* nodes = t["nodes"].as_array();
  if (nodes == nullptr || nodes->empty())
    return Bad(src, "[[nodes]] must list the cluster's daemons (id, raft_address, client_address)");
  for (const toml::node& n : *nodes) {
    const toml::table* nt = n.as_table();
    if (nt == nullptr) return Bad(src, "[[nodes]] entries must be tables");
    NodeEntry e;
    FLOTILLA_RETURN_IF_ERROR(ReadUint((*nt)["id"], "nodes.id", src, &e.id));
    FLOTILLA_RETURN_IF_ERROR(
        ReadString((*nt)["raft_address"], "nodes.raft_address", src, &e.raft_address));
    FLOTILLA_RETURN_IF_ERROR(
        ReadString((*nt)["client_address"], "nodes.client_address", src, &e.client_address));
    if (e.id == 0) return Bad(src, "nodes.id must be set and positive");
    if (e.raft_address.empty())
      return Bad(src, "node " + std::to_string(e.id) + " has no raft_address");
    if (c->FindNode(e.id) != nullptr)
      return Bad(src, "node " + std::to_string(e.id) + " is listed twice");
    c->nodes.push_back(std::move(e));
  }
  return Status::Ok();
}

Status ReadShardTable(const toml::table& st, std::string_view src, const DaemonConfig& c,
                      std::vector<ShardEntry>* out) {
  uint64_t count = 0;
  uint64_t id = 0;
  ShardEntry proto;
  for (const NodeEntry& n : c.nodes) proto.members.push_back(n.id);
  FLOTILLA_RETURN_IF_ERROR(ReadUint(st["count"], "shards.count", src, 0, kMaxShards, &count));
  FLOTILLA_RETURN_IF_ERROR(ReadUint(st["id"], "shards.id", src, &id));
  FLOTILLA_RETURN_IF_ERROR(ReadIds(st["members"], "shards.members", src, &proto.members));
  FLOTILLA_RETURN_IF_ERROR(ReadIds(st["joining"], "shards.joining", src, &proto.joining));
  if (count > 0 && id > 0) return Bad(src, "a [shards] table has either count or id, not both");
  if (count == 0 && id == 0) return Bad(src, "a shards entry needs id (or count for 1..count)");
  if (out->size() + std::max<uint64_t>(count, 1) > kMaxShards)
    return Bad(src, "more than " + std::to_string(kMaxShards) + " shards");
  const uint64_t first = count > 0 ? 1 : id;
  const uint64_t last = count > 0 ? count : id;
  for (uint64_t s = first; s <= last; ++s) {
    ShardEntry e = proto;
    e.id = s;
    out->push_back(std::move(e));
  }
  return Status::Ok();
}

Status ReadShards(const toml::table& t, std::string_view src, DaemonConfig* c) {
  const auto shards = t["shards"];
  if (const toml::table* st = shards.as_table()) {
    FLOTILLA_RETURN_IF_ERROR(ReadShardTable(*st, src, *c, &c->shards));
  } else if (const toml::array* sa = shards.as_array()) {
    for (const toml::node& n : *sa) {
      const toml::table* st2 = n.as_table();
      if (st2 == nullptr) return Bad(src, "[[shards]] entries must be tables");
      FLOTILLA_RETURN_IF_ERROR(ReadShardTable(*st2, src, *c, &c->shards));
    }
  } else {
    return Bad(src, "shards must be a table ([shards] count = N) or an array ([[shards]] id = N)");
  }
  std::set<uint64_t> seen;
  for (const ShardEntry& s : c->shards) {
    if (!seen.insert(s.id).second)
      return Bad(src, "shard " + std::to_string(s.id) + " is listed twice");
    if (s.members.empty()) return Bad(src, "shard " + std::to_string(s.id) + " has no members");
    for (uint64_t m : s.members) {
      if (c->FindNode(m) == nullptr)
        return Bad(src, "shard " + std::to_string(s.id) + " names node " + std::to_string(m) +
                            ", which [[nodes]] does not list");
    }
  }
  return Status::Ok();
}

// Every address is host:port with a port in [1, 65535]: a port gRPC cannot
// parse would otherwise listen on a random one.
Status ValidateAddresses(std::string_view src, const DaemonConfig& c) {
  const auto check = [src](const std::string& field, const std::string& address) {
    Status s = ValidateHostPort(field, address, /*min_port=*/1);
    return s.ok() ? s : Bad(src, s.message());
  };
  FLOTILLA_RETURN_IF_ERROR(check("raft_address", c.raft_address));
  FLOTILLA_RETURN_IF_ERROR(check("client_address", c.client_address));
  if (!c.metrics_address.empty())
    FLOTILLA_RETURN_IF_ERROR(check("metrics_address", c.metrics_address));
  for (const NodeEntry& n : c.nodes) {
    const std::string node = "nodes.id=" + std::to_string(n.id);
    FLOTILLA_RETURN_IF_ERROR(check(node + " raft_address", n.raft_address));
    if (!n.client_address.empty())
      FLOTILLA_RETURN_IF_ERROR(check(node + " client_address", n.client_address));
  }
  return Status::Ok();
}

// The trust rules of docs/security.md that the engine cannot check alone.
Status ValidateAuth(std::string_view src, const DaemonConfig& c) {
  const int client_files =
      !c.client_ca_file.empty() + !c.client_cert_file.empty() + !c.client_key_file.empty();
  if (client_files != 0 && client_files != 3)
    return Bad(src, "[client_tls] needs all of ca_file, cert_file and key_file, or none");
  if (!c.client_names.empty() && client_files == 0)
    return Bad(src,
               "client_tls.client_names needs [client_tls] (its ca_file, cert_file, key_file)");
  if (c.tls() && c.tls_peer_names.empty() &&
      (client_files == 0 || c.client_ca_file == c.tls_ca_file)) {
    return Bad(src,
               "[tls] without peer_names lets any certificate its CA signs, a client's included, "
               "speak Raft to this daemon: list the daemons' certificate names in tls.peer_names, "
               "or give clients a CA of their own in [client_tls]");
  }
  if (c.every_call && c.token_file.empty() && !c.client_tls())
    return Bad(src, "auth.every_call needs credentials to check: [auth] token_file, or TLS");
  return Status::Ok();
}

Status Validate(std::string_view src, DaemonConfig* c) {
  if (c->node_id == 0) return Bad(src, "node_id must be set and positive");
  const NodeEntry* self = c->FindNode(c->node_id);
  if (self == nullptr)
    return Bad(src, "node_id " + std::to_string(c->node_id) + " is not listed in [[nodes]]");
  if (c->raft_address.empty()) c->raft_address = self->raft_address;
  if (c->client_address.empty()) c->client_address = self->client_address;
  if (c->client_address.empty()) return Bad(src, "client_address is not set for this node");
  if (c->data_dir.empty()) return Bad(src, "data_dir must be set");
  if (c->rtt_ms == 0) return Bad(src, "rtt_ms must be positive");
  const int tls_files =
      !c->tls_ca_file.empty() + !c->tls_cert_file.empty() + !c->tls_key_file.empty();
  if (tls_files != 0 && tls_files != 3)
    return Bad(src, "[tls] needs all of ca_file, cert_file and key_file, or none");
  FLOTILLA_RETURN_IF_ERROR(ValidateAuth(src, *c));
  if (c->election_rtt <= c->heartbeat_rtt)
    return Bad(src, "raft.election_rtt must exceed raft.heartbeat_rtt");
  FLOTILLA_RETURN_IF_ERROR(ValidateAddresses(src, *c));
  if (tls_files == 0 && !c->insecure && !IsLoopbackAddress(c->raft_address)) {
    return Bad(src, "raft_address " + c->raft_address +
                        " is not a loopback address and [tls] is not set: anyone who reaches it "
                        "could act as a member of every shard. Configure [tls], or set insecure "
                        "= true on a network that is private by other means");
  }
  // The engine's own rules (the same limits, and any that the keys above do
  // not cover), so that nothing the file allows is refused at start-up.
  for (const Status& s : {Validate(c->ToNodeHostConfig()), Validate(c->ToShardConfig(1))}) {
    if (!s.ok()) return Bad(src, s.message());
  }
  static const std::set<std::string> kLevels = {"trace", "debug",    "info", "warn",
                                                "error", "critical", "off"};
  if (kLevels.count(c->log_level) == 0)
    return Bad(src, "log_level must be one of trace, debug, info, warn, error, critical, off");
  return Status::Ok();
}

}  // namespace

const NodeEntry* DaemonConfig::FindNode(uint64_t id) const {
  for (const NodeEntry& n : nodes)
    if (n.id == id) return &n;
  return nullptr;
}

ShardMap DaemonConfig::shard_map() const {
  std::vector<uint64_t> ids;
  for (const ShardEntry& s : shards) ids.push_back(s.id);
  return ShardMap(std::move(ids));
}

bool DaemonConfig::Hosts(const ShardEntry& shard) const {
  return std::count(shard.members.begin(), shard.members.end(), node_id) > 0 || Joins(shard);
}

bool DaemonConfig::Joins(const ShardEntry& shard) const {
  return std::count(shard.joining.begin(), shard.joining.end(), node_id) > 0;
}

NodeHostConfig DaemonConfig::ToNodeHostConfig() const {
  NodeHostConfig nc;
  nc.data_dir = data_dir + "/nodehost";
  nc.wal_dir = wal_dir;
  nc.raft_address = raft_address;
  nc.rtt_ms = rtt_ms;
  nc.deployment_id = deployment_id;
  nc.step_workers = step_workers;
  nc.apply_workers = apply_workers;
  nc.tls_ca_file = tls_ca_file;
  nc.tls_cert_file = tls_cert_file;
  nc.tls_key_file = tls_key_file;
  nc.tls_peer_names = tls_peer_names;
  nc.insecure = insecure;
  nc.min_free_bytes = min_free_bytes;
  nc.storage_check_interval_ms = storage_check_interval_ms;
  nc.snapshot_streams = snapshot_streams;
  nc.batch_streams = batch_streams;
  // A request of max_request_bytes (key and value) fits in one entry with
  // its encoding.
  nc.max_entry_bytes = std::max<uint64_t>(nc.max_entry_bytes, max_request_bytes + (64 << 10));
  return nc;
}

ShardConfig DaemonConfig::ToShardConfig(uint64_t shard_id) const {
  ShardConfig sc;
  sc.shard_id = shard_id;
  sc.replica_id = node_id;
  sc.election_rtt = election_rtt;
  sc.heartbeat_rtt = heartbeat_rtt;
  sc.snapshot_entries = snapshot_entries;
  sc.compaction_overhead = compaction_overhead;
  sc.quiesce_after_election_timeouts = quiesce_after_election_timeouts;
  return sc;
}

DaemonConfig::TlsFiles DaemonConfig::client_tls_files() const {
  if (!client_ca_file.empty()) return {client_ca_file, client_cert_file, client_key_file};
  return {tls_ca_file, tls_cert_file, tls_key_file};
}

Members DaemonConfig::InitialMembers(const ShardEntry& shard) const {
  Members m;
  for (uint64_t id : shard.members) m[id] = FindNode(id)->raft_address;
  return m;
}

Result<DaemonConfig> ParseConfig(std::string_view toml_text, std::string_view source) {
  toml::table t;
  try {
    t = toml::parse(toml_text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << e.description() << " (line " << e.source().begin.line << ")";
    return Bad(source, msg.str());
  }
  DaemonConfig c;
  FLOTILLA_RETURN_IF_ERROR(CheckAllKeys(t, source));
  FLOTILLA_RETURN_IF_ERROR(ReadTop(t, source, &c));
  FLOTILLA_RETURN_IF_ERROR(ReadAuth(t, source, &c));
  FLOTILLA_RETURN_IF_ERROR(ReadRaftAndClient(t, source, &c));
  FLOTILLA_RETURN_IF_ERROR(ReadPeerLimits(t, source, &c));
  FLOTILLA_RETURN_IF_ERROR(ReadNodes(t, source, &c));
  FLOTILLA_RETURN_IF_ERROR(ReadShards(t, source, &c));
  FLOTILLA_RETURN_IF_ERROR(Validate(source, &c));
  return c;
}

Result<std::string> ReadTokenFile(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read " + std::string(what) + " " + path);
  std::string token(kMaxTokenBytes + 3, '\0');
  in.read(token.data(), static_cast<std::streamsize>(token.size()));
  token.resize(static_cast<size_t>(in.gcount()));
  const auto bad = [&](const std::string& rule) {
    return Status::InvalidArgument(std::string(what) + " " + path + ": " + rule);
  };
  if (token.size() > kMaxTokenBytes + 2)
    return bad("longer than " + std::to_string(kMaxTokenBytes) + " bytes");
  if (token.ends_with("\r\n")) {
    token.resize(token.size() - 2);
  } else if (token.ends_with('\n')) {
    token.pop_back();
  }
  if (token.empty()) return bad("is empty: it must hold the token on its one line");
  if (token.find('\n') != std::string::npos)
    return bad("holds more than one line: it must hold only the token");
  for (char ch : token) {
    if (ch <= ' ' || ch > '~')
      return bad("the token must be printable ASCII without spaces or control characters");
  }
  if (token.size() > kMaxTokenBytes)
    return bad("longer than " + std::to_string(kMaxTokenBytes) + " bytes");
  return token;
}

Result<DaemonConfig> LoadConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot read config file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), path);
}

}  // namespace flotilla::nodehost
