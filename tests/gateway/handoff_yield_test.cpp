#include "gateway/handoff_yield.hpp"

#include <gtest/gtest.h>

namespace occasional::gateway {
namespace {

TEST(HandoffYieldTest, YieldsAfterEveryLoneHandoffWhileTheYieldsLetOtherWorkRun) {
  HandoffYield y;
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(y.due()) << i;
    // Now and then the worker is not run before us: that alone stops nothing.
    y.yielded(i % 3 != 0);
  }
}

TEST(HandoffYieldTest, YieldsThatFindTheCpuFreeInARowSkipTheNextOnesThenTryAgain) {
  HandoffYield y;
  for (int i = 0; i < HandoffYield::kFreeInARow; ++i) {
    ASSERT_TRUE(y.due()) << i;
    y.yielded(false);
  }
  for (int i = 0; i < HandoffYield::kSkipAfterFree; ++i) EXPECT_FALSE(y.due()) << i;
  ASSERT_TRUE(y.due());
  // The worker shares the CPU again (moved, or the machine got busier).
  y.yielded(true);
  EXPECT_TRUE(y.due());
  // The count starts over: one free yield does not stop them.
  y.yielded(false);
  EXPECT_TRUE(y.due());
}

TEST(HandoffYieldTest, OnACpuTheWorkersShareItYieldsEveryTimeHoweverTheYieldsWent) {
  HandoffYield y(/*always=*/true);
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(y.due()) << i;
    y.yielded(false);
  }
}

}  // namespace
}  // namespace occasional::gateway
