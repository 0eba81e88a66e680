#include "engine/campaign_slots.h"

#include <algorithm>

namespace flotilla::engine {

bool CampaignSlots::Acquire(const void* owner, uint64_t now, uint64_t hold_ticks) {
  std::lock_guard<std::mutex> l(mu_);
  std::erase_if(held_, [&](const Held& h) { return h.until <= now; });
  // Its election timer fired again while it held a slot: that campaign is
  // over; the next one queues behind the replicas already waiting.
  EraseHeldLocked(owner);
  auto [it, fresh] = ticket_of_.try_emplace(owner, next_ticket_);
  if (fresh) ++next_ticket_;
  waiting_[it->second] = Waiter{owner, now + hold_ticks};
  // The first `free` waiters that still ask may go.
  const size_t free = cap_ > held_.size() ? cap_ - held_.size() : 0;
  size_t rank = 0;
  for (auto w = waiting_.begin(); w != waiting_.end() && rank < free;) {
    if (w->second.until <= now) {
      ticket_of_.erase(w->second.owner);
      w = waiting_.erase(w);
      continue;
    }
    if (w->second.owner == owner) {
      ticket_of_.erase(owner);
      waiting_.erase(w);
      held_.push_back(Held{owner, now + hold_ticks});
      return true;
    }
    ++rank;
    ++w;
  }
  return false;
}

void CampaignSlots::Release(const void* owner) {
  std::lock_guard<std::mutex> l(mu_);
  EraseHeldLocked(owner);
  EraseWaiterLocked(owner);
}

uint32_t CampaignSlots::held() const {
  std::lock_guard<std::mutex> l(mu_);
  return static_cast<uint32_t>(held_.size());
}

size_t CampaignSlots::waiting() const {
  std::lock_guard<std::mutex> l(mu_);
  return waiting_.size();
}

void CampaignSlots::EraseHeldLocked(const void* owner) {
  std::erase_if(held_, [&](const Held& h) { return h.owner == owner; });
}

void CampaignSlots::EraseWaiterLocked(const void* owner) {
  auto it = ticket_of_.find(owner);
  if (it == ticket_of_.end()) return;
  waiting_.erase(it->second);
  ticket_of_.erase(it);
}

}  // namespace flotilla::engine
