// A linearizability checker for key-value histories, and a recorder that
// builds such histories from concurrent clients.
//
// The model is one register per key: a key holds a value or is absent (never
// written, or deleted). Clients record each operation's call and return times
// and its outcome; Check() decides whether some order of the operations, each
// taking effect at one instant between its call and its return, explains every
// observed result. See docs/lincheck.md for the algorithm and for what
// "unknown" outcomes mean.
//
// Standard library only, so that the deterministic simulator and the daemon's
// end-to-end tests can both link it without pulling in the engine.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flotilla::lincheck {

enum class OpKind : uint8_t {
  kGet,     // reads the key's value (or absence)
  kPut,     // sets the key's value
  kDelete,  // makes the key absent
  kCas,     // sets the value only if the current value equals `expected`
};

enum class Outcome : uint8_t {
  kOk,       // completed; the response is what the store answered
  kFailed,   // definitely not applied (for example rejected before proposal)
  kUnknown,  // may have taken effect at any time after its call, or never
};

// The return time that Check() uses for operations with an unknown outcome.
inline constexpr int64_t kNeverReturned = std::numeric_limits<int64_t>::max();

// What a client asked for. Thread-safety: a value; safe to copy between threads.
struct Command {
  OpKind kind = OpKind::kGet;
  std::string key;
  std::optional<std::string> expected;  // kCas: the value required; nullopt = absent
  std::string value;                    // kPut, kCas: the value written

  static Command Get(std::string key);
  static Command Put(std::string key, std::string value);
  static Command Delete(std::string key);
  static Command Cas(std::string key, std::optional<std::string> expected, std::string value);
};

// What the store answered. Only meaningful when the outcome is kOk.
// Thread-safety: a value; safe to copy between threads.
struct Response {
  std::optional<std::string> value;  // kGet: the value read; nullopt = absent
  bool swapped = false;              // kCas: whether the swap took place

  static Response None() { return {}; }
  static Response Read(std::optional<std::string> value);
  static Response Swapped(bool swapped);
};

// One recorded operation. Times are in any unit (ticks, nanoseconds, event
// sequence numbers) as long as the whole history uses the same one. An
// operation A precedes B only if A.return_time < B.call_time: equal times
// count as concurrent, which never rejects a correct history.
// Thread-safety: a value; safe to copy between threads.
struct Operation {
  uint64_t client_id = 0;
  Command command;
  int64_t call_time = 0;
  int64_t return_time = 0;  // ignored for kUnknown, which counts as never returned
  Outcome outcome = Outcome::kOk;
  Response response;  // ignored unless outcome is kOk
};

// A one-line description such as `client 3 cas("k", "a" -> "b") -> swapped
// ok [10, 14]`, for failure messages. Long values are shortened.
std::string Describe(const Operation& op);

std::string_view OutcomeName(Outcome outcome);

// Bounds that keep Check() from running for ever on a hard history. When one
// is hit, the affected key's verdict is kUnknown, never kViolation.
struct CheckOptions {
  // Distinct search states (set of linearized operations, register value)
  // that may be remembered per key. Each costs about 24 bytes plus one bit
  // per operation on the key.
  uint64_t max_states_per_key = uint64_t{1} << 20;
  // Wall time for the whole Check(); zero means no limit. This makes the
  // verdict depend on the machine, so deterministic tests should rely on
  // max_states_per_key and keep this as a safety net.
  std::chrono::milliseconds max_duration{std::chrono::seconds(60)};
  // How many operations of the longest linearizable prefix an explanation
  // lists (the latest ones).
  size_t max_explained_ops = 8;
};

enum class Verdict : uint8_t {
  kLinearizable,    // an order exists that explains every result
  kViolation,       // no such order exists
  kUnknown,         // a bound in CheckOptions was hit before a decision
  kInvalidHistory,  // the input is malformed (for example return before call)
};

std::string_view VerdictName(Verdict verdict);

// The verdict for the operations on one key.
struct KeyResult {
  std::string key;
  Verdict verdict = Verdict::kLinearizable;
  size_t operations = 0;  // checked: failed ops and unknown reads are not counted
  uint64_t states_explored = 0;
  std::string explanation;  // empty when linearizable
};

// The verdict for a whole history. A violation on any key makes the history
// a violation; otherwise a key whose bound was hit makes it kUnknown.
struct CheckResult {
  Verdict verdict = Verdict::kLinearizable;
  // For humans: the explanation of every violating or undecided key, or of
  // the malformed input. Empty when linearizable.
  std::string explanation;
  std::vector<KeyResult> keys;  // one per key with a checked operation, sorted by key
  uint64_t states_explored = 0;

  bool ok() const { return verdict == Verdict::kLinearizable; }
};

// Decides whether `history` is linearizable with respect to a register per
// key that starts absent. Operations may appear in any order. kFailed
// operations are ignored; kUnknown ones may take effect at any time after
// their call, or not at all. Never throws; a malformed history gives
// kInvalidHistory with the reason.
CheckResult Check(const std::vector<Operation>& history, const CheckOptions& options = {});

// Records a history from clients that may run on many threads.
//
// Each Invoke() and Complete() is stamped with a time read under the mutex,
// so the recorded order of events is a real-time order: a client records the
// invocation before it sends the request and the completion after it has the
// answer. By default the time is the event's sequence number, which is
// exact and never ties; a clock can be supplied instead (for example the
// simulator's virtual clock), in which case equal readings count as
// concurrent.
//
// Thread-safe.
class History {
 public:
  // `clock` is called with the mutex held; it must not call back into this
  // History. Null means "use event sequence numbers".
  explicit History(std::function<int64_t()> clock = nullptr);

  History(const History&) = delete;
  History& operator=(const History&) = delete;

  // Records that `client_id` is about to issue `command`. Returns the id to
  // pass to Complete().
  uint64_t Invoke(uint64_t client_id, Command command);

  // Records how operation `id` ended. `response` is ignored unless `outcome`
  // is kOk. REQUIRES: `id` came from Invoke() on this History and was not
  // completed before; otherwise the process stops, as it is a bug in the test.
  void Complete(uint64_t id, Outcome outcome, Response response = Response::None());

  // A copy of everything recorded so far. Operations that were invoked but
  // not completed are reported as kUnknown: a client that vanished may or may
  // not have had its request applied.
  std::vector<Operation> Operations() const;

  size_t size() const;

 private:
  int64_t Now();  // REQUIRES: mu_ is held

  mutable std::mutex mu_;
  std::function<int64_t()> clock_;  // immutable after construction
  int64_t next_sequence_ = 0;       // GUARDED_BY(mu_)
  std::vector<Operation> ops_;      // GUARDED_BY(mu_)
  std::vector<bool> completed_;     // GUARDED_BY(mu_); parallel to ops_
};

}  // namespace flotilla::lincheck
