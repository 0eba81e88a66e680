#!/usr/bin/env bash
# The nodehost daemon under closed-loop load (docs/benchmark.md, "The
# daemon"): starts three daemons on loopback (fsync on, the daemon's default
# timing), runs `nodehost bench` at each client count, prints one table row
# per run, and stops the daemons by their pids.
#
#   bench/daemon_bench.sh                       # put at 1, 16, 256, 1024 clients
#   OP=get CLIENTS="1 256" SECONDS_PER_RUN=20 bench/daemon_bench.sh
#   DAEMON=/tmp/nodehost-old bench/daemon_bench.sh   # another build's daemons, this bench
#
# Environment: NODEHOST (the CLI that runs the load; default
# build/tools/nodehost/nodehost), DAEMON (the binary the daemons run;
# default NODEHOST), OP (put, get, mixed), CLIENTS, CONNS (connections per
# daemon; default min(clients, 16)), SHARDS (8), SECONDS_PER_RUN (10),
# WARMUP (2), KEY_SIZE (16), VAL_SIZE (16), DIR (a temporary directory,
# removed at the end unless KEEP=1), EXTRA_TOML (appended to every config,
# before the shards), NICE (the daemons' and the load's nice level, 10),
# PERF_DIR (record the daemons with `perf record -g` during each run, into
# PERF_DIR/perf-<clients>.data).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
NODEHOST=${NODEHOST:-$here/build/tools/nodehost/nodehost}
DAEMON=${DAEMON:-$NODEHOST}
OP=${OP:-put}
CLIENTS=${CLIENTS:-"1 16 256 1024"}
SHARDS=${SHARDS:-8}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
WARMUP=${WARMUP:-2}
KEY_SIZE=${KEY_SIZE:-16}
VAL_SIZE=${VAL_SIZE:-16}
NICE=${NICE:-10}
EXTRA_TOML=${EXTRA_TOML:-}
DIR=${DIR:-$(mktemp -d /tmp/daemon_bench.XXXXXX)}
mkdir -p "$DIR"

for bin in "$NODEHOST" "$DAEMON"; do
  [[ -x $bin ]] || { echo "daemon_bench: $bin is not an executable (build the nodehost target)" >&2; exit 2; }
done
command -v jq >/dev/null || { echo "daemon_bench: needs jq" >&2; exit 2; }

# Six free loopback ports (the kernel's choice; a race with another process
# binding one before the daemon does is reported by the daemon's log).
read -r -a ports < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')

pids=()
stop_daemons() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
  [[ ${KEEP:-0} == 1 ]] || rm -rf "$DIR"
}
trap stop_daemons EXIT

endpoints=""
for i in 1 2 3; do
  endpoints+="${endpoints:+,}127.0.0.1:${ports[$((i + 2))]}"
done
for i in 1 2 3; do
  {
    echo "node_id = $i"
    echo "data_dir = \"$DIR/node$i\""
    echo "log_level = \"warn\""
    printf '%b\n' "$EXTRA_TOML"
    echo "[shards]"
    echo "count = $SHARDS"
    for j in 1 2 3; do
      echo "[[nodes]]"
      echo "id = $j"
      echo "raft_address = \"127.0.0.1:${ports[$((j - 1))]}\""
      echo "client_address = \"127.0.0.1:${ports[$((j + 2))]}\""
    done
  } >"$DIR/node$i.toml"
  nice -n "$NICE" "$DAEMON" serve --config "$DIR/node$i.toml" >"$DIR/node$i.log" 2>&1 &
  pids+=($!)
done

cli() { "$NODEHOST" --endpoints "$endpoints" "$@"; }
# Every shard's replicas know a leader (at most 60 s).
leaders() { cli -o json shards 2>/dev/null | jq '[.replicas[] | select(.role == "leader")] | length' 2>/dev/null || echo 0; }
# The sum over shards of the highest term any replica knows: its growth over
# a run counts the elections (leader changes) during the run.
terms() { cli -o json shards 2>/dev/null | jq '[.replicas | group_by(.shard)[] | map(.term) | max] | add // 0' 2>/dev/null || echo 0; }
for _ in $(seq 600); do
  [[ $(leaders) -ge $SHARDS ]] && break
  sleep 0.1
done
if [[ $(leaders) -lt $SHARDS ]]; then
  echo "daemon_bench: the shards did not elect leaders within 60 s; logs in $DIR" >&2
  KEEP=1
  exit 1
fi

pid_list=$(IFS=,; echo "${pids[*]}")
echo "# $OP: 3 daemons ($DAEMON), $SHARDS shards, ${SECONDS_PER_RUN} s per run, ${KEY_SIZE}-byte keys, ${VAL_SIZE}-byte values; $(nproc) cores"
printf '%-8s %-6s %-10s %-9s %-9s %-9s %-16s %-16s %-10s %-8s %s\n' \
  clients conns "ops/s" p50_ms p99_ms p99.9_ms server_cpu_us/op client_cpu_us/op elections errors "load (1 5 15 min)"
for c in $CLIENTS; do
  conns=${CONNS:-$((c < 16 ? c : 16))}
  t0=$(terms)
  perf_pid=""
  if [[ -n ${PERF_DIR:-} ]]; then
    mkdir -p "$PERF_DIR"
    perf record -q -F 499 -g -p "$pid_list" -o "$PERF_DIR/perf-$c.data" -- \
      sleep "$((WARMUP + SECONDS_PER_RUN))" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  out=$(nice -n "$NICE" "$NODEHOST" --endpoints "$endpoints" bench "$OP" --json --clients "$c" \
    --conns "$conns" --seconds "$SECONDS_PER_RUN" --warmup "$WARMUP" --key-size "$KEY_SIZE" \
    --val-size "$VAL_SIZE" --pids "$pid_list")
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  [[ -z $perf_pid ]] || wait "$perf_pid" || true
  t1=$(terms)
  jq -r --arg load "$load" --argjson el $((t1 - t0)) --argjson conns "$conns" \
    '[.clients, $conns, (.ops_per_second | floor), .p50_ms, .p99_ms, .p999_ms,
      (.server_cpu_us_per_op | floor), (.client_cpu_us_per_op | floor), $el,
      ((.error_codes | to_entries | map("\(.key)=\(.value)") | join(",")) | if . == "" then "0" else . end),
      $load] | @tsv' <<<"$out" |
    awk -F'\t' '{ printf "%-8s %-6s %-10s %-9s %-9s %-9s %-16s %-16s %-10s %-8s %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 }'
done
