// The checker is the Wing & Gong search with Lowe's improvements ("Testing
// for linearizability", 2017): the history is split by key, since a register
// per key is P-compositional; the search only ever linearizes a minimal
// operation (one whose call comes before every pending return), walking a
// linked list of call and return events; and a cache of (set of linearized
// operations, register value) pairs prunes states already known to fail.
// Unknown writes, which never return and so could be tried at every step,
// are further limited by rules that keep every verdict (KeySearch::Helps,
// KeySearch::Justifies, MarkBlindWrites, DropUnobservedUnknownWrites).
// docs/lincheck.md explains the algorithm and the treatment of unknown
// outcomes.
#include "tests/lincheck/lincheck.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <unordered_map>
#include <utility>

namespace flotilla::lincheck {
namespace {

using Clock = std::chrono::steady_clock;

// Stops the process: used for broken invariants, which are bugs in the
// checker or in the test that drives the recorder, never for bad input.
[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "lincheck: fatal: %s\n", what);
  std::abort();
}

void Require(bool condition, const char* what) {
  if (!condition) Die(what);
}

// Values longer than this are shortened in messages, so that one large
// payload does not bury the explanation.
constexpr size_t kMaxQuotedBytes = 40;

std::string Quote(std::string_view text) {
  std::string out = "\"";
  const size_t shown = text.size() > kMaxQuotedBytes ? kMaxQuotedBytes - 3 : text.size();
  for (size_t i = 0; i < shown; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\x%02x", c);
      out += escaped;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (shown < text.size()) out += "...";
  return out + "\"";
}

std::string QuoteOptional(const std::optional<std::string>& value) {
  return value ? Quote(*value) : std::string("absent");
}

std::string DescribeCommand(const Command& command) {
  const std::string key = Quote(command.key);
  switch (command.kind) {
    case OpKind::kGet:
      return "get(" + key + ")";
    case OpKind::kPut:
      return "put(" + key + ", " + Quote(command.value) + ")";
    case OpKind::kDelete:
      return "delete(" + key + ")";
    case OpKind::kCas:
      return "cas(" + key + ", " + QuoteOptional(command.expected) + " -> " + Quote(command.value) +
             ")";
  }
  return "invalid(" + key + ")";
}

std::string DescribeResponse(OpKind kind, const Response& response) {
  if (kind == OpKind::kGet) return " -> " + QuoteOptional(response.value);
  if (kind == OpKind::kCas) return response.swapped ? " -> swapped" : " -> not swapped";
  return "";
}

// ---------------------------------------------------------------------------
// One key's operations in the form the search needs.

using ValueId = int32_t;
constexpr ValueId kAbsent = 0;

// Interns the values seen on one key so that the register is a small integer.
// Not thread-safe.
class ValueTable {
 public:
  ValueTable() : names_{"absent"} {}

  ValueId Intern(const std::optional<std::string>& value) {
    if (!value) return kAbsent;
    const auto [it, inserted] = ids_.try_emplace(*value, static_cast<ValueId>(names_.size()));
    if (inserted) names_.push_back(Quote(*value));
    return it->second;
  }

  size_t size() const { return names_.size(); }
  const std::string& Name(ValueId id) const { return names_[static_cast<size_t>(id)]; }

 private:
  std::unordered_map<std::string, ValueId> ids_;
  std::vector<std::string> names_;  // indexed by ValueId, quoted for messages
};

struct KeyOp {
  size_t index = 0;  // position in the caller's history, for messages
  OpKind kind = OpKind::kGet;
  bool unknown = false;        // outcome kUnknown: optional, returns never
  ValueId expected = kAbsent;  // kCas
  ValueId written = kAbsent;   // kPut, kCas; kAbsent for kDelete
  ValueId read = kAbsent;      // kGet
  bool swapped = false;        // kCas with a known outcome
  bool blind = false;          // see MarkBlindWrites()
  int64_t call = 0;
  int64_t ret = 0;
};

constexpr ValueId kNoValue = -1;

// The value whose presence `op` depends on: what a get reads or what a
// swapping (or possibly swapping) CAS expects. kNoValue for blind writes.
ValueId Observes(const KeyOp& op) {
  if (op.kind == OpKind::kGet) return op.read;
  if (op.kind == OpKind::kCas && (op.unknown || op.swapped)) return op.expected;
  return kNoValue;
}

// The value whose absence `op` depends on: a completed CAS that did not swap
// needs the register to hold anything but its expected value.
ValueId Refuses(const KeyOp& op) {
  if (op.kind == OpKind::kCas && !op.unknown && !op.swapped) return op.expected;
  return kNoValue;
}

// The register's value after `op` is applied to `value`, or nullopt if `op`
// could not have given its observed result there. An unknown CAS swaps when
// it can; when it cannot it changes nothing, the same as not happening.
std::optional<ValueId> Step(const KeyOp& op, ValueId value) {
  switch (op.kind) {
    case OpKind::kGet:
      if (op.read != value) return std::nullopt;
      return value;
    case OpKind::kPut:
      return op.written;
    case OpKind::kDelete:
      return kAbsent;
    case OpKind::kCas:
      if (op.unknown) return value == op.expected ? op.written : value;
      if (op.swapped) {
        if (value != op.expected) return std::nullopt;
        return op.written;
      }
      if (value == op.expected) return std::nullopt;
      return value;
  }
  Die("unreachable operation kind");
}

// Why `op` cannot be the next operation when the register holds `value`;
// `fits` says whether Step() accepted it (then the search failed later on).
std::string WhyNotHere(const KeyOp& op, ValueId value, bool fits, const ValueTable& values) {
  if (fits && op.unknown) return "its outcome is unknown, and taking effect here does not help";
  if (fits) return "fits here, but no order of the remaining operations fits after it";
  if (op.kind == OpKind::kGet) {
    return "reads " + values.Name(op.read) + ", but the value is " + values.Name(value);
  }
  if (op.swapped) {
    return "swapped from " + values.Name(op.expected) + ", but the value is " + values.Name(value);
  }
  return "did not swap, but the value is " + values.Name(value) + ", so it would have";
}

// ---------------------------------------------------------------------------
// The memo of explored states.

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The part of a search state besides the placed set: the register's value
// and, while an unknown write waits for its justification, the value it
// replaced (see KeySearch::replaced_).
uint64_t Label(ValueId value, ValueId replaced) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(value)) << 32) |
         static_cast<uint32_t>(replaced);
}

// The set of (linearized-set bitset, label) states already explored. Open addressing over a flat
// arena of bitset words, so a lookup allocates nothing and each state costs its bitset plus about
// 24 bytes. Not thread-safe.
class StateCache {
 public:
  enum class InsertResult : uint8_t { kInserted, kPresent, kFull };

  StateCache(size_t words, uint64_t max_states)
      : words_(words), max_states_(std::min<uint64_t>(max_states, kMaxSlotIndex)) {
    slots_.assign(kInitialSlots, kEmptySlot);
  }

  uint64_t size() const { return labels_.size(); }

  InsertResult Insert(const std::vector<uint64_t>& bits, uint64_t label, uint64_t hash) {
    size_t mask = slots_.size() - 1;
    size_t i = hash & mask;
    for (; slots_[i] != kEmptySlot; i = (i + 1) & mask) {
      if (Matches(slots_[i], bits, label, hash)) return InsertResult::kPresent;
    }
    if (size() >= max_states_) return InsertResult::kFull;
    const uint32_t state = static_cast<uint32_t>(size());
    hashes_.push_back(hash);
    labels_.push_back(label);
    arena_.insert(arena_.end(), bits.begin(), bits.end());
    slots_[i] = state;
    // Keeping the load under one half keeps probe runs short.
    if (2 * size() > slots_.size()) Grow();
    return InsertResult::kInserted;
  }

 private:
  static constexpr uint32_t kEmptySlot = UINT32_MAX;
  static constexpr uint64_t kMaxSlotIndex = UINT32_MAX - 1;
  static constexpr size_t kInitialSlots = 1024;  // a power of two

  bool Matches(uint32_t state, const std::vector<uint64_t>& bits, uint64_t label,
               uint64_t hash) const {
    if (hashes_[state] != hash || labels_[state] != label) return false;
    return std::equal(bits.begin(), bits.end(), arena_.begin() + state * words_);
  }

  void Grow() {
    slots_.assign(slots_.size() * 2, kEmptySlot);
    const size_t mask = slots_.size() - 1;
    for (uint32_t state = 0; state < size(); ++state) {
      size_t i = hashes_[state] & mask;
      while (slots_[i] != kEmptySlot) i = (i + 1) & mask;
      slots_[i] = state;
    }
  }

  const size_t words_;  // bitset words per state
  const uint64_t max_states_;
  std::vector<uint32_t> slots_;   // state index or kEmptySlot; size is a power of two
  std::vector<uint64_t> hashes_;  // per state
  std::vector<uint64_t> labels_;  // per state
  std::vector<uint64_t> arena_;   // words_ bitset words per state
};

// ---------------------------------------------------------------------------
// The search over one key.

// The deepest point the search reached before it had to back up: what a
// human needs to see why the history fails.
struct DeadEnd {
  bool recorded = false;
  std::vector<int32_t> prefix;      // linearized operations, in order
  ValueId value = kAbsent;          // the register after the prefix
  std::vector<int32_t> candidates;  // minimal operations that were tried next
  int32_t blocking = -1;            // the operation whose return was reached
};

// Not thread-safe; one per key.
class KeySearch {
 public:
  KeySearch(const std::vector<KeyOp>& ops, size_t value_count, const CheckOptions& options,
            Clock::time_point deadline)
      : ops_(ops),
        deadline_(deadline),
        cache_((ops.size() + 63) / 64, options.max_states_per_key),
        bits_((ops.size() + 63) / 64, 0),
        observed_stamp_(value_count, 0),
        refused_stamp_(value_count, 0) {
    zobrist_.reserve(ops_.size());
    for (size_t i = 0; i < ops_.size(); ++i) zobrist_.push_back(SplitMix64(i));
    for (const KeyOp& op : ops_) pending_ += op.unknown ? 0 : 1;
    BuildEventList();
  }

  Verdict Run();
  uint64_t states() const { return cache_.size(); }
  bool out_of_time() const { return out_of_time_; }
  const DeadEnd& dead_end() const { return dead_end_; }

 private:
  // Events: the call of operation i is 2*i, its return 2*i+1, and the list
  // head sentinel is 2*n. The list is circular and ordered by time.
  static int32_t CallEvent(int32_t op) { return 2 * op; }
  static bool IsCall(int32_t event) { return event % 2 == 0; }

  void BuildEventList();
  void Unlink(int32_t event);
  void Relink(int32_t event);
  void Lift(int32_t op);
  void Unlift(int32_t op);
  void Flip(int32_t op);
  bool Helps(const KeyOp& op, ValueId before, ValueId after);
  void StampFrontier();
  bool Justifies(const KeyOp& op, ValueId value) const;
  void Place(int32_t op, ValueId before);
  ValueId Unplace();
  void NoteDeadEnd(int32_t return_event, ValueId value);

  struct Frame {
    int32_t op;
    ValueId value_before;
    ValueId replaced_before;
    bool blind_seen_before;
  };

  // Clock reads are costly next to a search step, so the deadline is looked
  // at once per this many steps.
  static constexpr uint64_t kStepsPerClockCheck = 4096;

  const std::vector<KeyOp>& ops_;
  const Clock::time_point deadline_;
  StateCache cache_;
  std::vector<uint64_t> bits_;     // the linearized set
  uint64_t bits_hash_ = 0;         // XOR of zobrist_ over bits_
  std::vector<uint64_t> zobrist_;  // a random word per operation
  std::vector<int32_t> next_;
  std::vector<int32_t> prev_;
  int32_t head_ = 0;
  std::vector<Frame> stack_;
  size_t pending_ = 0;  // operations with a known outcome not yet placed
  // When the latest placed operation is an unknown write, the value it
  // replaced; otherwise kNoValue. While set, the next operation placed must
  // justify that write (see Justifies()).
  ValueId replaced_ = kNoValue;
  // Per value, the frontier_ stamp at which some minimal operation was seen
  // to observe it, and to refuse it. Stamps spare clearing per frontier.
  std::vector<uint64_t> observed_stamp_;
  std::vector<uint64_t> refused_stamp_;
  uint64_t frontier_ = 1;          // bumped whenever the event list changes
  uint64_t stamped_frontier_ = 0;  // the frontier the stamps describe
  // Whether the current scan has passed a blind write already; the others
  // are then skipped (see MarkBlindWrites()).
  bool blind_seen_ = false;
  DeadEnd dead_end_;
  bool out_of_time_ = false;
};

void KeySearch::BuildEventList() {
  const int32_t n = static_cast<int32_t>(ops_.size());
  struct Event {
    int64_t time;
    int32_t id;
  };
  std::vector<Event> events;
  events.reserve(2 * ops_.size());
  for (int32_t i = 0; i < n; ++i) {
    const KeyOp& op = ops_[static_cast<size_t>(i)];
    events.push_back({op.call, 2 * i});
    events.push_back({op.unknown ? kNeverReturned : op.ret, 2 * i + 1});
  }
  // At equal times calls sort before returns, so that the two operations
  // overlap: equal times are never taken as proof of order.
  std::sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
    if (a.time != b.time) return a.time < b.time;
    if (IsCall(a.id) != IsCall(b.id)) return IsCall(a.id);
    return a.id < b.id;
  });
  head_ = 2 * n;
  next_.assign(2 * ops_.size() + 1, 0);
  prev_.assign(2 * ops_.size() + 1, 0);
  int32_t last = head_;
  for (const Event& event : events) {
    next_[static_cast<size_t>(last)] = event.id;
    prev_[static_cast<size_t>(event.id)] = last;
    last = event.id;
  }
  next_[static_cast<size_t>(last)] = head_;
  prev_[static_cast<size_t>(head_)] = last;
}

void KeySearch::Unlink(int32_t event) {
  const auto e = static_cast<size_t>(event);
  next_[static_cast<size_t>(prev_[e])] = next_[e];
  prev_[static_cast<size_t>(next_[e])] = prev_[e];
}

// Undoes Unlink(). Correct only in reverse order of the unlinks, which the
// search's stack discipline guarantees.
void KeySearch::Relink(int32_t event) {
  const auto e = static_cast<size_t>(event);
  next_[static_cast<size_t>(prev_[e])] = event;
  prev_[static_cast<size_t>(next_[e])] = event;
}

void KeySearch::Lift(int32_t op) {
  Unlink(2 * op);
  Unlink(2 * op + 1);
}

void KeySearch::Unlift(int32_t op) {
  Relink(2 * op + 1);
  Relink(2 * op);
}

void KeySearch::Flip(int32_t op) {
  bits_[static_cast<size_t>(op) / 64] ^= uint64_t{1} << (op % 64);
  bits_hash_ ^= zobrist_[static_cast<size_t>(op)];
}

// Whether placing `op` here, moving the register from `before` to `after`,
// can matter. A known operation always must be placed. An unknown one that
// changes nothing is the same as one that never happened, which the end of
// the search allows anyway. An unknown write must be followed at once by an
// operation that justifies it (see Justifies()), which has to be minimal
// already: lifting the write does not change which operations are minimal,
// as its return is never. Checking that here saves one search state per
// unknown write at every step. The rule depends only on the placed set and
// the value, so the cache of explored states stays sound.
bool KeySearch::Helps(const KeyOp& op, ValueId before, ValueId after) {
  if (!op.unknown) return true;
  if (after == before) return false;
  if (stamped_frontier_ != frontier_) StampFrontier();
  return observed_stamp_[static_cast<size_t>(after)] == frontier_ ||
         refused_stamp_[static_cast<size_t>(before)] == frontier_;
}

// Records which values the minimal operations (those called before the
// first pending return) observe and refuse. Costs one pass over them, as
// does the scan that calls it.
void KeySearch::StampFrontier() {
  for (int32_t e = next_[static_cast<size_t>(head_)]; IsCall(e) && e != head_;
       e = next_[static_cast<size_t>(e)]) {
    const KeyOp& op = ops_[static_cast<size_t>(e / 2)];
    if (Observes(op) != kNoValue) observed_stamp_[static_cast<size_t>(Observes(op))] = frontier_;
    if (Refuses(op) != kNoValue) refused_stamp_[static_cast<size_t>(Refuses(op))] = frontier_;
  }
  stamped_frontier_ = frontier_;
}

// Whether `op` may come next given the pending unknown write, if any, that
// set the register to `value`. Such a write need only be placed right
// before an operation that observes the value it wrote or refuses the value
// it replaced: in any linearization, moving an unknown write later up to the
// first such operation keeps it valid (the operations it passes neither
// change the value nor observe it, and an unknown write's return is never),
// and if no such operation comes before the next write it can be deleted
// instead. So the search loses nothing by pairing each unknown write with
// its justification, and no longer tries every unknown write at every point.
bool KeySearch::Justifies(const KeyOp& op, ValueId value) const {
  if (replaced_ == kNoValue) return true;
  return Observes(op) == value || Refuses(op) == replaced_;
}

// REQUIRES: op's bit is already set (Run() sets it to probe the cache).
void KeySearch::Place(int32_t op, ValueId before) {
  const KeyOp& placed = ops_[static_cast<size_t>(op)];
  stack_.push_back({op, before, replaced_, blind_seen_});
  replaced_ = placed.unknown ? before : kNoValue;
  blind_seen_ = false;
  Lift(op);
  ++frontier_;
  if (!placed.unknown) --pending_;
}

// Undoes the latest Place() and returns the value before it.
ValueId KeySearch::Unplace() {
  const Frame frame = stack_.back();
  stack_.pop_back();
  const KeyOp& placed = ops_[static_cast<size_t>(frame.op)];
  replaced_ = frame.replaced_before;
  blind_seen_ = frame.blind_seen_before;
  Flip(frame.op);
  Unlift(frame.op);
  ++frontier_;
  if (!placed.unknown) ++pending_;
  return frame.value_before;
}

Verdict KeySearch::Run() {
  ValueId value = kAbsent;
  int32_t event = next_[static_cast<size_t>(head_)];
  uint64_t steps = 0;
  // Every known operation placed means success: the unknown ones left over
  // go last, where, returning never, they are allowed and unobserved.
  while (pending_ > 0) {
    if (++steps % kStepsPerClockCheck == 0 && Clock::now() > deadline_) {
      out_of_time_ = true;
      return Verdict::kUnknown;
    }
    // A known operation's return is always ahead while one is pending.
    Require(event != head_, "search ran off the event list");
    if (!IsCall(event)) {
      // This operation must already have taken effect: back up.
      NoteDeadEnd(event, value);
      if (stack_.empty()) return Verdict::kViolation;
      const int32_t undone = stack_.back().op;
      value = Unplace();
      event = next_[static_cast<size_t>(CallEvent(undone))];
      continue;
    }
    const int32_t op = event / 2;
    const KeyOp& candidate = ops_[static_cast<size_t>(op)];
    if (candidate.blind) {
      if (blind_seen_) {
        event = next_[static_cast<size_t>(event)];
        continue;
      }
      blind_seen_ = true;
    }
    const std::optional<ValueId> after = Step(candidate, value);
    if (after && Justifies(candidate, value) && Helps(candidate, value, *after)) {
      const uint64_t label = Label(*after, candidate.unknown ? value : kNoValue);
      Flip(op);
      switch (cache_.Insert(bits_, label, bits_hash_ ^ SplitMix64(label))) {
        case StateCache::InsertResult::kInserted:
          Place(op, value);
          value = *after;
          event = next_[static_cast<size_t>(head_)];
          continue;
        case StateCache::InsertResult::kPresent:
          break;
        case StateCache::InsertResult::kFull:
          return Verdict::kUnknown;
      }
      Flip(op);
    }
    event = next_[static_cast<size_t>(event)];
  }
  return Verdict::kLinearizable;
}

// Keeps the deepest dead end only: copying the stack there is bounded by
// the number of operations per new depth, and a search without dead ends
// (the common, linearizable case) copies nothing.
//
// A dead end right after an unknown write is skipped: its candidates were
// limited to the write's justifications, which would mislead a reader. The
// search always ends at a dead end without one.
void KeySearch::NoteDeadEnd(int32_t return_event, ValueId value) {
  if (replaced_ != kNoValue) return;
  if (dead_end_.recorded && stack_.size() <= dead_end_.prefix.size()) return;
  dead_end_.recorded = true;
  dead_end_.prefix.clear();
  for (const Frame& frame : stack_) dead_end_.prefix.push_back(frame.op);
  dead_end_.value = value;
  dead_end_.candidates.clear();
  for (int32_t e = next_[static_cast<size_t>(head_)]; e != return_event;
       e = next_[static_cast<size_t>(e)]) {
    if (IsCall(e)) dead_end_.candidates.push_back(e / 2);
  }
  dead_end_.blocking = return_event / 2;
}

// ---------------------------------------------------------------------------
// Explanations and the per-key driver.

std::string Numbered(const std::vector<Operation>& history, size_t index) {
  return "#" + std::to_string(index) + " " + Describe(history[index]);
}

std::string ExplainDeadEnd(const std::vector<Operation>& history, const std::vector<KeyOp>& ops,
                           const ValueTable& values, const DeadEnd& dead_end,
                           size_t max_explained_ops) {
  size_t known = 0;
  size_t known_in_prefix = 0;
  for (const KeyOp& op : ops) known += op.unknown ? 0 : 1;
  for (int32_t op : dead_end.prefix)
    known_in_prefix += ops[static_cast<size_t>(op)].unknown ? 0 : 1;
  std::string out = "  The longest linearizable prefix places " + std::to_string(known_in_prefix) +
                    " of the " + std::to_string(known) +
                    " operations that must take effect; after it the value is " +
                    values.Name(dead_end.value) + ".\n";
  const size_t shown = std::min(dead_end.prefix.size(), max_explained_ops);
  if (shown < dead_end.prefix.size()) {
    out += "    ... " + std::to_string(dead_end.prefix.size() - shown) + " earlier operations\n";
  }
  for (size_t i = dead_end.prefix.size() - shown; i < dead_end.prefix.size(); ++i) {
    out += "    " + Numbered(history, ops[static_cast<size_t>(dead_end.prefix[i])].index) + "\n";
  }
  out += "  No operation that may come next fits:\n";
  for (int32_t id : dead_end.candidates) {
    const KeyOp& op = ops[static_cast<size_t>(id)];
    const bool fits = Step(op, dead_end.value).has_value();
    out +=
        "    " + Numbered(history, op.index) + ": " + WhyNotHere(op, dead_end.value, fits, values);
    if (id == dead_end.blocking) {
      out += "; it must take effect before it returns at " + std::to_string(op.ret);
    }
    out += "\n";
  }
  return out;
}

// Whether `op` may set the register (a delete sets it to kAbsent).
bool MayWrite(const KeyOp& op) {
  if (op.kind == OpKind::kCas) return op.unknown || op.swapped;
  return op.kind != OpKind::kGet;
}

// Removes unknown writes that the search need not consider, because a
// linearization that uses one stays valid without it. Such writes are the
// search's worst case: they stay minimal for ever, so without this every
// backtrack tries every subset of them.
//
// An unknown write W of value v is dropped when (1) no operation observes v:
// no completed get reads it, no swapped or unknown CAS expects it; and (2) no
// completed CAS that did not swap, expecting a value the register can hold,
// returns at or after W's call. Proof sketch: take a linearization with W and
// delete W. Only the operations between W and the next put or delete see a
// different value (the one before W instead of v). None of them is a get or a
// swapping CAS, which would have observed v; an unknown CAS among them can be
// deleted too; and a CAS that did not swap needs the value to differ from its
// expected one, which (2) guarantees by time or by the value being
// impossible.
void DropUnobservedUnknownWrites(std::vector<KeyOp>* ops, size_t value_count) {
  std::vector<bool> observed(value_count, false);
  std::vector<bool> writable(value_count, false);
  writable[kAbsent] = true;  // the initial value
  for (const KeyOp& op : *ops) {
    if (MayWrite(op)) writable[static_cast<size_t>(op.written)] = true;
    if (Observes(op) != kNoValue) observed[static_cast<size_t>(Observes(op))] = true;
  }
  std::optional<int64_t> last_refusal;  // the latest return of a CAS as in (2)
  for (const KeyOp& op : *ops) {
    const ValueId refused = Refuses(op);
    if (refused == kNoValue || !writable[static_cast<size_t>(refused)]) continue;
    last_refusal = std::max(last_refusal.value_or(op.ret), op.ret);
  }
  std::erase_if(*ops, [&](const KeyOp& op) {
    return op.unknown && MayWrite(op) && !observed[static_cast<size_t>(op.written)] &&
           (!last_refusal || *last_refusal < op.call);
  });
}

// Marks the unknown puts whose value no operation observes or refuses. Two
// such writes that are both minimal are interchangeable: they stay minimal
// (their return is never), and swapping their places in a linearization,
// renaming their values, changes no operation's result. So at any point the
// search tries only the first of them that it meets. Without this, a refusing
// CAS lets every such write justify itself and the search tries every subset.
void MarkBlindWrites(std::vector<KeyOp>* ops, size_t value_count) {
  std::vector<bool> watched(value_count, false);
  for (const KeyOp& op : *ops) {
    if (Observes(op) != kNoValue) watched[static_cast<size_t>(Observes(op))] = true;
    if (Refuses(op) != kNoValue) watched[static_cast<size_t>(Refuses(op))] = true;
  }
  for (KeyOp& op : *ops) {
    op.blind = op.unknown && op.kind == OpKind::kPut && !watched[static_cast<size_t>(op.written)];
  }
}

// A quick test that needs no search: an operation that observed a value no
// operation could have written before it returned. Returns the explanation,
// or nothing if every observation has a possible writer (which proves
// nothing; the search decides).
std::optional<std::string> FindImpossibleObservation(const std::vector<Operation>& history,
                                                     const std::vector<KeyOp>& ops,
                                                     const ValueTable& values) {
  // The earliest call among the operations that may write each value.
  std::vector<std::optional<int64_t>> first_writer_call(values.size());
  for (const KeyOp& op : ops) {
    if (!MayWrite(op)) continue;
    auto& first = first_writer_call[static_cast<size_t>(op.written)];
    if (!first || op.call < *first) first = op.call;
  }
  for (const KeyOp& op : ops) {
    if (op.unknown) continue;
    ValueId observed = kAbsent;
    if (op.kind == OpKind::kGet) observed = op.read;
    if (op.kind == OpKind::kCas && op.swapped) observed = op.expected;
    if (observed == kAbsent) continue;
    const auto& first = first_writer_call[static_cast<size_t>(observed)];
    if (first && *first <= op.ret) continue;
    return "  " + Numbered(history, op.index) + " observed " + values.Name(observed) + ", which " +
           (first ? "only operations invoked after it returned write" : "no operation writes") +
           ".\n";
  }
  return std::nullopt;
}

KeyResult CheckKey(const std::vector<Operation>& history, const std::vector<size_t>& indices,
                   const CheckOptions& options, Clock::time_point deadline) {
  KeyResult result;
  result.key = history[indices.front()].command.key;
  ValueTable values;
  std::vector<KeyOp> ops;
  ops.reserve(indices.size());
  for (size_t index : indices) {
    const Operation& in = history[index];
    KeyOp op;
    op.index = index;
    op.kind = in.command.kind;
    op.unknown = in.outcome == Outcome::kUnknown;
    // Only the fields that the kind and outcome use are read, so that stray
    // values elsewhere cannot pose as writes or reads.
    const bool is_cas = op.kind == OpKind::kCas;
    const bool has_response = in.outcome == Outcome::kOk;
    if (is_cas) op.expected = values.Intern(in.command.expected);
    if (is_cas || op.kind == OpKind::kPut) op.written = values.Intern(in.command.value);
    if (op.kind == OpKind::kGet) op.read = values.Intern(in.response.value);
    op.swapped = is_cas && has_response && in.response.swapped;
    op.call = in.call_time;
    op.ret = op.unknown ? kNeverReturned : in.return_time;
    ops.push_back(op);
  }
  result.operations = ops.size();
  const std::string header = "key " + Quote(result.key) + ": ";
  if (std::optional<std::string> why = FindImpossibleObservation(history, ops, values)) {
    result.verdict = Verdict::kViolation;
    result.explanation = header + "not linearizable.\n" + *why;
    return result;
  }
  DropUnobservedUnknownWrites(&ops, values.size());
  MarkBlindWrites(&ops, values.size());
  KeySearch search(ops, values.size(), options, deadline);
  result.verdict = search.Run();
  result.states_explored = search.states();
  const std::string counts = std::to_string(ops.size()) + " operations, " +
                             std::to_string(search.states()) + " states explored";
  if (result.verdict == Verdict::kViolation) {
    result.explanation =
        header + "not linearizable (" + counts + ").\n" +
        ExplainDeadEnd(history, ops, values, search.dead_end(), options.max_explained_ops);
  } else if (result.verdict == Verdict::kUnknown) {
    result.explanation = header + "undecided (" + counts +
                         "): " + (search.out_of_time() ? "max_duration" : "max_states_per_key") +
                         " was reached.\n";
  }
  return result;
}

std::optional<std::string> FindMalformed(const std::vector<Operation>& history) {
  for (size_t i = 0; i < history.size(); ++i) {
    const Operation& op = history[i];
    if (op.command.kind > OpKind::kCas) return "#" + std::to_string(i) + " has an invalid kind";
    if (op.outcome > Outcome::kUnknown) {
      return "#" + std::to_string(i) + " has an invalid outcome";
    }
    if (op.outcome != Outcome::kUnknown && op.return_time < op.call_time) {
      return Numbered(history, i) + " returns before it is called";
    }
  }
  return std::nullopt;
}

// Explanations beyond this many keys are left out of the summary; the
// per-key results still hold them.
constexpr size_t kMaxExplainedKeys = 5;

}  // namespace

// ---------------------------------------------------------------------------
// Public functions.

Command Command::Get(std::string key) { return {OpKind::kGet, std::move(key), std::nullopt, {}}; }

Command Command::Put(std::string key, std::string value) {
  return {OpKind::kPut, std::move(key), std::nullopt, std::move(value)};
}

Command Command::Delete(std::string key) {
  return {OpKind::kDelete, std::move(key), std::nullopt, {}};
}

Command Command::Cas(std::string key, std::optional<std::string> expected, std::string value) {
  return {OpKind::kCas, std::move(key), std::move(expected), std::move(value)};
}

Response Response::Read(std::optional<std::string> value) { return {std::move(value), false}; }

Response Response::Swapped(bool swapped) { return {std::nullopt, swapped}; }

std::string_view OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kOk:
      return "ok";
    case Outcome::kFailed:
      return "failed";
    case Outcome::kUnknown:
      return "unknown";
  }
  return "invalid";
}

std::string_view VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kLinearizable:
      return "linearizable";
    case Verdict::kViolation:
      return "violation";
    case Verdict::kUnknown:
      return "unknown";
    case Verdict::kInvalidHistory:
      return "invalid_history";
  }
  return "invalid";
}

std::string Describe(const Operation& op) {
  std::string out = "client " + std::to_string(op.client_id) + " " + DescribeCommand(op.command);
  if (op.outcome == Outcome::kOk) out += DescribeResponse(op.command.kind, op.response);
  out += " ";
  out += OutcomeName(op.outcome);
  out += " [" + std::to_string(op.call_time) + ", ";
  out += op.outcome == Outcome::kUnknown ? "never)" : std::to_string(op.return_time) + "]";
  return out;
}

CheckResult Check(const std::vector<Operation>& history, const CheckOptions& options) {
  CheckResult result;
  if (std::optional<std::string> why = FindMalformed(history)) {
    result.verdict = Verdict::kInvalidHistory;
    result.explanation = "invalid history: " + *why;
    return result;
  }
  const Clock::time_point deadline = options.max_duration.count() > 0
                                         ? Clock::now() + options.max_duration
                                         : Clock::time_point::max();
  // Failed operations never happened and unknown reads observed nothing, so
  // neither constrains the order. A std::map keeps the key order stable.
  std::map<std::string_view, std::vector<size_t>> by_key;
  for (size_t i = 0; i < history.size(); ++i) {
    const Operation& op = history[i];
    if (op.outcome == Outcome::kFailed) continue;
    if (op.outcome == Outcome::kUnknown && op.command.kind == OpKind::kGet) continue;
    by_key[op.command.key].push_back(i);
  }
  size_t explained = 0;
  size_t unexplained = 0;
  for (const auto& [key, indices] : by_key) {
    KeyResult key_result = CheckKey(history, indices, options, deadline);
    result.states_explored += key_result.states_explored;
    if (key_result.verdict == Verdict::kViolation) result.verdict = Verdict::kViolation;
    if (key_result.verdict == Verdict::kUnknown && result.verdict == Verdict::kLinearizable) {
      result.verdict = Verdict::kUnknown;
    }
    if (!key_result.explanation.empty()) {
      if (explained < kMaxExplainedKeys) {
        result.explanation += key_result.explanation;
        ++explained;
      } else {
        ++unexplained;
      }
    }
    result.keys.push_back(std::move(key_result));
  }
  if (unexplained > 0) {
    result.explanation += "... and " + std::to_string(unexplained) + " more keys; see keys.\n";
  }
  return result;
}

History::History(std::function<int64_t()> clock) : clock_(std::move(clock)) {}

int64_t History::Now() { return clock_ ? clock_() : next_sequence_++; }

uint64_t History::Invoke(uint64_t client_id, Command command) {
  std::lock_guard<std::mutex> lock(mu_);
  Operation op;
  op.client_id = client_id;
  op.command = std::move(command);
  op.call_time = Now();
  op.return_time = kNeverReturned;
  op.outcome = Outcome::kUnknown;
  ops_.push_back(std::move(op));
  completed_.push_back(false);
  return ops_.size() - 1;
}

void History::Complete(uint64_t id, Outcome outcome, Response response) {
  std::lock_guard<std::mutex> lock(mu_);
  Require(id < ops_.size(), "History::Complete: unknown operation id");
  Require(!completed_[id], "History::Complete: operation completed twice");
  Operation& op = ops_[id];
  op.return_time = Now();
  op.outcome = outcome;
  op.response = std::move(response);
  completed_[id] = true;
}

std::vector<Operation> History::Operations() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ops_;
}

size_t History::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ops_.size();
}

}  // namespace flotilla::lincheck
