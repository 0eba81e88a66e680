// RequestHandle: the asynchronous result of a request to a NodeHost.
//
// Thread-safe: any thread may wait on a handle; the engine completes it once.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace flotilla {

enum class RequestCode : uint8_t {
  kCompleted = 0,  // applied (or, for a read, confirmed); see value/data
  kTimeout,        // the deadline passed; the outcome is unknown
  kTerminated,     // the NodeHost or replica stopped
  kRejected,       // refused (bad membership change, too large, ...)
  // Dropped before it reached the log (no leader known, the shard's byte
  // bounds, a full queue); it will never be applied, so retrying it cannot
  // apply it twice. A proposal that reached the log and then lost its
  // leader ends as kTimeout (outcome unknown) or kCompleted.
  kDropped,
  kAborted,  // cancelled before it was proposed (RequestHandle::Cancel)
  // A session proposal retried after it was applied, whose result is no
  // longer known: an on-disk state machine applied it durably before a
  // restart, and no snapshot of the session registry held its result. It
  // took effect exactly once; what the state machine returned is lost.
  kAppliedResultUnknown,
};
std::string_view RequestCodeName(RequestCode c);

struct RequestResult {
  RequestCode code = RequestCode::kCompleted;
  uint64_t value = 0;  // the state machine's result, or the read index
  // The state machine's result data, or the read value; only ever what the
  // state machine returned, never the engine's words.
  std::string data;
  // Why the request was refused or rejected (kRejected: an unregistered
  // session, a failed Lookup, a snapshot not taken; kDropped or kRejected
  // from SyncPropose/SyncRead: the call's refusal). Empty when completed.
  std::string error;
  bool ok() const { return code == RequestCode::kCompleted; }
};

namespace internal {
class RequestState;  // the engine's; opaque here
struct HandleAccess;
}  // namespace internal

class RequestHandle {
 public:
  // An invalid handle (valid() is false; Wait() answers kAborted). Only
  // the engine makes valid ones.
  RequestHandle() = default;

  // Blocks until the request completes or its deadline passes (then kTimeout).
  RequestResult Wait() const;
  // True once completed (non-blocking).
  bool Done() const;
  // Runs `fn` once with the result, without blocking: at once on this thread
  // when the request is complete already, otherwise on the engine thread
  // that completes it (so `fn` must be quick and must not block on the
  // NodeHost). A request that times out is reported kTimeout when the engine
  // frees it, which may be up to a second after its deadline. At most one
  // callback per request; a later call replaces an earlier, not yet run one.
  void OnComplete(std::function<void(const RequestResult&)> fn) const;
  // Cancels a proposal (Propose, ProposeInSession, RegisterSession,
  // CloseSession) or a read that the engine has not handed to Raft yet: it
  // completes kAborted at once (a callback runs on this thread) and a
  // proposal is never applied. False when it is too late (the proposal may
  // still be applied: wait for its result), when it completed already, or
  // for a request that cannot be cancelled (membership changes, leader
  // transfers, snapshots).
  bool Cancel() const;
  bool valid() const { return state_ != nullptr; }

 private:
  friend struct internal::HandleAccess;
  explicit RequestHandle(std::shared_ptr<internal::RequestState> s) : state_(std::move(s)) {}
  std::shared_ptr<internal::RequestState> state_;
};

}  // namespace flotilla
