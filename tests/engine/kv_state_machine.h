// A small in-memory key-value state machine for engine tests: commands are
// "key=value"; a lookup of "key" returns the value; Hash() fingerprints the
// state and the order of applied entries.
#pragma once

#include <charconv>
#include <map>
#include <string>

#include "flotilla/state_machine.h"

namespace flotilla::testing {

class KvStateMachine final : public StateMachine {
 public:
  Status Update(std::span<SMEntry> entries) override {
    for (SMEntry& e : entries) {
      const auto eq = e.cmd.find('=');
      if (eq == std::string_view::npos) {
        e.result = 0;
        continue;
      }
      kv_[std::string(e.cmd.substr(0, eq))] = std::string(e.cmd.substr(eq + 1));
      // FNV-1a over index and command: equal only for equal sequences.
      for (char c : e.cmd) hash_ = (hash_ ^ static_cast<uint8_t>(c)) * 1099511628211ULL;
      hash_ = (hash_ ^ e.index) * 1099511628211ULL;
      ++count_;
      e.result = e.index;
    }
    return Status::Ok();
  }
  Result<std::string> Lookup(std::string_view query) override {
    if (query == "__hash") return std::to_string(hash_) + ":" + std::to_string(count_);
    auto it = kv_.find(std::string(query));
    if (it == kv_.end()) return std::string();
    return it->second;
  }
  Status SaveSnapshot(SnapshotWriter* w) override {
    // The fingerprint travels too, so a replica restored from a snapshot
    // compares equal to one that applied every entry.
    std::string out = "#" + std::to_string(hash_) + " " + std::to_string(count_) + "\n";
    for (const auto& [k, v] : kv_) out += k + "=" + v + "\n";
    return w->Write(out);
  }
  Status RecoverFromSnapshot(SnapshotReader* r) override {
    kv_.clear();
    std::string all;
    std::string chunk;
    do {
      FLOTILLA_RETURN_IF_ERROR(r->Read(1 << 20, &chunk));
      all += chunk;
    } while (!chunk.empty());
    size_t pos = 0;
    while (pos < all.size()) {
      const size_t nl = all.find('\n', pos);
      const std::string line = all.substr(pos, nl - pos);
      if (!line.empty() && line[0] == '#') {
        // Parsed without exceptions: the fuzzer feeds snapshots of any
        // bytes, and a bad one must fail the restore, not the process.
        const size_t sp = line.find(' ');
        if (sp == std::string::npos || !ParseNumber(line.substr(1, sp - 1), &hash_) ||
            !ParseNumber(line.substr(sp + 1), &count_)) {
          return Status::Corruption("bad snapshot fingerprint line");
        }
        pos = nl == std::string::npos ? all.size() : nl + 1;
        continue;
      }
      const size_t eq = line.find('=');
      if (eq != std::string::npos) kv_[line.substr(0, eq)] = line.substr(eq + 1);
      pos = nl == std::string::npos ? all.size() : nl + 1;
    }
    return Status::Ok();
  }
  uint64_t hash() const { return hash_; }
  uint64_t count() const { return count_; }

 private:
  static bool ParseNumber(const std::string& s, uint64_t* out) {
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
    return ec == std::errc() && end == s.data() + s.size();
  }

  std::map<std::string, std::string> kv_;
  uint64_t hash_ = 1469598103934665603ULL;
  uint64_t count_ = 0;
};

}  // namespace flotilla::testing
