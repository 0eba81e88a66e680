// Status and Result<T>: how every fallible call in Flotilla reports its outcome.
//
// A Status is a code the caller can act on plus a human-readable message. No
// exception crosses a module boundary. Both types are [[nodiscard]]: dropping
// a status on purpose is written `status.IgnoreError();` so that it can be
// searched for.
//
// Thread-safety: values; safe to copy and move between threads.
#pragma once

#include <cassert>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace flotilla {

// What the caller can do about an error.
enum class StatusCode : uint8_t {
  kOk = 0,
  kInvalidArgument,  // the request is malformed; do not retry it unchanged
  kNotFound,         // the shard, replica, key or record does not exist
  kAlreadyExists,    // the shard, replica or record exists already
  kBusy,             // a bounded queue or memory limit is full; retry later
  kTimeout,          // the deadline passed; the outcome may be unknown
  kTooLarge,         // an entry or message exceeds its configured bound
  kNotLeader,        // this replica cannot serve the request; see the leader hint
  kUnavailable,      // a peer or resource cannot be reached now; retry later
  kCorruption,       // stored or received data failed verification
  kDataLoss,         // data that should exist is gone (e.g. compacted)
  kIOError,          // the operating system failed an operation (fsync, write)
  kNoSpace,          // the disk is full
  kAborted,          // the operation was cancelled before it completed
  kTerminated,       // the NodeHost or replica is shutting down
  kRejected,         // the request was understood and refused (e.g. bad deployment id)
  kInternal,         // a bug; please report it
};

// Returns a stable, lower-case name for `code` ("ok", "busy", ...).
inline std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "ok";
    case StatusCode::kInvalidArgument:
      return "invalid_argument";
    case StatusCode::kNotFound:
      return "not_found";
    case StatusCode::kAlreadyExists:
      return "already_exists";
    case StatusCode::kBusy:
      return "busy";
    case StatusCode::kTimeout:
      return "timeout";
    case StatusCode::kTooLarge:
      return "too_large";
    case StatusCode::kNotLeader:
      return "not_leader";
    case StatusCode::kUnavailable:
      return "unavailable";
    case StatusCode::kCorruption:
      return "corruption";
    case StatusCode::kDataLoss:
      return "data_loss";
    case StatusCode::kIOError:
      return "io_error";
    case StatusCode::kNoSpace:
      return "no_space";
    case StatusCode::kAborted:
      return "aborted";
    case StatusCode::kTerminated:
      return "terminated";
    case StatusCode::kRejected:
      return "rejected";
    case StatusCode::kInternal:
      return "internal";
  }
  return "unknown";
}

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) {
    return {StatusCode::kInvalidArgument, std::move(m)};
  }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
  static Status Busy(std::string m) { return {StatusCode::kBusy, std::move(m)}; }
  static Status Timeout(std::string m) { return {StatusCode::kTimeout, std::move(m)}; }
  static Status TooLarge(std::string m) { return {StatusCode::kTooLarge, std::move(m)}; }
  static Status NotLeader(std::string m) { return {StatusCode::kNotLeader, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
  static Status DataLoss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
  static Status IOError(std::string m) { return {StatusCode::kIOError, std::move(m)}; }
  static Status NoSpace(std::string m) { return {StatusCode::kNoSpace, std::move(m)}; }
  static Status Aborted(std::string m) { return {StatusCode::kAborted, std::move(m)}; }
  static Status Terminated(std::string m) { return {StatusCode::kTerminated, std::move(m)}; }
  static Status Rejected(std::string m) { return {StatusCode::kRejected, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "ok" or "<code>: <message>".
  std::string ToString() const {
    if (ok()) return "ok";
    std::string out(StatusCodeName(code_));
    if (!message_.empty()) out.append(": ").append(message_);
    return out;
  }

  // Marks a status as deliberately ignored.
  void IgnoreError() const {}

  friend bool operator==(const Status& a, const Status& b) { return a.code_ == b.code_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (std::get<Status>(v_).ok()) {
      // An OK status carries no value: that is a programmer error.
      std::abort();
    }
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  // REQUIRES: ok()
  T& value() & { return Checked(); }
  const T& value() const& { return const_cast<Result*>(this)->Checked(); }
  T&& value() && { return std::move(Checked()); }
  T* operator->() { return &Checked(); }
  const T* operator->() const { return &const_cast<Result*>(this)->Checked(); }
  T& operator*() & { return Checked(); }
  const T& operator*() const& { return const_cast<Result*>(this)->Checked(); }

  // OK when a value is held.
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }

 private:
  T& Checked() {
    if (!ok()) std::abort();  // Reading the value of an error is a programmer error.
    return std::get<T>(v_);
  }
  std::variant<T, Status> v_;
};

}  // namespace flotilla

// Returns early from a function returning Status (or Result) when `expr` fails.
#define FLOTILLA_RETURN_IF_ERROR(expr)                   \
  do {                                                   \
    ::flotilla::Status flotilla_status_ = (expr);        \
    if (!flotilla_status_.ok()) return flotilla_status_; \
  } while (0)
