// Sessions: the apply-side registry that makes session proposals
// exactly-once. It is part of the replicated state: saved in every snapshot
// beside the state machine's data, and rebuilt identically on every replica
// from the log.
//
// Not thread-safe: used by the apply worker of the replica.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>

#include "flotilla/status.h"

namespace flotilla::engine {

class Sessions {
 public:
  struct Result {
    uint64_t value = 0;
    std::string data;
    // Applied, but its result is unknown (an on-disk state machine applied
    // it before a restart that lost the registry's record of it).
    bool lost = false;
  };
  enum class Check : uint8_t {
    kApply,      // a new proposal: apply it, then Record the result
    kDuplicate,  // applied before: answer with *cached
    kNoSession,  // unknown or closed session: do not apply
  };

  // Bounds the registry: beyond it, the least recently registered session is
  // evicted (its client then gets kNoSession and must register again).
  static constexpr size_t kMaxSessions = 4096;
  static constexpr size_t kMaxResultsPerSession = 128;

  void Register(uint64_t client_id);
  void Unregister(uint64_t client_id);
  Check Begin(uint64_t client_id, uint64_t series_id, uint64_t responded_to, const Result** cached);
  void Record(uint64_t client_id, uint64_t series_id, Result r);

  std::string Serialize() const;
  [[nodiscard]] Status Deserialize(const std::string& bytes);
  size_t size() const { return sessions_.size(); }

 private:
  struct Entry {
    uint64_t registered_at = 0;  // registration order, for eviction
    uint64_t responded_to = 0;
    std::map<uint64_t, Result> results;  // by series id
  };
  std::map<uint64_t, Entry> sessions_;  // ordered: identical bytes on every replica
  uint64_t order_ = 0;
};

}  // namespace flotilla::engine
