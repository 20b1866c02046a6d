// The coordinator's own resources run out while it runs (issue 20, item 4):
// its fd limit or its user's process limit is lowered with prlimit(2), a
// worker is killed, and its replacement cannot be spawned. The coordinator
// stays up, logs and counts each deferred spawn, does not count them
// towards the service's restart intensity (the service is not failed), and
// recovers once the limit is raised again. Figures are printed as "figure:".
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "tests/faults/worker_faults.hpp"

namespace occasional::testing::faults {
namespace {

bool is_h(const Fields& f) {
  return f.count("service") && f.at("service") == "h";
}

// Runs `starve`, kills service h's worker, checks that several respawns
// are deferred (`call` failed with `error`) and none counts, runs `relieve`
// and waits for h to be ready again.
void starve_then_recover(TwoServices& s, const std::function<void()>& starve,
                         const std::function<void()>& relieve, const std::string& call, int error,
                         const char* what) {
  const pid_t worker = std::stoi(s.c.wait_event("spawn", is_h)["pid"]);
  s.c.wait_event("ready", is_h);
  starve();
  const auto t0 = Clock::now();
  ASSERT_EQ(::kill(worker, SIGKILL), 0);
  // Deferred again and again (max_restarts is 2: counted, these would fail h).
  for (int i = 0; i < 4; ++i) {
    Fields d = s.c.wait_event("spawn_deferred", is_h);
    EXPECT_EQ(d["failed_call"], call) << d["error"];
    EXPECT_EQ(d["errno"], std::to_string(error)) << d["error"];
  }
  const double deferred_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  EXPECT_TRUE(s.coordinator_up());
  EXPECT_TRUE(s.c.events("service_failed").empty());
  relieve();
  const auto t1 = Clock::now();
  s.c.wait_event("ready", is_h);
  const double recover_ms = std::chrono::duration<double, std::milli>(Clock::now() - t1).count();
  EXPECT_TRUE(s.good_served());
  EXPECT_NE(talk(s.hostile_port, "ping\n").find("pong"), std::string::npos);
  const double counted =
      metric_sum(s.admin_port, "occasional_worker_spawn_deferred_total",
                 {"service=\"h\"", "reason=\"" + call + "_" + strerrorname_np(error) + "\""});
  EXPECT_GE(counted, 4);
  EXPECT_EQ(metric_sum(s.admin_port, "occasional_service_failed", {"service=\"h\""}), 0);
  EXPECT_TRUE(s.c.events("service_failed").empty());
  std::printf(
      "figure: %s: %.0f deferred spawns counted, 4 within %.0f ms; ready %.0f ms after "
      "relief; service not failed\n",
      what, counted, deferred_ms, recover_ms);
}

// The coordinator's guardian (docs/supervision.md): its child whose name is
// "occasional-grd"; -1 while it has none.
pid_t guardian_of(pid_t coordinator) {
  DIR* d = ::opendir("/proc");
  if (!d) return -1;
  pid_t found = -1;
  while (dirent* e = ::readdir(d)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream stat("/proc/" + std::string(e->d_name) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // pid (comm) state ppid ...
    const size_t open = line.find('('), close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    const std::string comm = line.substr(open + 1, close - open - 1);
    std::istringstream rest(line.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == coordinator && comm == "occasional-grd" && state != 'Z') {
      found = pid;
      break;
    }
  }
  ::closedir(d);
  return found;
}

// A process of `uid` that pauses until killed: forked by the (root) test,
// so no limit stops it, and counted towards uid's RLIMIT_NPROC. Each test
// with a process limit has a uid of its own (65533, 65531 here; 65532 the
// fork bomb's in hostile_worker_test.cpp): ctest -j2 may run them at once,
// and a user's process count is shared by all its processes.
pid_t squat_as(uid_t uid) {
  int p[2];
  if (::pipe(p) != 0) return -1;
  const pid_t squatter = ::fork();
  if (squatter == 0) {
    if (::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0) ::_exit(1);
    ::close(p[1]);
    for (;;) ::pause();
  }
  ::close(p[1]);
  char c;
  if (squatter > 0) (void)::read(p[0], &c, 1);  // EOF once it runs as uid
  ::close(p[0]);
  return squatter;
}

const std::string kRestart =
    R"("max_restarts": 2, "window": 60, "backoff_initial": 0.05, "backoff_max": 0.4)";

TEST(ExhaustionTest, FdLimitLoweredWhileRunningDefersSpawnsWithoutFailingTheService) {
  TwoServices s({kWorkers + "/test_worker"}, kRestart);
  rlimit old{};
  ASSERT_EQ(::prlimit(s.c.pid(), RLIMIT_NOFILE, nullptr, &old), 0);
  starve_then_recover(
      s,
      [&] {
        // Below the lowest free fd: every new fd fails with EMFILE.
        rlimit low = old;
        low.rlim_cur = 4;
        ASSERT_EQ(::prlimit(s.c.pid(), RLIMIT_NOFILE, &low, nullptr), 0);
      },
      [&] { ASSERT_EQ(::prlimit(s.c.pid(), RLIMIT_NOFILE, &old, nullptr), 0); }, "socketpair",
      EMFILE, "fd limit lowered with prlimit");
  s.c.signal(SIGTERM);
  EXPECT_EQ(s.c.wait_exit(), 0);
}

TEST(ExhaustionTest, ProcessLimitMakesForkFailWithoutFailingTheService) {
  // RLIMIT_NPROC is not enforced for root: the coordinator runs as uid 65533,
  // with room for itself, its guardian and two workers. Another process of
  // the same user then takes the last place.
  if (::access("/usr/bin/setpriv", X_OK) != 0 || ::access("/usr/bin/prlimit", X_OK) != 0)
    GTEST_SKIP() << "setpriv or prlimit not installed";
  TwoServices s({kWorkers + "/test_worker"}, kRestart,
                {"/usr/bin/setpriv", "--reuid=65533", "--regid=65533", "--clear-groups",
                 "/usr/bin/prlimit", "--nproc=4:4", "--"});
  pid_t squatter = -1;
  starve_then_recover(
      s, [&] { ASSERT_GT(squatter = squat_as(65533), 0); },
      [&] {
        ::kill(squatter, SIGKILL);
        ::waitpid(squatter, nullptr, 0);
      },
      "clone", EAGAIN, "nproc limit (fork fails)");
  s.c.signal(SIGTERM);
  EXPECT_EQ(s.c.wait_exit(), 0);
}

// A guardian that keeps dying is forked again with a delay that doubles
// (100 ms, 200 ms, 400 ms, ...), not in a loop; the coordinator and its
// services carry on throughout.
TEST(ExhaustionTest, AGuardianKilledAgainAndAgainIsForkedAgainWithAGrowingDelay) {
  TwoServices s({kWorkers + "/test_worker"});
  pid_t guardian = -1;
  ASSERT_TRUE(poll_until([&] { return (guardian = guardian_of(s.c.pid())) > 0; }));
  double previous_ms = 0;
  for (int i = 0; i < 4; ++i) {
    const auto killed = Clock::now();
    ASSERT_EQ(::kill(guardian, SIGKILL), 0);
    Fields e = s.c.wait_event("guardian_exited");
    EXPECT_EQ(e["pid"], std::to_string(guardian));
    pid_t next = -1;
    ASSERT_TRUE(poll_until([&] {
      next = guardian_of(s.c.pid());
      return next > 0 && next != guardian;
    })) << "no new guardian after kill "
        << i;
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - killed).count();
    // Each delay is twice the one before: 100 ms after the first kill.
    EXPECT_GE(ms, 100.0 * (1 << i) - 5) << "kill " << i;
    std::printf("figure: guardian %d forked again %.0f ms after its kill (previous %.0f ms)\n",
                i + 1, ms, previous_ms);
    previous_ms = ms;
    guardian = next;
    EXPECT_TRUE(s.coordinator_up());
    EXPECT_TRUE(s.good_served());
  }
  EXPECT_EQ(s.c.events("guardian_exited").size(), 4u);
  s.c.signal(SIGTERM);
  EXPECT_EQ(s.c.wait_exit(), 0);
}

// A guardian that cannot be forked again (the coordinator's user is at its
// process limit) is logged and counted, retried with backoff, and forked
// once there is room; nothing else is disturbed.
TEST(ExhaustionTest, AGuardianThatCannotBeForkedIsRetriedUntilThereIsRoom) {
  if (::access("/usr/bin/setpriv", X_OK) != 0 || ::access("/usr/bin/prlimit", X_OK) != 0)
    GTEST_SKIP() << "setpriv or prlimit not installed";
  // Room for the coordinator, its guardian and two workers, as above.
  TwoServices s({kWorkers + "/test_worker"}, kRestart,
                {"/usr/bin/setpriv", "--reuid=65531", "--regid=65531", "--clear-groups",
                 "/usr/bin/prlimit", "--nproc=4:4", "--"});
  pid_t guardian = -1;
  ASSERT_TRUE(poll_until([&] { return (guardian = guardian_of(s.c.pid())) > 0; }));
  const pid_t squatter = squat_as(65531);
  ASSERT_GT(squatter, 0);
  ASSERT_EQ(::kill(guardian, SIGKILL), 0);
  s.c.wait_event("guardian_exited");
  for (int i = 0; i < 2; ++i) {
    Fields f = s.c.wait_event("guardian_start_failed");
    EXPECT_EQ(f["failed_call"], "fork") << f["error"];
  }
  EXPECT_TRUE(s.coordinator_up());
  EXPECT_TRUE(s.good_served());
  EXPECT_GE(metric_sum(s.admin_port, "occasional_supervisor_errors_total",
                       {"reason=\"guardian_fork_EAGAIN\""}),
            2);
  const double failures = metric_sum(s.admin_port, "occasional_supervisor_errors_total",
                                     {"reason=\"guardian_fork_EAGAIN\""});
  const auto relieved = Clock::now();
  ::kill(squatter, SIGKILL);
  ::waitpid(squatter, nullptr, 0);
  pid_t next = -1;
  EXPECT_TRUE(poll_until(
      [&] {
        next = guardian_of(s.c.pid());
        return next > 0 && next != guardian;
      },
      40s))
      << "no guardian once there was room again";
  std::printf(
      "figure: guardian fork failed %.0f times (EAGAIN) while at the nproc limit; forked again "
      "%.0f ms after there was room; coordinator up, others served\n",
      failures, std::chrono::duration<double, std::milli>(Clock::now() - relieved).count());
  EXPECT_TRUE(s.good_served());
  s.c.signal(SIGTERM);
  EXPECT_EQ(s.c.wait_exit(), 0);
}

}  // namespace
}  // namespace occasional::testing::faults
