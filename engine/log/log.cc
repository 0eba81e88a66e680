#include "engine/log/log.h"

#include <spdlog/sinks/base_sink.h>
#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "flotilla/logging.h"

namespace flotilla {
namespace {

LogLevel FromSpdlog(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace:
    case spdlog::level::debug:
      return LogLevel::kDebug;
    case spdlog::level::info:
      return LogLevel::kInfo;
    case spdlog::level::warn:
      return LogLevel::kWarning;
    case spdlog::level::err:
      return LogLevel::kError;
    default:
      return LogLevel::kCritical;
  }
}

spdlog::level::level_enum ToSpdlog(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return spdlog::level::debug;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kWarning:
      return spdlog::level::warn;
    case LogLevel::kError:
      return spdlog::level::err;
    case LogLevel::kCritical:
      return spdlog::level::critical;
  }
  return spdlog::level::info;
}

// Hands each formatted message (payload only) to the embedder's sink. The
// sink is called without our lock: it is documented as thread-safe.
class CallbackSink final : public spdlog::sinks::sink {
 public:
  explicit CallbackSink(LogSink fn) : fn_(std::move(fn)) {}
  void log(const spdlog::details::log_msg& msg) override {
    fn_(FromSpdlog(msg.level), std::string_view(msg.payload.data(), msg.payload.size()));
  }
  void flush() override {}
  void set_pattern(const std::string&) override {}
  void set_formatter(std::unique_ptr<spdlog::formatter>) override {}

 private:
  LogSink fn_;
};

// The installed logger, or null for spdlog's default one. Loggers once
// installed are kept until exit: a thread may still be logging through the
// previous one when it is replaced, and SetLogSink is rare.
std::atomic<spdlog::logger*> g_logger{nullptr};
std::mutex g_keep_mu;
std::vector<std::shared_ptr<spdlog::logger>>& Kept() {
  static auto* kept = new std::vector<std::shared_ptr<spdlog::logger>>;
  return *kept;
}

}  // namespace

spdlog::logger& Log() {
  spdlog::logger* l = g_logger.load(std::memory_order_acquire);
  return l != nullptr ? *l : *spdlog::default_logger_raw();
}

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
    case LogLevel::kCritical:
      return "critical";
  }
  return "unknown";
}

void SetLogSink(LogSink sink, LogLevel min_level) {
  if (!sink) {
    g_logger.store(nullptr, std::memory_order_release);
    return;
  }
  auto logger =
      std::make_shared<spdlog::logger>("flotilla", std::make_shared<CallbackSink>(std::move(sink)));
  logger->set_level(ToSpdlog(min_level));
  std::lock_guard<std::mutex> l(g_keep_mu);
  Kept().push_back(logger);
  g_logger.store(logger.get(), std::memory_order_release);
}

}  // namespace flotilla
