// RequestState: the shared state behind a RequestHandle.
//
// Thread-safe: completed once by the engine (first Complete wins), waited on
// by any number of client threads.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>

#include "flotilla/request.h"

namespace flotilla::internal {

class RequestState {
 public:
  using Clock = std::chrono::steady_clock;
  explicit RequestState(Clock::time_point deadline) : deadline_(deadline) {}

  // Returns false when it was completed already.
  bool Complete(RequestResult r) {
    std::function<void(const RequestResult&)> callback;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (done_) return false;
      done_ = true;
      result_ = std::move(r);
      callback.swap(callback_);
    }
    cv_.notify_all();
    // result_ no longer changes once done_ is set, so it is read unlocked.
    if (callback) callback(result_);
    return true;
  }
  // Runs `fn` with the result now if complete, else from Complete.
  void OnComplete(std::function<void(const RequestResult&)> fn) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (!done_) {
        callback_ = std::move(fn);
        return;
      }
    }
    fn(result_);
  }
  bool Complete(RequestCode code) {
    RequestResult r;
    r.code = code;
    return Complete(std::move(r));
  }

  RequestResult Wait() {
    std::unique_lock<std::mutex> l(mu_);
    if (!cv_.wait_until(l, deadline_, [&] { return done_; })) {
      RequestResult r;
      r.code = RequestCode::kTimeout;
      return r;
    }
    return result_;
  }

  bool Done() {
    std::lock_guard<std::mutex> l(mu_);
    return done_;
  }
  Clock::time_point deadline() const { return deadline_; }

  // Cancellation (RequestHandle::Cancel). A proposal or read is created
  // queued; the step worker marks a proposal proposed as it hands it to
  // the core, and a cancel wins only while it is still queued, so a
  // cancelled proposal never reaches the log. Other requests (membership
  // changes, snapshots) are created proposed: they cannot be cancelled.
  void MakeCancellable() { stage_.store(kQueued, std::memory_order_relaxed); }
  // The step worker: false when the request was cancelled (then skip it).
  bool MarkProposed() {
    uint8_t queued = kQueued;
    return stage_.compare_exchange_strong(queued, kProposed, std::memory_order_acq_rel) ||
           queued == kProposed;
  }
  bool Cancel() {
    uint8_t queued = kQueued;
    if (!stage_.compare_exchange_strong(queued, kCancelled, std::memory_order_acq_rel))
      return false;
    RequestResult r;
    r.code = RequestCode::kAborted;
    r.error = "cancelled before it was proposed";
    return Complete(std::move(r));
  }
  // For reads: the query run once the read index is applied.
  std::string query;

 private:
  static constexpr uint8_t kQueued = 0;
  static constexpr uint8_t kProposed = 1;
  static constexpr uint8_t kCancelled = 2;
  const Clock::time_point deadline_;
  std::atomic<uint8_t> stage_{kProposed};
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;                                   // guarded by mu_
  RequestResult result_;                                // guarded by mu_
  std::function<void(const RequestResult&)> callback_;  // guarded by mu_
};

// The one way to make a valid RequestHandle (its constructor is private:
// embedders get handles only from the NodeHost).
struct HandleAccess {
  static RequestHandle Make(std::shared_ptr<RequestState> s) { return RequestHandle(std::move(s)); }
};

}  // namespace flotilla::internal
