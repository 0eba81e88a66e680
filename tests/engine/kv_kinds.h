// The concurrent and on-disk state-machine kinds as small key-value stores
// ("key=value" commands, a lookup of "key" returns the value), for the
// engine's tests of those kinds.
#pragma once

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <sstream>
#include <string>

#include "flotilla/state_machine.h"

namespace flotilla::testing {

// A concurrent KV: Lookup takes a shared lock, Update an exclusive one; a
// snapshot copies the map while updates are held off, then writes the copy.
class ConcurrentKv : public OnDiskStateMachine {
 public:
  // A snapshot's view: the applied index and the map, copied together.
  struct Prepared {
    uint64_t applied = 0;
    std::map<std::string, std::string> kv;
  };
  Status Update(std::span<SMEntry> entries) override {
    std::unique_lock<std::shared_mutex> l(mu_);
    for (SMEntry& e : entries) {
      if (e.noop) {
        if (!ignore_noops) applied_ = e.index;
        continue;
      }
      const auto eq = e.cmd.find('=');
      kv_[std::string(e.cmd.substr(0, eq))] = std::string(e.cmd.substr(eq + 1));
      applied_ = e.index;
      e.result = e.index;
      ++updates;
    }
    return Status::Ok();
  }
  Result<std::string> Lookup(std::string_view q) override {
    std::shared_lock<std::shared_mutex> l(mu_);
    auto it = kv_.find(std::string(q));
    return it == kv_.end() ? std::string() : it->second;
  }
  Result<std::shared_ptr<void>> PrepareSnapshot() override {
    std::shared_lock<std::shared_mutex> l(mu_);
    return std::shared_ptr<void>(std::make_shared<Prepared>(Prepared{applied_, kv_}));
  }
  Status SaveSnapshot(std::shared_ptr<void> prepared, SnapshotWriter* w) override {
    // One write per key, as a state machine streaming from its store would:
    // a large snapshot reaches the writer's bound many times.
    auto* m = static_cast<Prepared*>(prepared.get());
    FLOTILLA_RETURN_IF_ERROR(w->Write(std::to_string(m->applied) + "\n"));
    for (const auto& [k, v] : m->kv) FLOTILLA_RETURN_IF_ERROR(w->Write(k + "=" + v + "\n"));
    return Status::Ok();
  }
  Status RecoverFromSnapshot(SnapshotReader* r) override {
    std::string all, chunk;
    do {
      FLOTILLA_RETURN_IF_ERROR(r->Read(1 << 20, &chunk));
      all += chunk;
    } while (!chunk.empty());
    std::unique_lock<std::shared_mutex> l(mu_);
    kv_.clear();
    std::istringstream in(all);
    std::string line;
    if (std::getline(in, line)) applied_ = std::stoull(line);
    while (std::getline(in, line)) {
      const auto eq = line.find('=');
      if (eq != std::string::npos) kv_[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return Status::Ok();
  }
  // Concurrent kind: nothing durable.
  Result<uint64_t> Open() override { return uint64_t{0}; }
  Status Sync() override { return Status::Ok(); }

  std::atomic<int> updates{0};
  uint64_t applied() {
    std::shared_lock<std::shared_mutex> l(mu_);
    return applied_;
  }
  // Behaves like a state machine written before `noop` entries existed: its
  // index stays at its last command (issue 21's gap after a restart).
  bool ignore_noops = false;

 protected:
  std::shared_mutex mu_;
  std::map<std::string, std::string> kv_;
  uint64_t applied_ = 0;
};

// The on-disk kind: Sync writes the whole map and its applied index to a
// file (atomically by rename); Open loads it.
class OnDiskKv final : public ConcurrentKv {
 public:
  explicit OnDiskKv(std::string path) : path_(std::move(path)) {}
  Result<uint64_t> Open() override {
    std::ifstream in(path_);
    if (!in) return uint64_t{0};
    uint64_t applied = 0;
    in >> applied;
    std::string line;
    std::getline(in, line);
    std::unique_lock<std::shared_mutex> l(mu_);
    while (std::getline(in, line)) {
      const auto eq = line.find('=');
      if (eq != std::string::npos) kv_[line.substr(0, eq)] = line.substr(eq + 1);
    }
    applied_ = applied;
    return applied;
  }
  Status Sync() override {
    std::shared_lock<std::shared_mutex> l(mu_);
    {
      std::ofstream out(path_ + ".tmp", std::ios::trunc);
      out << applied_ << "\n";
      for (const auto& [k, v] : kv_) out << k << "=" << v << "\n";
    }
    std::filesystem::rename(path_ + ".tmp", path_);
    return Status::Ok();
  }

 private:
  std::string path_;
};

}  // namespace flotilla::testing
