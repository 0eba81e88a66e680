// `nodehost serve --config FILE`: runs the daemon until SIGTERM or SIGINT.
#pragma once

#include <string>

#include "flotilla/node_host.h"
#include "tools/nodehost/metrics.h"
#include "tools/nodehost/service.h"

namespace flotilla::nodehost {

// Exit codes of `serve`.
inline constexpr int kServeOk = 0;
inline constexpr int kServeFailed = 1;     // the NodeHost or a server could not start
inline constexpr int kServeBadConfig = 2;  // the config file is missing or invalid

// Blocks until a signal asks it to stop; returns the exit code.
int RunServe(const std::string& config_path);

// `nodehost serve --check-config FILE`: reads the config and every file it
// names as a start would, and starts nothing. kServeOk, or kServeBadConfig
// with what is wrong on stderr.
int CheckServeConfig(const std::string& config_path);

// The whole /metrics page: the daemon's counters, the replicas' gauges and
// the engine's metrics.
std::string RenderMetrics(const ServiceContext& ctx, double uptime_seconds);

}  // namespace flotilla::nodehost
