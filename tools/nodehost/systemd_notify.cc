#include "tools/nodehost/systemd_notify.h"

#include <systemd/sd-daemon.h>

#include <algorithm>
#include <cstdlib>

namespace flotilla::nodehost {

namespace {
// How often STATUS is refreshed (and READY checked) without a watchdog.
constexpr std::chrono::milliseconds kStatusInterval{500};
}  // namespace

SystemdNotifier::SystemdNotifier(std::function<LeaderCount()> count) : count_(std::move(count)) {}

SystemdNotifier::~SystemdNotifier() { Stop(); }

bool SystemdNotifier::Wanted() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  return socket != nullptr && *socket != '\0';
}

void SystemdNotifier::Start() {
  if (!Wanted() || thread_.joinable()) return;
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0) watchdog_ = std::chrono::microseconds(usec);
  thread_ = std::thread([this] { Run(); });
}

void SystemdNotifier::Stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

bool SystemdNotifier::ready() const {
  std::lock_guard<std::mutex> l(mu_);
  return ready_;
}

void SystemdNotifier::Run() {
  // The watchdog is fed at half its interval (sd_watchdog_enabled(3)).
  const auto interval = watchdog_.count() > 0
                            ? std::min<std::chrono::microseconds>(kStatusInterval, watchdog_ / 2)
                            : std::chrono::microseconds(kStatusInterval);
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    l.unlock();
    // Counting asks the NodeHost: a NodeHost that no longer answers stops
    // the watchdog pings below.
    const LeaderCount c = count_();
    const bool all_led = c.led == c.hosted;
    std::string msg = "STATUS=serving: " + std::to_string(c.led) + " of " +
                      std::to_string(c.hosted) + " hosted shards led";
    if (watchdog_.count() > 0) msg += "\nWATCHDOG=1";
    l.lock();
    if (all_led && !ready_) {
      msg += "\nREADY=1";
      ready_ = true;
    }
    l.unlock();
    sd_notify(0, msg.c_str());
    l.lock();
    cv_.wait_for(l, interval, [this] { return stop_; });
  }
}

}  // namespace flotilla::nodehost
