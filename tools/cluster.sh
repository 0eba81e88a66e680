#!/usr/bin/env bash
# A three-node nodehost cluster on this machine, for trying Flotilla out.
#
#   tools/cluster.sh start     # write configs, a token and a secret, start nodes 1..3
#   tools/cluster.sh kill N    # SIGKILL node N (the others keep serving)
#   tools/cluster.sh restart N # start node N again (it catches up)
#   tools/cluster.sh stop      # SIGTERM every node
#   tools/cluster.sh env       # print the NODEHOST_ENDPOINTS line to eval
#
# Environment: NODEHOST (the binary, default build/tools/nodehost/nodehost),
# CLUSTER_DIR (default /tmp/flotilla-cluster), PORT_BASE (default 7100: raft
# ports BASE+1..3, client BASE+101..103, metrics BASE+201..203), SHARDS (4).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NODEHOST=${NODEHOST:-$ROOT/build/tools/nodehost/nodehost}
DIR=${CLUSTER_DIR:-/tmp/flotilla-cluster}
BASE=${PORT_BASE:-7100}
SHARDS=${SHARDS:-4}

# A process that exited but was not reaped yet (a zombie) counts as gone.
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $st != Z* ]]; }

endpoints() { echo "127.0.0.1:$((BASE + 101)),127.0.0.1:$((BASE + 102)),127.0.0.1:$((BASE + 103))"; }

write_config() {
  local n=$1
  cat >"$DIR/node$n.toml" <<TOML
node_id = $n
data_dir = "$DIR/node$n"
metrics_address = "127.0.0.1:$((BASE + 200 + n))"
log_level = "info"

[auth]
token_file = "$DIR/token"
secret_file = "$DIR/secret"   # authenticates the daemons to each other on the raft ports

[shards]
count = $SHARDS

TOML
  for i in 1 2 3; do
    cat >>"$DIR/node$n.toml" <<TOML
[[nodes]]
id = $i
raft_address = "127.0.0.1:$((BASE + i))"
client_address = "127.0.0.1:$((BASE + 100 + i))"

TOML
  done
}

start_node() {
  local n=$1
  if [[ -f "$DIR/node$n.pid" ]] && alive "$(cat "$DIR/node$n.pid")"; then
    echo "node $n is already running (pid $(cat "$DIR/node$n.pid"))"
    return
  fi
  "$NODEHOST" serve --config "$DIR/node$n.toml" >>"$DIR/node$n.log" 2>&1 &
  echo $! >"$DIR/node$n.pid"
  echo "node $n: pid $!, client 127.0.0.1:$((BASE + 100 + n)), log $DIR/node$n.log"
}

wait_ready() {
  for _ in $(seq 1 100); do
    if "$NODEHOST" --endpoints "$(endpoints)" -o json shards 2>/dev/null |
      grep -q '"leader": 0'; then
      sleep 0.1
    elif "$NODEHOST" --endpoints "$(endpoints)" shards >/dev/null 2>&1; then
      return 0
    else
      sleep 0.1
    fi
  done
  echo "the cluster did not elect leaders within 10 s; see $DIR/node*.log" >&2
  return 1
}

case "${1:-}" in
  start)
    [[ -x "$NODEHOST" ]] || { echo "build first: $NODEHOST is missing" >&2; exit 1; }
    mkdir -p "$DIR"
    for f in token secret; do
      [[ -f "$DIR/$f" ]] || { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/$f"; }
      chmod 600 "$DIR/$f"
    done
    for n in 1 2 3; do write_config "$n"; start_node "$n"; done
    wait_ready
    echo "ready. export NODEHOST_ENDPOINTS=$(endpoints)   (admin: --token-file $DIR/token)"
    ;;
  kill)
    kill -KILL "$(cat "$DIR/node$2.pid")" && rm -f "$DIR/node$2.pid" && echo "node $2 killed (SIGKILL)"
    ;;
  restart)
    start_node "$2"
    ;;
  stop)
    for n in 1 2 3; do
      if [[ -f "$DIR/node$n.pid" ]]; then
        pid=$(cat "$DIR/node$n.pid")
        kill -TERM "$pid" 2>/dev/null && while alive "$pid"; do sleep 0.1; done
        rm -f "$DIR/node$n.pid"
        echo "node $n stopped"
      fi
    done
    ;;
  env)
    echo "export NODEHOST_ENDPOINTS=$(endpoints)"
    ;;
  *)
    sed -n '2,12p' "$0"
    exit 2
    ;;
esac
