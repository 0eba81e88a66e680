#!/usr/bin/env bash
# Installs the Flotilla build in $1 into a prefix of its own, builds the
# consumer project in $2 against that prefix only, and runs it (ctest test
# consumer_package). Any step that fails fails the test.
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
prefix="$build/consumer/prefix"
out="$build/consumer/build"
rm -rf "$prefix" "$out"
# The library targets may be older than the last change when ctest runs
# without a build first; building them is a no-op otherwise.
cmake --build "$build" --target flotilla_engine
cmake --install "$build" --prefix "$prefix"
# Only the public headers are installed.
if find "$prefix/include" -type f ! -path "*/include/flotilla/*.h" | grep -q .; then
  echo "consumer: the prefix holds headers outside include/flotilla/:" >&2
  find "$prefix/include" -type f ! -path "*/include/flotilla/*.h" >&2
  exit 1
fi
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S "$src" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON "${launcher[@]}"
cmake --build "$out"
"$out/flotilla_consumer"
