#!/usr/bin/env bash
# Installs what is missing, builds Flotilla with warnings as errors, and runs
# every test with ctest. Long soak runs are not registered by default; run them
# with  cmake -S . -B build -DFLOTILLA_SOAK=ON && cmake --build build && ctest --test-dir build -L soak
# A second, sanitized build (ASan + UBSan) runs the tests that parse untrusted
# input (wire messages, LogDB records, the daemon's commands and config), the
# protocol core and the engine tests that run without network timing.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/install-deps.sh
JOBS=$(nproc)

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLOTILLA_WERROR=ON
cmake --build build -j "$JOBS"
ctest --test-dir build -j "$JOBS" --output-on-failure -LE soak --timeout 900

if [[ "${FLOTILLA_SKIP_ASAN:-0}" != "1" ]]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFLOTILLA_SANITIZE=ON -DFLOTILLA_WERROR=ON
  ASAN_TARGETS=(raft_unit_test raft_safety_test)
  for t in transport_corrupt_input_test transport_convert_test logdb_test \
           engine_sm_kinds_test engine_admin_test engine_manual_drive_test engine_log_cache_test \
           nodehost_unit_test; do
    if cmake --build build-asan --target help | grep -q "^$t:"; then ASAN_TARGETS+=("$t"); fi
  done
  cmake --build build-asan -j "$JOBS" --target "${ASAN_TARGETS[@]}"
  ctest --test-dir build-asan -j "$JOBS" --output-on-failure -LE soak --timeout 900 \
    -R "Quorum|Progress|ConfChange|MemoryLog|RaftLog|Inflights|ReadIndexQueue|Safety|CorruptInput|ConvertTest|Format|Crc|FlippedBit|StateMachineKinds|Admin|Metrics|BackPressure|ManualDrive|StorageFailure|CampaignCap|Payload|LogCache|Quiescence|KvStateMachine|Config|ShardMap"
fi
