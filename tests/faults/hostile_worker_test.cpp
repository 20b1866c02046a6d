// Hostile workers (issue 20, item 4): each misbehaves in one way; the
// coordinator stays up, the other service is still served, and /metrics
// says what happened. Figures for docs/reliability.md are printed as
// "figure:" lines.
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include "tests/faults/worker_faults.hpp"

namespace occasional::testing::faults {
namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// An event's "ts" (RFC 3339, UTC, microseconds) as ms since midnight.
double event_ms(const Fields& f) {
  const std::string& ts = f.at("ts");
  const auto t = ts.find('T');
  return std::stod(ts.substr(t + 1, 2)) * 3600e3 + std::stod(ts.substr(t + 4, 2)) * 60e3 +
         std::stod(ts.substr(t + 7, 9)) * 1e3;
}

TEST(HostileWorkerTest, TruncatedCounterPageLeavesTheCoordinatorUp) {
  TwoServices s({"python3", kHostile, "truncate_counter"});
  // The worker tried to shrink and grow the counter's memfd: both refused.
  EXPECT_EQ(s.c.read_stdout_line(), "hostile: ftruncate 1048576: EPERM");
  EXPECT_EQ(s.c.read_stdout_line(), "hostile: ftruncate 0: EPERM");
  s.c.wait_event("ready", [](const Fields& f) { return f.at("service") == "h"; });
  // Each connection makes the coordinator read the counter, which the worker
  // then sets to 2^62 (beyond what it was handed) or back to 0 (backwards).
  for (int i = 0; i < 6; ++i) {
    EXPECT_NE(talk(s.hostile_port, "").find("hostile"), std::string::npos) << i;
    // The lie is in place before the next connection reads it.
    EXPECT_NE(s.c.read_stdout_line().find("counter set to"), std::string::npos);
  }
  ASSERT_TRUE(s.coordinator_up());
  EXPECT_TRUE(s.good_served());
  EXPECT_TRUE(poll_until([&] {
    return metric_sum(s.admin_port, "occasional_worker_closed_counter_clamped_total",
                      {"reason=\"beyond_handed\""}) >= 1 &&
           metric_sum(s.admin_port, "occasional_worker_closed_counter_clamped_total",
                      {"reason=\"backwards\""}) >= 1;
  }));
  s.c.wait_event("closed_counter_clamped");
  // Clamped, so the worker is not counted busier or idler than it can be:
  // its outstanding count stays within what was handed to it.
  HttpReply st = http_request(s.admin_port, "GET", "/v1/status");
  EXPECT_EQ(st.status, 200);
  EXPECT_EQ(st.body.find("18446744"), std::string::npos) << st.body;
  s.c.signal(SIGTERM);
  EXPECT_EQ(s.c.wait_exit(), 0);
}

// A protocol error of reason `reason` in service h is counted, the worker
// is killed and a new one becomes ready; returns the time from `t0` to the
// protocol_error event in ms.
double expect_killed_and_replaced(TwoServices& s, const std::string& reason, Clock::time_point t0,
                                  std::chrono::milliseconds within = 10s) {
  Fields e = s.c.wait_event(
      "protocol_error", [&](const Fields& f) { return f.at("reason") == reason; }, within);
  const double detect_ms = ms_since(t0);
  EXPECT_EQ(e["service"], "h");
  s.c.wait_event("exit", [](const Fields& f) { return f.at("service") == "h"; });
  s.c.wait_event("ready", [](const Fields& f) { return f.at("service") == "h"; });
  EXPECT_TRUE(s.coordinator_up());
  EXPECT_TRUE(s.good_served());
  EXPECT_TRUE(poll_until([&] {
    return metric_sum(s.admin_port, "occasional_worker_protocol_errors_total",
                      {"service=\"h\"", "reason=\"" + reason + "\""}) >= 1;
  }));
  EXPECT_EQ(metric_sum(s.admin_port, "occasional_service_failed", {"service=\"h\""}), 0);
  return detect_ms;
}

TEST(HostileWorkerTest, ClosedChannelIsUnreadyAtOnceThenKilledAndRestarted) {
  TwoServices s({"python3", kHostile, "close_channel"});
  EXPECT_EQ(s.c.read_stdout_line(), "hostile: channel closed");
  const auto is_h = [](const Fields& f) { return f.at("service") == "h"; };
  Fields ready = s.c.wait_event("ready", is_h);
  Fields unready = s.c.wait_event("unready", is_h);
  const auto t0 = Clock::now();
  expect_killed_and_replaced(s, "channel_closed", t0);
  Fields error = s.c.events("protocol_error").at(0);
  // The worker closed its socket right after `ready`.
  const double unready_ms = event_ms(unready) - event_ms(ready);
  const double killed_ms = event_ms(error) - event_ms(ready);
  EXPECT_LT(unready_ms, 100);
  EXPECT_GE(killed_ms, 190);  // the grace for an exit under way
  EXPECT_LT(killed_ms, 1000);
  std::printf("figure: closed channel: unready after %.1f ms, killed after %.1f ms\n", unready_ms,
              killed_ms);
  // Its replacement does the same, each time counted; nothing retries
  // handoffs against a closed socket in a loop.
  s.c.wait_event("protocol_error",
                 [](const Fields& f) { return f.at("reason") == "channel_closed"; });
  // A client of h meanwhile waits in the queue; before, it was retried
  // against the closed socket about 1,000 times a second.
  UniqueFd waiting = connect_loopback(s.hostile_port);
  ASSERT_TRUE(waiting);
  EXPECT_FALSE(poll_until(
      [&] { return metric_sum(s.admin_port, "occasional_handoff_retries_total") >= 10; }, 1s));
  EXPECT_TRUE(s.good_served());
}

TEST(HostileWorkerTest, ExitWithoutExitingIsKilledAfterTheGrace) {
  TwoServices s({"python3", kHostile, "exit_no_exit"}, R"("grace": 0.5)");
  EXPECT_EQ(s.c.read_stdout_line(), "hostile: exit sent");
  const auto t0 = Clock::now();
  const double detect_ms = expect_killed_and_replaced(s, "exit_overdue", t0);
  EXPECT_GE(detect_ms, 400);
  EXPECT_LT(detect_ms, 3000);
  Fields exit = s.c.events("exit").at(0);
  EXPECT_EQ(exit["stated_reason"], "leaving, honestly");
  EXPECT_EQ(exit["signal_name"], "SIGKILL");
  std::printf("figure: exit without exiting (grace 0.5 s): killed after %.0f ms\n", detect_ms);
}

TEST(HostileWorkerTest, FdAttachedToAMessageIsAProtocolError) {
  TwoServices s({"python3", kHostile, "fd_attached"});
  const double ms = expect_killed_and_replaced(s, "unexpected_fd", Clock::now());
  std::printf("figure: fd attached: replaced, protocol error seen after %.0f ms\n", ms);
}

TEST(HostileWorkerTest, GarbageDatagramIsAProtocolError) {
  TwoServices s({"python3", kHostile, "garbage"});
  s.c.wait_event("protocol_error", [](const Fields& f) { return f.at("service") == "h"; });
  s.c.wait_event("ready", [](const Fields& f) { return f.at("service") == "h"; });
  EXPECT_TRUE(s.coordinator_up());
  EXPECT_TRUE(s.good_served());
  EXPECT_GE(metric_sum(s.admin_port, "occasional_worker_protocol_errors_total", {"service=\"h\""}),
            1);
}

TEST(HostileWorkerTest, BurstOfTenThousandMessagesLeavesOthersServed) {
  TwoServices s({"python3", kHostile, "burst", "10000"});
  // While the burst is read, the good service answers request after request.
  std::atomic<bool> done{false};
  std::atomic<int> served{0}, failed{0};
  std::atomic<double> worst_ms{0};
  std::thread client([&] {
    while (!done) {
      const auto t = Clock::now();
      (s.good_served() ? served : failed)++;
      worst_ms = std::max(worst_ms.load(), ms_since(t));
    }
  });
  const std::string burst = s.c.read_stdout_line(30s);
  done = true;
  client.join();
  EXPECT_NE(burst.find("burst of 10000 sent"), std::string::npos) << burst;
  EXPECT_GE(served, 1);
  EXPECT_EQ(failed, 0);
  EXPECT_TRUE(s.coordinator_up());
  EXPECT_TRUE(s.good_served());
  // Messages are not an error, only many at once: the same worker serves on.
  EXPECT_NE(talk(s.hostile_port, "").find("hostile"), std::string::npos);
  EXPECT_EQ(metric_sum(s.admin_port, "occasional_worker_protocol_errors_total"), 0);
  EXPECT_EQ(s.c.events("exit").size(), 0u);
  std::printf(
      "figure: burst of 10,000 messages (%s): good service served %d times meanwhile, "
      "slowest %.1f ms\n",
      burst.c_str(), served.load(), worst_ms.load());
}

// Pids of uid `uid` now (from /proc), zombies included.
std::vector<pid_t> processes_of(uid_t uid) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    struct stat st {};
    if (::stat((std::string("/proc/") + e->d_name).c_str(), &st) == 0 && st.st_uid == uid)
      out.push_back(std::atoi(e->d_name));
  }
  ::closedir(d);
  return out;
}

TEST(HostileWorkerTest, ForkBombCappedByAnNprocLimitIsContainedAndCleanedUp) {
  if (::access("/usr/bin/setpriv", X_OK) != 0 || ::access("/usr/bin/prlimit", X_OK) != 0)
    GTEST_SKIP() << "setpriv or prlimit not installed";
  if (!processes_of(65532).empty()) GTEST_SKIP() << "processes of uid 65532 already run here";
  // RLIMIT_NPROC binds only an unprivileged user: the worker runs as uid
  // 65532 (a uid of its own, so that no other test counts against it).
  TwoServices s({"/usr/bin/setpriv", "--reuid=65532", "--regid=65532", "--clear-groups",
                 "/usr/bin/prlimit", "--nproc=50:50", "--", "python3", kHostile, "fork_bomb"});
  const std::string line = s.c.read_stdout_line(20s);
  EXPECT_NE(line.find("fork failed after"), std::string::npos) << line;
  EXPECT_NE(line.find("EAGAIN"), std::string::npos) << line;
  s.c.wait_event("ready", [](const Fields& f) { return f.at("service") == "h"; });
  const std::vector<pid_t> bomb = processes_of(65532);
  EXPECT_GE(bomb.size(), 45u);
  EXPECT_TRUE(s.coordinator_up());
  EXPECT_TRUE(s.good_served());
  EXPECT_NE(talk(s.hostile_port, "").find("hostile"), std::string::npos);
  // Stopping the worker takes its whole group with it.
  const pid_t worker =
      std::stoi(s.c.events("spawn").at(0).at("service") == "h" ? s.c.events("spawn").at(0)["pid"]
                                                               : s.c.events("spawn").at(1)["pid"]);
  const auto t0 = Clock::now();
  ASSERT_EQ(::kill(worker, SIGKILL), 0);
  EXPECT_TRUE(poll_until([&] {
    return std::none_of(bomb.begin(), bomb.end(), [](pid_t p) { return process_alive(p); });
  }));
  // The exit is counted as the kill it was, and a new worker replaces it.
  Fields exit = s.c.wait_event("exit", [](const Fields& f) { return f.at("service") == "h"; });
  EXPECT_EQ(exit["pid"], std::to_string(worker));
  EXPECT_TRUE(poll_until([&] {
    return metric_sum(s.admin_port, "occasional_worker_exits_total",
                      {"service=\"h\"", "reason=\"killed\"", "signal=\"SIGKILL\""}) >= 1;
  })) << "the worker's SIGKILL is not counted";
  std::printf(
      "figure: fork bomb under nproc 50: \"%s\"; coordinator up, others served; "
      "group gone %.0f ms after the worker's SIGKILL\n",
      line.c_str(), ms_since(t0));
  s.c.signal(SIGTERM);
  EXPECT_EQ(s.c.wait_exit(), 0);
  EXPECT_TRUE(poll_until([] { return processes_of(65532).empty(); }));
}

}  // namespace
}  // namespace occasional::testing::faults
