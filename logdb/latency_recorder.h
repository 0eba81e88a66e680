// LatencyRecorder: the recording side of flotilla::LatencyHistogram
// (include/flotilla/metrics.h), used by the LogDB and the engine. Internal:
// not installed; embedders read histograms through NodeHost::GetMetrics.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "flotilla/metrics.h"

namespace flotilla {

// The recording side of a LatencyHistogram: lock-free, one relaxed atomic
// add per field per observation. Thread-safe.
class LatencyRecorder {
 public:
  void Observe(uint64_t us) {
    size_t i = 0;
    while (i < LatencyHistogram::kBoundsUs.size() && us > LatencyHistogram::kBoundsUs[i]) ++i;
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    sum_us_.fetch_add(us, std::memory_order_relaxed);
  }
  LatencyHistogram Read() const {
    LatencyHistogram h;
    for (size_t i = 0; i < counts_.size(); ++i) h.counts[i] = counts_[i].load();
    h.count = count_.load();
    h.sum_us = sum_us_.load();
    return h;
  }

 private:
  std::array<std::atomic<uint64_t>, LatencyHistogram::kBoundsUs.size() + 1> counts_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_us_{0};
};

}  // namespace flotilla
