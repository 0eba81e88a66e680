#!/usr/bin/env bash
# Installs the Debian 12 packages Flotilla needs, skipping those already present.
# Runs `apt-get update` once, and only when something is missing.
# libssl-dev: the transport's HMAC of the deployment secret (libcrypto).
# iproute2 and nftables: the nemesis test's network namespaces and packet loss.
# clang and libclang-rt-14-dev (libFuzzer and clang's sanitizer runtimes):
# the raft-port fuzzer (tools/fuzz.sh, FLOTILLA_FUZZ=ON).
# libsystemd-dev: the daemon's sd_notify readiness and watchdog; lintian and
# dpkg-dev: the Debian package and its check (cpack, tests/package).
# prometheus: promtool, which checks the daemon's /metrics, the dashboard's
# queries and the alert rules (tools/nodehost/observability).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git ccache
  librocksdb-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libspdlog-dev libfmt-dev
  libboost-dev
  libcli11-dev libtomlplusplus-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  gnuplot-nox curl procps
  openssl libssl-dev
  iproute2 nftables
  clang libclang-rt-14-dev
  libsystemd-dev lintian dpkg-dev
  prometheus
)

missing=()
for p in "${PACKAGES[@]}"; do
  # No pipe into grep -q: under pipefail an early exit of grep can fail the
  # producer with SIGPIPE and turn the test around.
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  if [[ $status != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
