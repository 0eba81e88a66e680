// The daemon's configuration: `nodehost serve --config FILE` reads a TOML
// file (every key is described in docs/cli.md, "Configuration").
//
// Thread-safety: a value.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "flotilla/config.h"
#include "flotilla/status.h"
#include "tools/nodehost/shard_map.h"

namespace flotilla::nodehost {

// One daemon of the cluster: its node id is also its replica id in every
// shard it hosts.
struct NodeEntry {
  uint64_t id = 0;
  std::string raft_address;
  std::string client_address;
};

struct ShardEntry {
  uint64_t id = 0;
  std::vector<uint64_t> members;  // node ids of the initial members
  // This node joins the running shard (it was added with add-replica or
  // add-non-voting) instead of being an initial member.
  std::vector<uint64_t> joining;
};

// Bounds of the file's keys besides the engine's (flotilla/config.h).
inline constexpr uint64_t kMaxShards = 100'000;                 // [shards] count, and all shards
inline constexpr uint32_t kMaxRequestTimeoutMs = 3'600'000;     // client.request_timeout_ms
inline constexpr uint32_t kMaxRequestBytes = 32u << 20;         // client.max_request_bytes
inline constexpr uint64_t kMaxStorageCheckIntervalMs = 60'000;  // storage.check_interval_ms
inline constexpr uint64_t kMinBalanceIntervalMs = 10;           // raft.balance_interval_ms
inline constexpr uint64_t kMaxBalanceIntervalMs = 3'600'000;

struct DaemonConfig {
  uint64_t node_id = 0;
  std::string data_dir;
  std::string wal_dir;
  uint64_t deployment_id = 1;
  // One tick of 100 ms (an election timeout of a second): a saturated host
  // that runs a step worker late must not make followers campaign
  // (docs/cli.md, "Timing defaults").
  uint64_t rtt_ms = 100;
  std::string log_level = "info";
  // Plaintext raft traffic on a raft address that is not a loopback address
  // (NodeHostConfig::insecure); without it such a daemon refuses to start.
  bool insecure = false;
  std::string raft_address;     // default: this node's [[nodes]] entry
  std::string client_address;   // default: this node's [[nodes]] entry
  std::string metrics_address;  // empty: no metrics endpoint
  // Series per shard on /metrics (nodehost_shard_*{shard="S"}): six per
  // hosted replica, so off by default for daemons with many shards.
  bool metrics_per_shard = false;
  // [raft]
  uint32_t election_rtt = 10;
  uint32_t heartbeat_rtt = 1;
  uint64_t snapshot_entries = 10000;
  uint64_t compaction_overhead = 5000;
  uint32_t step_workers = 0;
  uint32_t apply_workers = 0;
  // Idle shards stop ticking after three idle election timeouts.
  uint32_t quiesce_after_election_timeouts = 3;
  // Spread shard leaders evenly over the daemons (tools/nodehost/
  // leader_balance.h): every balance_interval_ms, a daemon leading two more
  // shards than a live member hands one of them over.
  bool balance_leaders = true;
  uint64_t balance_interval_ms = 5000;
  // [client]
  uint32_t request_timeout_ms = 5000;
  uint32_t max_request_bytes = 4 << 20;
  // [storage]: the free-space reserve (NodeHostConfig::min_free_bytes).
  uint64_t min_free_bytes = uint64_t{256} << 20;
  uint64_t storage_check_interval_ms = 1000;
  // [peer_limits]: what one peer may hold open on the raft port
  // (NodeHostConfig::snapshot_streams and batch_streams).
  SnapshotStreamLimits snapshot_streams;
  BatchStreamLimits batch_streams;
  // [auth]
  std::string token_file;
  // The deployment secret that authenticates the daemons to each other on
  // the raft port (NodeHostConfig::deployment_secret); empty: none.
  std::string secret_file;
  // Every call of the client API needs credentials, key-value reads and
  // writes and Status/Shards included, not only admin changes.
  bool every_call = false;
  // [tls]: mutual TLS between NodeHosts, and on the client API unless
  // [client_tls] is set.
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  // The names of the daemons' certificates (NodeHostConfig::tls_peer_names).
  std::vector<std::string> tls_peer_names;
  // [client_tls]: the client API's own TLS: the CA that signs client
  // certificates, and this daemon's certificate on the client address.
  std::string client_ca_file;
  std::string client_cert_file;
  std::string client_key_file;
  // Names a client certificate must hold one of to be authorized (empty:
  // any certificate the client CA signed).
  std::vector<std::string> client_names;

  std::vector<NodeEntry> nodes;
  std::vector<ShardEntry> shards;

  bool tls() const { return !tls_ca_file.empty(); }
  // TLS on the client API: its own [client_tls], else [tls].
  bool client_tls() const { return !client_ca_file.empty() || tls(); }
  struct TlsFiles {
    std::string ca, cert, key;
  };
  TlsFiles client_tls_files() const;
  const NodeEntry* FindNode(uint64_t id) const;
  ShardMap shard_map() const;
  // Whether this node hosts `shard`, and then whether it joins it.
  bool Hosts(const ShardEntry& shard) const;
  bool Joins(const ShardEntry& shard) const;
  // The engine's configuration of this node, and of its replica of `shard`.
  NodeHostConfig ToNodeHostConfig() const;
  ShardConfig ToShardConfig(uint64_t shard_id) const;
  // The raft addresses of a shard's initial members.
  Members InitialMembers(const ShardEntry& shard) const;
};

inline constexpr size_t kMaxTokenBytes = 4096;

// Reads an admin token file: one code for the daemon ([auth] token_file) and
// the CLI (--token-file), so both always agree on the token. The file holds
// exactly one line, the token, optionally ended by "\n" or "\r\n"; the token
// is 1 to kMaxTokenBytes bytes of printable ASCII without spaces (it travels
// in an HTTP header). NotFound when the file cannot be read; InvalidArgument,
// naming `what` and the rule, for anything else (a second line, even an
// empty one; an empty token; a space or a control character).
Result<std::string> ReadTokenFile(const std::string& path, std::string_view what);

// Parses TOML text; `source` names it in errors. InvalidArgument with the
// key and the reason on any error.
Result<DaemonConfig> ParseConfig(std::string_view toml_text, std::string_view source);
// Reads and parses a file. NotFound / InvalidArgument.
Result<DaemonConfig> LoadConfig(const std::string& path);

}  // namespace flotilla::nodehost
