#!/usr/bin/env bash
# Sweep of multigroup_bench over shards x clients: one run per pair, a CSV of
# the figures, and a PNG chart (writes/s and p99 against clients, one line per
# shard count) drawn with gnuplot.
#
#   bench/sweep.sh [BUILD_DIR] [OUT_DIR]
#   GROUPS_LIST="1 48 1000" CLIENTS_LIST="64 256 1024" SECONDS_EACH=10 WARMUP=5 bench/sweep.sh
#
# Extra multigroup_bench flags can be passed in EXTRA (e.g. EXTRA="--payload 128").
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${1:-build-release}
OUT_DIR=${2:-$BUILD_DIR/bench-results}
GROUPS_LIST=${GROUPS_LIST:-"1 16 48 256 1000"}
CLIENTS_LIST=${CLIENTS_LIST:-"64 256 1024"}
SECONDS_EACH=${SECONDS_EACH:-10}
WARMUP=${WARMUP:-5}
EXTRA=${EXTRA:-}
BIN="$BUILD_DIR/bench/multigroup_bench"
[[ -x "$BIN" ]] || { echo "sweep: $BIN not built (ninja -C $BUILD_DIR multigroup_bench)" >&2; exit 1; }
mkdir -p "$OUT_DIR"
CSV="$OUT_DIR/sweep.csv"
KEYS="groups clients payload_bytes seconds writes_per_s reads_per_s p50_ms p99_ms p999_ms cpu_s rss_mb entries_per_fsync leader_changes errors"

# One numeric field of a one-line JSON object.
field() { grep -o "\"$1\":[-0-9.e+]*" <<<"$2" | head -1 | cut -d: -f2; }

echo "$KEYS" | tr ' ' ',' > "$CSV"
for g in $GROUPS_LIST; do
  for c in $CLIENTS_LIST; do
    echo "sweep: groups=$g clients=$c" >&2
    # shellcheck disable=SC2086
    line=$("$BIN" --groups "$g" --clients "$c" --seconds "$SECONDS_EACH" --warmup "$WARMUP" --json --quiet $EXTRA | grep '^{' | tail -1)
    echo "$line" >> "$OUT_DIR/sweep.jsonl"
    row=""
    for k in $KEYS; do row+="${row:+,}$(field "$k" "$line")"; done
    echo "$row" | tee -a "$CSV"
  done
done

# Chart: column 5 is writes/s, column 8 is p99 (ms); one line per shard count.
PLOT=""
for g in $GROUPS_LIST; do
  PLOT+="${PLOT:+, }'< awk -F, \"NR>1 && \\\$1==$g\" $CSV' using 2:5 with linespoints title '$g shards'"
done
PLOT99=""
for g in $GROUPS_LIST; do
  PLOT99+="${PLOT99:+, }'< awk -F, \"NR>1 && \\\$1==$g\" $CSV' using 2:8 with linespoints title '$g shards'"
done
gnuplot <<EOF
set terminal pngcairo size 1200,500
set output '$OUT_DIR/sweep.png'
set datafile separator ','
set multiplot layout 1,2 title 'multigroup\_bench: 3 NodeHosts, loopback gRPC, RocksDB fsync'
set logscale x 2
set xlabel 'clients'
set ylabel 'writes/s'
set key top left
set grid
plot $PLOT
set ylabel 'p99 write latency (ms)'
plot $PLOT99
unset multiplot
EOF
echo "sweep: wrote $CSV and $OUT_DIR/sweep.png" >&2
