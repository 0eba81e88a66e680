#!/usr/bin/env bash
# The main job: installs what is missing, builds Flotilla (Release), and runs
# the multi-group benchmark (issue 7) in its default shape, then the LogDB
# micro-benchmark at the batch shape the engine reached, for the ceiling
# comparison.
#
#   1. multigroup_bench: three NodeHosts in this process over loopback gRPC,
#      each with its own RocksDB (fsync on), 48 shards x 3 replicas, 1,024
#      closed-loop clients, 16-byte proposals, 5 s warm-up, 20 s measured.
#      Prints a progress line each second and the table at the end.
#   2. logdb_bench with the entries per fsync that run measured, split over
#      the shards of one step worker's pass, three processes at once (one per
#      NodeHost's LogDB): the storage ceiling for that batch shape, and the
#      engine's writes/s as a fraction of it.
#
# docs/benchmark.md explains every figure and lists those measured.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/install-deps.sh
JOBS=$(nproc)
BUILD_DIR=${BUILD_DIR:-build-release}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLOTILLA_BUILD_TESTS=ON >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS" --target multigroup_bench logdb_bench

OUT=$(mktemp -d /tmp/flotilla-run-main-XXXXXX)
trap 'rm -rf "$OUT"' EXIT

echo
echo "== multigroup_bench --groups 48 --clients 1024 --payload 16 --seconds 20 --warmup 5"
"$BUILD_DIR"/bench/multigroup_bench --groups 48 --clients 1024 --payload 16 --seconds 20 --warmup 5 \
  --json-out "$OUT/run.json"

# The batch shape the engine reached: entries per fsync, over the shards one
# step worker saves in a pass (48 shards / one worker per core).
LINE=$(head -1 "$OUT/run.json")
field() { grep -o "\"$1\":[-0-9.e+]*" <<<"$LINE" | head -1 | cut -d: -f2; }
WRITES=$(field writes_per_s)
PER_FSYNC=$(field entries_per_fsync)
# Each NodeHost of the benchmark has max(1, cores / 3) step workers (its
# default), each saving the replicas it owns in one write per pass.
STEP=$(( JOBS / 3 )); (( STEP >= 1 )) || STEP=1
SHARDS=$(( 48 / STEP ))
ENTRIES=$(awk -v e="$PER_FSYNC" -v s="$SHARDS" 'BEGIN { n = int(e / s + 0.5); print (n < 1 ? 1 : n) }')

echo
echo "== logdb_bench --shards=$SHARDS --entries=$ENTRIES --bytes=16 --threads=$STEP --saves=1000, three at once"
echo "   (the engine saved $PER_FSYNC entries per fsync; one process per NodeHost's LogDB, $STEP saver(s)"
echo "    like its $STEP step worker(s), all three on the same disk at the same time as the engine's were)"
for i in 0 1 2; do
  "$BUILD_DIR"/bench/logdb_bench --shards="$SHARDS" --entries="$ENTRIES" --bytes=16 --threads="$STEP" \
    --saves=1000 > "$OUT/logdb$i.txt" &
done
wait
tail -qn1 "$OUT"/logdb[012].txt

# Every NodeHost persists every write, so each host's LogDB must sustain
# writes/s entries: the ceiling is one LogDB's entries/s (mean of the three).
CEILING=$(grep -ho 'entries/s [0-9.]*' "$OUT"/logdb[012].txt | awk '{ s += $2; n++ } END { if (n) printf "%.0f", s / n }')
if [[ -n "${CEILING:-}" ]]; then
  awk -v w="$WRITES" -v c="$CEILING" 'BEGIN {
    printf "\n== engine writes/s %.0f = %.1f%% of the LogDB ceiling, %.0f entries/s per LogDB at the same batch shape\n", w, 100 * w / c, c
    print "   (the disk of the development machine varies several-fold from minute to minute: see docs/benchmark.md)"
  }'
fi
