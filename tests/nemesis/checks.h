// The nemesis test's run and its verdicts: starts the daemons, runs the
// workload under the nemesis, then checks linearizability, acknowledged
// writes, identical replicas and restartability, and prints the figures
// (per fault: outage and recovery; per kind: their means and maxima).
#pragma once

#include <chrono>
#include <cstdint>

#include "tests/nemesis/daemons.h"
#include "tests/nemesis/net_ns.h"

namespace flotilla::nemesis {

// 0 when every check passed, 1 otherwise (each failure printed).
int RunAndCheck(NetNs* net, Daemons* daemons, uint64_t seed, int clients,
                std::chrono::seconds length);

}  // namespace flotilla::nemesis
