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

TEST(ReadBatchingTest, StartsByDrainingThenTakesOnePerWakeUpWhileItemsComeSingly) {
  ReadBatching b;
  EXPECT_TRUE(b.draining());
  EXPECT_EQ(wake_up(b, 1), 1);
  EXPECT_FALSE(b.draining());
  // 16 wake-ups with one item each, none of them reading past it...
  for (int i = 0; i < 16; ++i) {
    ASSERT_FALSE(b.draining()) << i;
    EXPECT_TRUE(b.wait_after_item()) << i;
  }
  // ...then a full drain checks for bursts.
  EXPECT_TRUE(b.draining());
}

TEST(ReadBatchingTest, ABurstSwitchesToDrainingUntilADrainFindsAtMostOne) {
  ReadBatching b;
  wake_up(b, 1);
  while (!b.draining()) EXPECT_TRUE(b.wait_after_item());
  EXPECT_EQ(wake_up(b, 5), 5);
  EXPECT_TRUE(b.draining());
  EXPECT_EQ(wake_up(b, 3), 3);
  EXPECT_TRUE(b.draining());
  EXPECT_EQ(wake_up(b, 1), 1);
  EXPECT_FALSE(b.draining());
}

TEST(ReadBatchingTest, AWakeUpWithNothingToReadLeavesDrainingMode) {
  ReadBatching b;
  b.found_empty();
  EXPECT_FALSE(b.draining());
}

TEST(ReadBatchingTest, ItemsAreCountedAcrossReadsInOneDrainingWakeUp) {
  ReadBatching b;
  EXPECT_FALSE(b.wait_after_item());
  EXPECT_FALSE(b.wait_after_item());
  b.found_empty();
  EXPECT_TRUE(b.draining());  // two in one wake-up is a burst
}

}  // namespace
}  // namespace occasional::workers
