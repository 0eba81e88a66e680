#!/usr/bin/env bash
# Every ```cpp and ```cmake block of docs/embedding.md must appear, line for
# line, in the consumer program the consumer_package test builds and runs
# (tests/consumer/consumer.cc, tests/consumer/CMakeLists.txt), so that the
# page shows code that compiles and works (ctest test doc_snippets).
set -euo pipefail
src=$(cd "$1" && pwd)
doc="$src/docs/embedding.md"
awk -v cc="$src/tests/consumer/consumer.cc" -v cm="$src/tests/consumer/CMakeLists.txt" '
  function slurp(path,   line, all) {
    all = ""
    while ((getline line < path) > 0) all = all line "\n"
    close(path)
    return all
  }
  BEGIN { code = slurp(cc); cmake = slurp(cm); blocks = 0; bad = 0 }
  /^```(cpp|cmake)$/ { lang = substr($0, 4); block = ""; inside = 1; start = NR; next }
  inside && /^```$/ {
    inside = 0; blocks++
    hay = (lang == "cpp") ? code : cmake
    if (index(hay, block) == 0) {
      printf "doc_snippets: docs/embedding.md:%d: this %s block is not in the consumer program:\n%s", start, lang, block
      bad++
    }
    next
  }
  inside { block = block $0 "\n" }
  END {
    if (blocks == 0) { print "doc_snippets: no code blocks found"; exit 1 }
    printf "doc_snippets: %d blocks checked, %d not found\n", blocks, bad
    exit bad > 0
  }' "$doc"
