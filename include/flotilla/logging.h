// Where the engine's log lines go.
//
// By default the engine (NodeHost, LogDB, transport) writes through
// spdlog's default logger, so a program that configures spdlog configures
// the engine's logs too. An embedder with a logging system of its own
// installs a sink instead:
//
//   flotilla::SetLogSink([](flotilla::LogLevel level, std::string_view line) {
//     my_log(static_cast<int>(level), line);
//   }, flotilla::LogLevel::kInfo);
//
// The sink is process-wide: every NodeHost of the process logs through it.
// It is called on the engine's own threads, concurrently, so it must be
// thread-safe, quick and must not call into a NodeHost. The engine logs
// events (a replica started, a leader changed, a peer refused, damage
// found), never a line per request or entry.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

namespace flotilla {

enum class LogLevel : uint8_t {
  kDebug,
  kInfo,
  kWarning,
  kError,
  kCritical,
};
std::string_view LogLevelName(LogLevel level);

// `line` is the message alone (no time stamp or level): the sink adds what
// its own format wants. It is valid only during the call.
using LogSink = std::function<void(LogLevel level, std::string_view line)>;

// Lines at `min_level` and above go to `sink` from now on; lines below it
// are not formatted at all. A null `sink` restores the default (spdlog's
// default logger). Thread-safe; a line being logged while the sink changes
// goes to the old sink or the new one.
void SetLogSink(LogSink sink, LogLevel min_level = LogLevel::kInfo);

}  // namespace flotilla
