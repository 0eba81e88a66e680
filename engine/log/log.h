// The logger the engine, the LogDB and the transport write to (not a public
// header): spdlog's default logger, or the embedder's sink installed with
// flotilla::SetLogSink (include/flotilla/logging.h).
//
//   Log().warn("shard {}: {}", shard, why);
#pragma once

#include <spdlog/spdlog.h>

namespace flotilla {

spdlog::logger& Log();

}  // namespace flotilla
