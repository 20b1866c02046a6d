#include "supervisor/restart_policy.hpp"

#include <gtest/gtest.h>

namespace occasional::supervisor {
namespace {

using namespace std::chrono_literals;

// A fake clock: the policy reads no clock, each event is given `now`.
struct FakeClock {
  MonoTime now{};
  void advance(Duration d) { now += d; }
};

RestartConfig config() {
  RestartConfig c;
  c.mode = RestartMode::always;
  c.backoff_initial = 100ms;
  c.backoff_max = 1s;
  c.jitter = 0.0;
  c.stable_after = 10s;
  c.max_restarts = 100;
  c.window = 60s;
  c.cooloff = 0s;
  return c;
}

PolicyEvent exited(bool clean, Duration uptime) {
  return {PolicyEventKind::exited, clean, uptime};
}

TEST(RestartPolicyTest, StartSpawnsEveryReplica) {
  RestartPolicy p(config(), 3, [] { return 0.0; });
  auto actions = p.start_service();
  ASSERT_EQ(actions.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(actions[static_cast<size_t>(i)], (Action{i, ActionKind::spawn}));
    EXPECT_EQ(p.state(i), ReplicaState::running);
  }
}

TEST(RestartPolicyTest, BackoffDoublesFromInitialToMax) {
  RestartPolicy p(config(), 1, [] { return 0.0; });
  FakeClock clock;
  p.start_service();
  // First restart in a row is immediate, then 100, 200, 400, 800 ms, then capped at 1 s.
  std::vector<Duration> expected = {0ms, 100ms, 200ms, 400ms, 800ms, 1s, 1s};
  for (Duration want : expected) {
    auto actions = p.on(0, exited(false, 1s), clock.now);
    ASSERT_EQ(actions.size(), 1u);
    if (want == 0ms) {
      EXPECT_EQ(actions[0].kind, ActionKind::spawn);
      EXPECT_EQ(p.state(0), ReplicaState::running);
    } else {
      EXPECT_EQ(actions[0], (Action{0, ActionKind::schedule_restart, want}));
      EXPECT_EQ(p.state(0), ReplicaState::backoff);
      clock.advance(want);
      EXPECT_EQ(p.on(0, {PolicyEventKind::backoff_elapsed}, clock.now),
                (std::vector<Action>{{0, ActionKind::spawn}}));
    }
    clock.advance(1s);
  }
}

TEST(RestartPolicyTest, JitterStaysWithinBounds) {
  RestartConfig c = config();
  c.jitter = 0.25;
  RestartPolicy p(c, 1, [] { return 0.0; });
  for (int k = 2; k < 8; ++k) {
    Duration base = p.backoff_delay(k, 0.0);
    Duration shortest = p.backoff_delay(k, 0.999999);
    EXPECT_LE(shortest, base);
    EXPECT_GE(shortest, std::chrono::duration_cast<Duration>(base * 0.75) - 1us);
    EXPECT_LE(base, c.backoff_max);
  }
  EXPECT_EQ(p.backoff_delay(2, 0.0), 100ms);
  EXPECT_EQ(p.backoff_delay(2, 0.5), 87500us);
}

TEST(RestartPolicyTest, RandomJitterIsDrawnPerRestart) {
  RestartConfig c = config();
  c.jitter = 0.5;
  double u = 0.0;
  RestartPolicy p(c, 1, [&] { return u; });
  FakeClock clock;
  p.start_service();
  p.on(0, exited(false, 0s), clock.now);  // immediate
  u = 0.5;
  auto actions = p.on(0, exited(false, 0s), clock.now);
  EXPECT_EQ(actions[0].delay, 75ms);
}

TEST(RestartPolicyTest, StableUptimeResetsBackoff) {
  RestartPolicy p(config(), 1, [] { return 0.0; });
  FakeClock clock;
  p.start_service();
  p.on(0, exited(false, 1s), clock.now);
  auto a = p.on(0, exited(false, 1s), clock.now);
  EXPECT_EQ(a[0].delay, 100ms);
  p.on(0, {PolicyEventKind::backoff_elapsed}, clock.now);
  EXPECT_EQ(p.consecutive_restarts(0), 2);
  clock.advance(10s);
  // Ran 10 s (= stable_after): the next restart is immediate again.
  auto b = p.on(0, exited(false, 10s), clock.now);
  EXPECT_EQ(b, (std::vector<Action>{{0, ActionKind::spawn}}));
  EXPECT_EQ(p.consecutive_restarts(0), 1);
}

TEST(RestartPolicyTest, IntensityMarksServiceFailed) {
  RestartConfig c = config();
  c.max_restarts = 3;
  c.window = 10s;
  c.backoff_initial = 0ms;
  RestartPolicy p(c, 2, [] { return 0.0; });
  FakeClock clock;
  p.start_service();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(p.on(0, exited(false, 0s), clock.now)[0].kind, ActionKind::spawn);
    clock.advance(1s);
  }
  EXPECT_FALSE(p.failed());
  auto actions = p.on(0, exited(false, 0s), clock.now);
  EXPECT_EQ(actions, (std::vector<Action>{{0, ActionKind::service_failed}}));
  EXPECT_TRUE(p.failed());
  EXPECT_EQ(p.state(0), ReplicaState::stopped);
  // The other replica keeps running, but is not restarted when it exits.
  EXPECT_EQ(p.state(1), ReplicaState::running);
  EXPECT_TRUE(p.on(1, exited(false, 0s), clock.now).empty());
  EXPECT_EQ(p.state(1), ReplicaState::stopped);
  // A start request on a failed service's replica does nothing; start_service clears it.
  EXPECT_TRUE(p.on(0, {PolicyEventKind::start}, clock.now).empty());
  EXPECT_EQ(p.start_service().size(), 2u);
  EXPECT_FALSE(p.failed());
}

TEST(RestartPolicyTest, RestartsOutsideTheWindowDoNotCount) {
  RestartConfig c = config();
  c.max_restarts = 2;
  c.window = 10s;
  c.backoff_initial = 0ms;
  RestartPolicy p(c, 1, [] { return 0.0; });
  FakeClock clock;
  p.start_service();
  for (int i = 0; i < 20; ++i) {
    auto a = p.on(0, exited(false, 0s), clock.now);
    ASSERT_EQ(a[0].kind, ActionKind::spawn) << "restart " << i;
    clock.advance(6s);  // at most 2 restarts in any 10 s
  }
  EXPECT_FALSE(p.failed());
}

TEST(RestartPolicyTest, BackoffReplicaIsCancelledWhenServiceFails) {
  RestartConfig c = config();
  c.max_restarts = 2;
  RestartPolicy p(c, 2, [] { return 0.0; });
  FakeClock clock;
  p.start_service();
  p.on(0, exited(false, 0s), clock.now);           // restart 1: immediate
  auto a = p.on(0, exited(false, 0s), clock.now);  // restart 2: backoff
  ASSERT_EQ(a[0].kind, ActionKind::schedule_restart);
  p.on(1, exited(false, 0s), clock.now);
  p.on(1, exited(false, 0s), clock.now);
  p.on(1, {PolicyEventKind::backoff_elapsed}, clock.now);
  auto b = p.on(1, exited(false, 0s), clock.now);  // replica 1's restart 3: too many
  EXPECT_EQ(
      b, (std::vector<Action>{{1, ActionKind::service_failed}, {0, ActionKind::cancel_restart}}));
  EXPECT_EQ(p.state(0), ReplicaState::stopped);
}

// Issue 21: 12 kills over 4 replicas within 1.2 s failed a service whose
// limit is 10 restarts a minute. Each replica restarted 3 times: no crash loop.
TEST(RestartPolicyTest, IntensityIsCountedPerReplica) {
  RestartConfig c = config();
  c.max_restarts = RestartConfig{}.max_restarts;
  c.window = RestartConfig{}.window;
  RestartPolicy p(c, 4, [] { return 0.0; });
  FakeClock clock;
  p.start_service();
  for (int kill = 0; kill < 12; ++kill) {
    const int replica = kill % 4;
    if (p.state(replica) == ReplicaState::backoff)
      p.on(replica, {PolicyEventKind::backoff_elapsed}, clock.now);
    const auto actions = p.on(replica, exited(false, 0s), clock.now);
    ASSERT_FALSE(actions.empty());
    EXPECT_NE(actions[0].kind, ActionKind::service_failed) << "kill " << kill;
    clock.advance(100ms);
  }
  EXPECT_FALSE(p.failed());
  // One replica alone in a loop still fails the service.
  for (int i = 0; i < 8 && !p.failed(); ++i) {
    if (p.state(0) == ReplicaState::backoff) p.on(0, {PolicyEventKind::backoff_elapsed}, clock.now);
    p.on(0, exited(false, 0s), clock.now);
  }
  EXPECT_TRUE(p.failed());
  EXPECT_EQ(p.consecutive_restarts(1), 3);
}

// Fails replica 0 of `p` by exiting it until the intensity is exceeded;
// returns the actions of the exit that failed the service.
std::vector<Action> crash_loop(RestartPolicy& p, MonoTime now) {
  for (int i = 0; i <= p.config().max_restarts; ++i) {
    if (p.state(0) == ReplicaState::backoff) p.on(0, {PolicyEventKind::backoff_elapsed}, now);
    auto actions = p.on(0, exited(false, 0s), now);
    if (p.failed()) return actions;
  }
  ADD_FAILURE() << "the service did not fail";
  return {};
}

// As Kubernetes' CrashLoopBackOff: a failed service is tried again after a
// cool-off that doubles with each failure in a row, capped at 5 minutes.
TEST(RestartPolicyTest, AFailedServiceIsRetriedAfterACooloffThatDoublesToFiveMinutes) {
  RestartConfig c = config();
  c.max_restarts = 2;
  c.cooloff = 10s;
  RestartPolicy p(c, 2, [] { return 0.0; });
  FakeClock clock;
  p.start_service();
  const std::vector<Duration> expected = {10s, 20s, 40s, 80s, 160s, 300s, 300s};
  for (Duration want : expected) {
    const auto actions = crash_loop(p, clock.now);
    ASSERT_FALSE(actions.empty());
    EXPECT_EQ(actions.back(), (Action{0, ActionKind::schedule_retry, want}));
    EXPECT_TRUE(p.retry_pending());
    // Nothing restarts during the cool-off.
    EXPECT_TRUE(p.on(1, exited(false, 0s), clock.now).empty());
    clock.advance(want);
    EXPECT_EQ(p.retry_service(clock.now),
              (std::vector<Action>{{0, ActionKind::spawn}, {1, ActionKind::spawn}}));
    EXPECT_FALSE(p.failed());
    EXPECT_FALSE(p.retry_pending());
  }
}

TEST(RestartPolicyTest, ARetryThatLastsAWindowStartsTheCooloffAgain) {
  RestartConfig c = config();
  c.max_restarts = 2;
  c.window = 60s;
  c.cooloff = 10s;
  RestartPolicy p(c, 1, [] { return 0.0; });
  FakeClock clock;
  p.start_service();
  EXPECT_EQ(crash_loop(p, clock.now).back().delay, 10s);
  clock.advance(10s);
  p.retry_service(clock.now);
  EXPECT_EQ(crash_loop(p, clock.now).back().delay, 20s);
  clock.advance(20s);
  p.retry_service(clock.now);
  clock.advance(61s);
  EXPECT_EQ(crash_loop(p, clock.now).back().delay, 10s);
}

// systemd's way: with no cool-off, failed stays failed until an operator acts.
TEST(RestartPolicyTest, WithoutACooloffAFailedServiceStaysFailed) {
  RestartConfig c = config();
  c.max_restarts = 1;
  c.cooloff = 0s;
  RestartPolicy p(c, 1, [] { return 0.0; });
  FakeClock clock;
  p.start_service();
  EXPECT_EQ(crash_loop(p, clock.now), (std::vector<Action>{{0, ActionKind::service_failed}}));
  EXPECT_FALSE(p.retry_pending());
  EXPECT_TRUE(p.retry_service(clock.now + 1h).empty());
  EXPECT_TRUE(p.failed());
  EXPECT_EQ(p.start_service(), (std::vector<Action>{{0, ActionKind::spawn}}));
}

TEST(RestartPolicyTest, AStopCancelsTheRetryAndAStartClearsTheCooloff) {
  RestartConfig c = config();
  c.max_restarts = 1;
  c.cooloff = 10s;
  RestartPolicy p(c, 1, [] { return 0.0; });
  FakeClock clock;
  p.start_service();
  crash_loop(p, clock.now);
  p.cancel_retry();
  EXPECT_TRUE(p.retry_service(clock.now + 10s).empty());
  EXPECT_TRUE(p.failed());
  p.start_service();
  EXPECT_EQ(crash_loop(p, clock.now).back().delay, 10s);
}

TEST(RestartPolicyTest, ModesDecideWhichExitsRestart) {
  struct Case {
    RestartMode mode;
    bool clean;
    bool restarts;
  };
  for (Case k :
       {Case{RestartMode::always, true, true}, Case{RestartMode::always, false, true},
        Case{RestartMode::on_failure, true, false}, Case{RestartMode::on_failure, false, true},
        Case{RestartMode::never, true, false}, Case{RestartMode::never, false, false}}) {
    RestartConfig c = config();
    c.mode = k.mode;
    RestartPolicy p(c, 1, [] { return 0.0; });
    p.start_service();
    auto a = p.on(0, exited(k.clean, 1s), MonoTime{});
    EXPECT_EQ(!a.empty(), k.restarts) << restart_mode_name(k.mode) << " clean=" << k.clean;
    EXPECT_EQ(p.state(0), k.restarts ? ReplicaState::running : ReplicaState::stopped);
  }
}

TEST(RestartPolicyTest, StopTerminatesThenKillsAtGrace) {
  RestartPolicy p(config(), 1, [] { return 0.0; });
  p.start_service();
  EXPECT_EQ(p.on(0, {PolicyEventKind::stop}, MonoTime{}),
            (std::vector<Action>{{0, ActionKind::terminate}}));
  EXPECT_EQ(p.state(0), ReplicaState::stopping);
  EXPECT_EQ(p.on(0, {PolicyEventKind::grace_elapsed}, MonoTime{}),
            (std::vector<Action>{{0, ActionKind::kill}}));
  // An exit while stopping is never restarted, whatever the mode.
  EXPECT_TRUE(p.on(0, exited(false, 0s), MonoTime{}).empty());
  EXPECT_EQ(p.state(0), ReplicaState::stopped);
}

TEST(RestartPolicyTest, StopDuringBackoffCancelsTheRestart) {
  RestartPolicy p(config(), 1, [] { return 0.0; });
  p.start_service();
  p.on(0, exited(false, 0s), MonoTime{});
  p.on(0, exited(false, 0s), MonoTime{});
  ASSERT_EQ(p.state(0), ReplicaState::backoff);
  EXPECT_EQ(p.on(0, {PolicyEventKind::stop}, MonoTime{}),
            (std::vector<Action>{{0, ActionKind::cancel_restart}}));
  // A late timer is ignored.
  EXPECT_TRUE(p.on(0, {PolicyEventKind::backoff_elapsed}, MonoTime{}).empty());
  EXPECT_EQ(p.state(0), ReplicaState::stopped);
}

TEST(RestartPolicyTest, ScaleDownStopsExtraReplicasAndDoesNotRestartThem) {
  RestartPolicy p(config(), 3, [] { return 0.0; });
  p.start_service();
  auto a = p.scale(1);
  EXPECT_EQ(a, (std::vector<Action>{{1, ActionKind::terminate}, {2, ActionKind::terminate}}));
  EXPECT_TRUE(p.on(1, exited(false, 0s), MonoTime{}).empty());
  auto b = p.scale(2);
  EXPECT_EQ(b, (std::vector<Action>{{1, ActionKind::spawn}}));
}

}  // namespace
}  // namespace occasional::supervisor

namespace occasional::supervisor {
namespace {

TEST(RestartPolicyTest, RollingRestartAddsAReplacementThenRetiresTheOldReplica) {
  RestartPolicy p(config(), 2, [] { return 0.0; });
  p.start_service();
  EXPECT_EQ(p.add_replica(), (std::vector<Action>{{2, ActionKind::spawn}}));
  EXPECT_EQ(p.desired_replicas(), 3);
  EXPECT_EQ(p.retire(0), (std::vector<Action>{{0, ActionKind::terminate}}));
  EXPECT_EQ(p.desired_replicas(), 2);
  // A retired replica is not restarted, and its slot is reused once stopped.
  EXPECT_TRUE(p.on(0, exited(true, 1s), MonoTime{}).empty());
  EXPECT_EQ(p.state(0), ReplicaState::stopped);
  EXPECT_EQ(p.add_replica(), (std::vector<Action>{{0, ActionKind::spawn}}));
  EXPECT_EQ(p.retire(1), (std::vector<Action>{{1, ActionKind::terminate}}));
  // Scaling down after that removes the highest wanted slot (2), not a hole.
  EXPECT_EQ(p.scale(1), (std::vector<Action>{{2, ActionKind::terminate}}));
  EXPECT_TRUE(p.wanted(0));
  EXPECT_FALSE(p.wanted(2));
}

TEST(RestartPolicyTest, AdoptedReplicasRunWithTheirHistory) {
  // An upgrade carried replicas 0 and 2 (1 had been scaled away).
  RestartPolicy p(config(), 1, [] { return 0.0; });
  FakeClock clock;
  clock.advance(100s);
  p.adopt({{0, 0, {}}, {2, 3, {clock.now - 5s, clock.now - 1s}}});
  EXPECT_EQ(p.table_size(), 3);
  EXPECT_EQ(p.desired_replicas(), 2);
  EXPECT_EQ(p.state(0), ReplicaState::running);
  EXPECT_EQ(p.state(1), ReplicaState::stopped);
  EXPECT_FALSE(p.wanted(1));
  EXPECT_EQ(p.state(2), ReplicaState::running);
  EXPECT_EQ(p.consecutive_restarts(2), 3);
  EXPECT_EQ(p.restart_times(2).size(), 2u);
  // Its backoff goes on from where it was: the 4th restart in a row waits 400 ms.
  auto a = p.on(2, exited(false, 1s), clock.now);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, ActionKind::schedule_restart);
  EXPECT_EQ(a[0].delay, 400ms);
  // Scaling up reuses the free slot.
  a = p.scale(3);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0], (Action{1, ActionKind::spawn}));
}

}  // namespace
}  // namespace occasional::supervisor
