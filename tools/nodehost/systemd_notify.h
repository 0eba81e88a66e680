// The daemon's side of systemd's service protocol (sd_notify(3)), active
// only when systemd started it with NOTIFY_SOCKET set (Type=notify):
//  - READY=1 once every replica the daemon hosts knows a leader, so that
//    `systemctl start` returns when the node serves its shards, and units
//    ordered after it start only then;
//  - STATUS= with how many hosted shards are led, refreshed while it runs;
//  - WATCHDOG=1 at half of WatchdogSec while the NodeHost answers, so that a
//    wedged daemon is restarted by systemd;
//  - STOPPING=1 when it shuts down.
// Without NOTIFY_SOCKET it does nothing. Thread-safe: Start and Stop from the
// daemon's main thread; the notifier runs a thread of its own.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace flotilla::nodehost {

// How many hosted replicas there are, and how many of them know a leader.
struct LeaderCount {
  size_t hosted = 0;
  size_t led = 0;
};

class SystemdNotifier {
 public:
  // `count` is called from the notifier's thread; it must not block for
  // long (a call that hangs stops the watchdog, which is the point).
  explicit SystemdNotifier(std::function<LeaderCount()> count);
  ~SystemdNotifier();
  SystemdNotifier(const SystemdNotifier&) = delete;
  SystemdNotifier& operator=(const SystemdNotifier&) = delete;

  // Whether systemd asked for notifications (NOTIFY_SOCKET is set).
  static bool Wanted();
  void Start();
  // Sends STOPPING=1 and joins the thread.
  void Stop();
  // True once READY=1 was sent.
  bool ready() const;

 private:
  void Run();

  std::function<LeaderCount()> count_;
  std::chrono::microseconds watchdog_{0};  // 0: no watchdog asked for
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;   // guarded by mu_
  bool ready_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace flotilla::nodehost
