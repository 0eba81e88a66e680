// CampaignSlots: the NodeHost-wide cap on replicas campaigning at once
// (NodeHostConfig::max_concurrent_campaigns), so that a restart of thousands
// of shards does not start thousands of elections at once.
//
// A replica whose election timer fired asks for a slot (Acquire) on every
// pass until it gets one; askers are served in the order they first asked.
// A slot is held for one campaign: the holder returns it when it stops
// campaigning (it won, lost, or heard from a leader), when it stops, and —
// the point of the bound — when its election timer fires again while it
// still campaigns: a campaign that did not end within an election timeout
// (pre-votes dropped by voters within their lease, or unanswered by dead
// peers) goes to the back of the queue instead of keeping the slot, so
// hopeless shards cannot starve the others. Every slot also lapses after
// `hold_ticks`, and an asker that has not asked again for `hold_ticks` leaves
// the queue: a replica that stopped on a path that forgot to Release cannot
// hold a slot or a place for good.
//
// Thread-safe. Owners are opaque pointers (the NodeHost's replicas, which
// outlive the NodeHost's workers).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace flotilla::engine {

class CampaignSlots {
 public:
  explicit CampaignSlots(uint32_t cap) : cap_(cap) {}

  // For an owner whose election timer fired, at logical tick `now`: true
  // when it may campaign now (it holds a slot until `now + hold_ticks`).
  // An owner that holds a slot already gives it up and queues again.
  bool Acquire(const void* owner, uint64_t now, uint64_t hold_ticks);
  // Returns the owner's slot, or takes it out of the queue.
  void Release(const void* owner);
  // Slots held now (the metric; lapsed slots count until the next Acquire).
  uint32_t held() const;
  // Owners waiting for a slot.
  size_t waiting() const;

 private:
  struct Held {
    const void* owner;
    uint64_t until;  // lapses at this tick
  };
  struct Waiter {
    const void* owner;
    uint64_t until;  // leaves the queue at this tick unless it asks again
  };
  void EraseHeldLocked(const void* owner);
  void EraseWaiterLocked(const void* owner);

  const uint32_t cap_;
  mutable std::mutex mu_;
  std::vector<Held> held_;                               // guarded by mu_; at most cap_
  std::map<uint64_t, Waiter> waiting_;                   // guarded by mu_; by ticket
  std::unordered_map<const void*, uint64_t> ticket_of_;  // guarded by mu_
  uint64_t next_ticket_ = 1;                             // guarded by mu_
};

}  // namespace flotilla::engine
