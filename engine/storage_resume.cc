// Resuming the LogDB after a write failed for want of space (issue 15): the
// step worker whose save failed holds its pass and saves the same updates
// again once the LogDB takes writes, so a full disk costs a pause, not the
// replicas, and nothing is acknowledged before it is durable.

#include <algorithm>
#include <chrono>
#include <thread>

#include "engine/log/log.h"
#include "engine/node_host_impl.h"

namespace flotilla::engine {

Status NodeHostImpl::ResumeStorage() {
  std::lock_guard<std::mutex> resume(resume_mu_);
  if (!storage_failed_.load()) return Status::Ok();
  FLOTILLA_RETURN_IF_ERROR(logdb_->Resume());
  std::string was;
  {
    std::lock_guard<std::mutex> l(storage_mu_);
    was = storage_status_.message();
    storage_status_ = Status::Ok();
    storage_failed_.store(false);
  }
  Counters::Add(counters_.storage_resumes, 1);
  Log().warn("storage: the LogDB takes writes again; it had stopped: {}", was);
  return Status::Ok();
}

Status NodeHostImpl::SaveWhenStorageResumes(const std::function<Status()>& save) {
  // Each attempt flushes RocksDB's memtables, so attempts are spaced out: as
  // often as free space is measured, and at least every second.
  const auto interval =
      std::chrono::milliseconds(std::clamp<uint64_t>(config_.storage_check_interval_ms, 10, 1000));
  constexpr auto kSlice = std::chrono::milliseconds(10);
  while (true) {
    for (auto waited = std::chrono::milliseconds(0); waited < interval; waited += kSlice) {
      if (stop_.load()) return Status::Terminated("the NodeHost is closing");
      std::this_thread::sleep_for(kSlice);
    }
    Status s = ResumeStorage();
    // Still full (NoSpace), or RocksDB is busy recovering by itself.
    if (s.code() == StatusCode::kNoSpace || s.code() == StatusCode::kBusy) continue;
    if (s.ok()) s = save();
    if (s.ok()) return s;
    OnStorageFailure(s);
    if (s.code() != StatusCode::kNoSpace) return s;
  }
}

}  // namespace flotilla::engine
