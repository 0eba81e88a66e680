#include "engine/managed_sm.h"

namespace flotilla::engine {
namespace {

// In-memory kind: every call under one lock, so the user's code needs none.
class InMemory final : public ManagedStateMachine {
 public:
  explicit InMemory(std::unique_ptr<StateMachine> sm) : sm_(std::move(sm)) {}
  Status Update(std::span<SMEntry> entries) override {
    std::lock_guard<std::mutex> l(mu_);
    return sm_->Update(entries);
  }
  Result<std::string> Lookup(std::string_view q) override {
    std::lock_guard<std::mutex> l(mu_);
    return sm_->Lookup(q);
  }
  Status SaveSnapshot(SnapshotWriter* w) override {
    std::lock_guard<std::mutex> l(mu_);
    return sm_->SaveSnapshot(w);
  }
  Status Recover(SnapshotReader* r) override {
    std::lock_guard<std::mutex> l(mu_);
    return sm_->RecoverFromSnapshot(r);
  }

 private:
  std::mutex mu_;
  std::unique_ptr<StateMachine> sm_;
};

// Concurrent and on-disk kinds: updates are serialised among themselves
// only; a snapshot holds updates off just while it is prepared.
template <typename SM>
class Concurrent final : public ManagedStateMachine {
 public:
  explicit Concurrent(std::unique_ptr<SM> sm) : sm_(std::move(sm)) {}
  Result<uint64_t> Open() override {
    if constexpr (std::is_base_of_v<OnDiskStateMachine, SM>) {
      return sm_->Open();
    } else {
      return uint64_t{0};
    }
  }
  Status Update(std::span<SMEntry> entries) override {
    std::lock_guard<std::mutex> l(update_mu_);
    return sm_->Update(entries);
  }
  Result<std::string> Lookup(std::string_view q) override { return sm_->Lookup(q); }
  Status SaveSnapshot(SnapshotWriter* w) override {
    Result<std::shared_ptr<void>> prepared = Prepare();
    if (!prepared.ok()) return prepared.status();
    return sm_->SaveSnapshot(std::move(prepared).value(), w);
  }
  Result<std::shared_ptr<void>> Prepare() override {
    std::lock_guard<std::mutex> l(update_mu_);
    return sm_->PrepareSnapshot();
  }
  Status SavePrepared(std::shared_ptr<void> prepared, SnapshotWriter* w) override {
    return sm_->SaveSnapshot(std::move(prepared), w);
  }
  bool on_disk() const override { return std::is_base_of_v<OnDiskStateMachine, SM>; }
  bool concurrent() const override { return true; }
  Status Recover(SnapshotReader* r) override {
    std::lock_guard<std::mutex> l(update_mu_);
    return sm_->RecoverFromSnapshot(r);
  }
  Status Sync() override {
    if constexpr (std::is_base_of_v<OnDiskStateMachine, SM>) {
      std::lock_guard<std::mutex> l(update_mu_);
      return sm_->Sync();
    } else {
      return Status::Ok();
    }
  }

 private:
  std::mutex update_mu_;
  std::unique_ptr<SM> sm_;
};

}  // namespace

std::unique_ptr<ManagedStateMachine> Manage(std::unique_ptr<StateMachine> sm) {
  return std::make_unique<InMemory>(std::move(sm));
}
std::unique_ptr<ManagedStateMachine> Manage(std::unique_ptr<ConcurrentStateMachine> sm) {
  return std::make_unique<Concurrent<ConcurrentStateMachine>>(std::move(sm));
}
std::unique_ptr<ManagedStateMachine> Manage(std::unique_ptr<OnDiskStateMachine> sm) {
  return std::make_unique<Concurrent<OnDiskStateMachine>>(std::move(sm));
}

}  // namespace flotilla::engine
