#include "supervisor/rolling_restart.hpp"

#include <gtest/gtest.h>

namespace occasional::supervisor {
namespace {

using namespace std::chrono_literals;

RestartConfig config() {
  RestartConfig c;
  c.mode = RestartMode::always;
  c.backoff_initial = 100ms;
  c.backoff_max = 1s;
  c.jitter = 0.0;
  c.max_restarts = 100;
  c.window = 60s;
  c.cooloff = 0s;
  return c;
}

// Replacements come one at a time, each only once the previous one is
// ready, and each retires one old replica: never fewer ready than before.
TEST(RollingRestartTest, ReplacesEachRunningReplicaOneAtATimeAfterItsReplacementIsReady) {
  RestartPolicy policy(config(), 2, [] { return 0.0; });
  policy.start_service();
  RollingRestart rolling;
  ASSERT_TRUE(rolling.begin(policy));
  std::vector<Action> first = rolling.next(policy);
  ASSERT_EQ(first, (std::vector<Action>{{2, ActionKind::spawn}}));
  EXPECT_TRUE(rolling.active());
  EXPECT_FALSE(rolling.begin(policy)) << "one rolling restart at a time";

  // Another replica getting ready changes nothing.
  EXPECT_FALSE(rolling.on_ready(policy, 1));
  EXPECT_TRUE(policy.wanted(0));

  std::optional<std::vector<Action>> retire = rolling.on_ready(policy, 2);
  ASSERT_TRUE(retire);
  EXPECT_EQ(*retire, (std::vector<Action>{{0, ActionKind::terminate}}));
  EXPECT_FALSE(policy.wanted(0));
  std::vector<Action> second = rolling.next(policy);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].kind, ActionKind::spawn);
  const int surge = second[0].replica;
  EXPECT_NE(surge, 0) << "the slot of a replica still stopping is not reused";

  retire = rolling.on_ready(policy, surge);
  ASSERT_TRUE(retire);
  EXPECT_EQ(*retire, (std::vector<Action>{{1, ActionKind::terminate}}));
  EXPECT_TRUE(rolling.next(policy).empty());
  EXPECT_FALSE(rolling.active());
  EXPECT_EQ(policy.desired_replicas(), 2);
}

// A replica stopped (scaled away) before its turn has nothing to replace.
TEST(RollingRestartTest, SkipsAReplicaThatIsNoLongerRunning) {
  RestartPolicy policy(config(), 2, [] { return 0.0; });
  policy.start_service();
  RollingRestart rolling;
  ASSERT_TRUE(rolling.begin(policy));
  policy.retire(0);
  std::vector<Action> first = rolling.next(policy);
  ASSERT_EQ(first.size(), 1u);
  std::optional<std::vector<Action>> retire = rolling.on_ready(policy, first[0].replica);
  ASSERT_TRUE(retire);
  EXPECT_EQ(*retire, (std::vector<Action>{{1, ActionKind::terminate}}));
  EXPECT_TRUE(rolling.next(policy).empty());
}

TEST(RollingRestartTest, AFailedServiceIsNotRestartedAndAbortForgetsTheRestart) {
  RestartConfig c = config();
  c.max_restarts = 0;
  RestartPolicy policy(c, 1, [] { return 0.0; });
  policy.start_service();
  RollingRestart rolling;
  ASSERT_TRUE(rolling.begin(policy));
  ASSERT_FALSE(rolling.next(policy).empty());
  rolling.abort();
  EXPECT_FALSE(rolling.active());
  EXPECT_FALSE(rolling.on_ready(policy, 1));

  policy.on(0, {PolicyEventKind::exited, false, 1s}, MonoTime{});
  ASSERT_TRUE(policy.failed());
  EXPECT_FALSE(rolling.begin(policy));
}

}  // namespace
}  // namespace occasional::supervisor
