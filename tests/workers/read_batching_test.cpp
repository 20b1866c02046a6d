#include "workers/read_batching.hpp"

#include <gtest/gtest.h>

namespace occasional::workers {
namespace {

// One wake-up in which `items` are queued: the reader takes them as the
// policy says. Returns how many it took before waiting again.
int wake_up(ReadBatching& b, int items) {
  int taken = 0;
  while (taken < items) {
    ++taken;
    if (b.wait_after_item()) return taken;
  }
  b.found_empty();  // the read after the last item finds nothing
  return taken;
}

TEST(ReadBatchingTest, StartsBySweepingThenTakesOnePerWakeUpWhileItemsComeSingly) {
  ReadBatching b;
  EXPECT_TRUE(b.sweeping());
  EXPECT_EQ(wake_up(b, 1), 1);
  EXPECT_FALSE(b.sweeping());
  // 16 wake-ups with one item each, none of them reading past it...
  for (int i = 0; i < 16; ++i) {
    ASSERT_FALSE(b.sweeping()) << i;
    EXPECT_TRUE(b.wait_after_item()) << i;
  }
  // ...then a sweep checks for bursts.
  EXPECT_TRUE(b.sweeping());
}

TEST(ReadBatchingTest, ABurstSwitchesToSweepingUntilASweepFindsAtMostOne) {
  ReadBatching b;
  wake_up(b, 1);
  while (!b.sweeping()) EXPECT_TRUE(b.wait_after_item());
  EXPECT_EQ(wake_up(b, 5), 5);
  EXPECT_TRUE(b.sweeping());
  EXPECT_EQ(wake_up(b, 3), 3);
  EXPECT_TRUE(b.sweeping());
  EXPECT_EQ(wake_up(b, 1), 1);
  EXPECT_FALSE(b.sweeping());
}

TEST(ReadBatchingTest, AWakeUpWithNothingToReadLeavesSweepingMode) {
  ReadBatching b;
  b.found_empty();
  EXPECT_FALSE(b.sweeping());
}

TEST(ReadBatchingTest, ItemsAreCountedAcrossReadsInOneSweepingWakeUp) {
  ReadBatching b;
  EXPECT_FALSE(b.wait_after_item());
  EXPECT_FALSE(b.wait_after_item());
  b.found_empty();
  EXPECT_TRUE(b.sweeping());  // two in one wake-up is a burst
}

}  // namespace
}  // namespace occasional::workers
