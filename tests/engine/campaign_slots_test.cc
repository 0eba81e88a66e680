// The NodeHost-wide campaign cap: slots in the order asked, one election
// timeout per campaign, nothing held or queued for good.
#include "engine/campaign_slots.h"

#include <gtest/gtest.h>

namespace flotilla::engine {
namespace {

constexpr uint64_t kHold = 20;  // ticks: two election timeouts of 10

TEST(CampaignSlots, GrantsUpToTheCapInTheOrderAsked) {
  CampaignSlots slots(2);
  int a = 0, b = 0, c = 0, d = 0;
  EXPECT_TRUE(slots.Acquire(&a, 1, kHold));
  EXPECT_TRUE(slots.Acquire(&c, 1, kHold));
  EXPECT_FALSE(slots.Acquire(&d, 1, kHold));
  EXPECT_EQ(slots.held(), 2u);
  EXPECT_EQ(slots.waiting(), 1u);
  // b asked later than d: d goes first when a slot returns.
  EXPECT_FALSE(slots.Acquire(&b, 2, kHold));
  slots.Release(&a);
  EXPECT_FALSE(slots.Acquire(&b, 3, kHold));
  EXPECT_TRUE(slots.Acquire(&d, 3, kHold));
}

TEST(CampaignSlots, ACampaignOutlivingItsTimeoutQueuesBehindTheWaiting) {
  CampaignSlots slots(1);
  int hopeless = 0, other = 0;
  EXPECT_TRUE(slots.Acquire(&hopeless, 1, kHold));
  EXPECT_FALSE(slots.Acquire(&other, 2, kHold));
  // The hopeless campaign's timer fires again: its slot goes to the waiter.
  EXPECT_FALSE(slots.Acquire(&hopeless, 12, kHold));
  EXPECT_TRUE(slots.Acquire(&other, 12, kHold));
  // Alone, a replica campaigns again at once.
  slots.Release(&other);
  EXPECT_TRUE(slots.Acquire(&hopeless, 13, kHold));
}

TEST(CampaignSlots, ForgottenSlotsAndPlacesLapse) {
  CampaignSlots slots(1);
  int gone = 0, stale = 0, next = 0;
  EXPECT_TRUE(slots.Acquire(&gone, 1, kHold));    // never released
  EXPECT_FALSE(slots.Acquire(&stale, 2, kHold));  // never asks again
  EXPECT_FALSE(slots.Acquire(&next, 3, kHold));
  EXPECT_FALSE(slots.Acquire(&next, 20, kHold));
  // At tick 21 the slot has lapsed; at 22 the stale waiter's place has too.
  EXPECT_FALSE(slots.Acquire(&next, 21, kHold));
  EXPECT_TRUE(slots.Acquire(&next, 22, kHold));
  EXPECT_EQ(slots.waiting(), 0u);
}

}  // namespace
}  // namespace flotilla::engine
