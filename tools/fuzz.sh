#!/usr/bin/env bash
# Builds and runs the raft-port fuzzer (tests/fuzz; docs/security.md, "The
# fuzzer") over the committed corpus.
#
#   tools/fuzz.sh --seconds 60     the bounded run of tools/run-tests.sh
#   tools/fuzz.sh --minutes 120    a long run (the soak run)
#
# Options: --build-dir DIR (default build-fuzz), --no-build. New inputs are
# kept in DIR/fuzz-corpus (the committed corpus, tests/fuzz/corpus/raft_port,
# is only read: add an input to it by hand), crashes in DIR/fuzz-artifacts.
#
# Fails (non-zero) on a crash or a failed check, and also when the fuzzer was
# not built, did not replay the whole committed corpus, or ran no input: a
# run that silently ran less than it says is a failure too. Prints the
# executions, the coverage (cov: edges, ft: features) and the fuzzer's own
# figures (inputs fully checked, inputs after a member's lie).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_TO_RUN=""
BUILD_DIR=build-fuzz
BUILD=1
while (($#)); do
  case $1 in
    --seconds) SECONDS_TO_RUN=$2; shift 2 ;;
    --minutes) SECONDS_TO_RUN=$(($2 * 60)); shift 2 ;;
    --build-dir) BUILD_DIR=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) echo "fuzz: unknown argument $1 (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
done
if [[ ! $SECONDS_TO_RUN =~ ^[0-9]+$ || $SECONDS_TO_RUN -eq 0 ]]; then
  echo "fuzz: give --seconds N or --minutes N (N > 0)" >&2
  exit 2
fi

FUZZER=$BUILD_DIR/tests/fuzz/flotilla_fuzz_raft_port
CORPUS=tests/fuzz/corpus/raft_port
if ((BUILD)); then
  # Warnings are errors in the g++ build; clang warns about other things
  # (a RocksDB logger's vsnprintf, -Wformat-nonliteral), which must not
  # keep the fuzzer from running.
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++ -DFLOTILLA_FUZZ=ON -DFLOTILLA_WERROR=OFF >/dev/null
  cmake --build "$BUILD_DIR" -j "$(nproc)" --target flotilla_fuzz_raft_port
fi
if [[ ! -x $FUZZER ]]; then
  echo "fuzz: $FUZZER was not built" >&2
  exit 1
fi
CORPUS_FILES=$(find "$CORPUS" -type f | wc -l)
if ((CORPUS_FILES == 0)); then
  echo "fuzz: the committed corpus $CORPUS is empty" >&2
  exit 1
fi

mkdir -p "$BUILD_DIR/fuzz-corpus" "$BUILD_DIR/fuzz-artifacts"
LOG=$BUILD_DIR/fuzz.log
echo "fuzz: $FUZZER for ${SECONDS_TO_RUN}s over $CORPUS ($CORPUS_FILES inputs) and $BUILD_DIR/fuzz-corpus"
status=0
# -timeout: one input runs well under a second; 60 s means a hang.
"$FUZZER" -max_total_time="$SECONDS_TO_RUN" -timeout=60 -rss_limit_mb=4096 \
  -print_final_stats=1 -artifact_prefix="$BUILD_DIR/fuzz-artifacts/" \
  -dict=tests/fuzz/raft_port.dict "$BUILD_DIR/fuzz-corpus" "$CORPUS" >"$LOG" 2>&1 || status=$?

# libFuzzer separates its status words with a tab.
grep -aE '^#[0-9]+[[:space:]]+(INITED|DONE)|^fuzz:|^stat::|CHECK FAILED|ERROR:|SUMMARY' "$LOG" || true
if ((status != 0)); then
  echo "fuzz: FAILED (exit $status): the input is in $BUILD_DIR/fuzz-artifacts/; log $LOG" >&2
  exit 1
fi
if ! grep -qaE '^#[0-9]+[[:space:]]+INITED' "$LOG"; then
  echo "fuzz: FAILED: the committed corpus was not replayed whole (no INITED line); log $LOG" >&2
  exit 1
fi
RUNS=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\)$/\1/p' "$LOG" | tail -1)
if [[ -z $RUNS || $RUNS -lt $CORPUS_FILES ]]; then
  echo "fuzz: FAILED: ${RUNS:-no} executions reported, fewer than the corpus' $CORPUS_FILES inputs; log $LOG" >&2
  exit 1
fi
LAST=$(grep -aE '^#[0-9]+[[:space:]]' "$LOG" | tail -1)
echo "fuzz: passed: $RUNS executions in ${SECONDS_TO_RUN}s; last status: $LAST"
