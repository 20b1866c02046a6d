// The coordinator's own resources run out while it runs (issue 20, item 4):
// its fd limit or its user's process limit is lowered with prlimit(2), a
// worker is killed, and its replacement cannot be spawned. The coordinator
// stays up, logs and counts each deferred spawn, does not count them
// towards the service's restart intensity (the service is not failed), and
// recovers once the limit is raised again. Figures are printed as "figure:".
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

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
      s,
      [&] {
        int p[2];
        ASSERT_EQ(::pipe(p), 0);
        squatter = ::fork();
        if (squatter == 0) {
          if (::setresgid(65533, 65533, 65533) != 0 || ::setresuid(65533, 65533, 65533) != 0)
            ::_exit(1);
          ::close(p[1]);  // counted as uid 65533's from here on
          for (;;) ::pause();
        }
        ASSERT_GT(squatter, 0);
        ::close(p[1]);
        char c;
        ASSERT_EQ(::read(p[0], &c, 1), 0);
        ::close(p[0]);
      },
      [&] {
        ::kill(squatter, SIGKILL);
        ::waitpid(squatter, nullptr, 0);
      },
      "clone", EAGAIN, "nproc limit (fork fails)");
  s.c.signal(SIGTERM);
  EXPECT_EQ(s.c.wait_exit(), 0);
}

}  // namespace
}  // namespace occasional::testing::faults
