// The occasional executable supervising real processes, observed through its
// event log, its exit status and /proc.
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <thread>

#include "tests/integration/coordinator_process.hpp"

namespace occasional::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST(SuperviseTest, ExitCodeIsRecordedAndFailureSetsTheStatus) {
  CoordinatorProcess c({"run", "--restart", "never", "--", "sh", "-c", "exit 3"});
  Fields exit = c.wait_event("exit");
  EXPECT_EQ(exit["outcome"], "exited");
  EXPECT_EQ(exit["code"], "3");
  EXPECT_EQ(exit["service"], "sh");
  EXPECT_EQ(exit["description"], "exited with code 3");
  EXPECT_FALSE(exit["uptime_seconds"].empty());
  EXPECT_EQ(c.wait_exit(), 1);
}

TEST(SuperviseTest, WorkersThatFinishCleanlyEndTheRunWithZero) {
  CoordinatorProcess c({"run", "--replicas", "3", "--restart", "on-failure", "--", "true"});
  EXPECT_EQ(c.wait_exit(), 0);
  EXPECT_EQ(c.events("exit").size(), 3u);
}

TEST(SuperviseTest, SigtermStopsEveryWorkerAndExitsZero) {
  CoordinatorProcess c({"run", "--replicas", "2", "--", "sleep", "1000"});
  c.wait_event("spawn");
  c.wait_event("spawn");
  c.signal(SIGTERM);
  EXPECT_EQ(c.wait_exit(), 0);
  auto exits = c.events("exit");
  ASSERT_EQ(exits.size(), 2u);
  for (auto& e : exits) EXPECT_EQ(e["signal_name"], "SIGTERM");
  EXPECT_EQ(c.events("stop_requested").size(), 1u);
  EXPECT_EQ(c.events("spawn").size(), 2u);  // nothing restarted while stopping
}

TEST(SuperviseTest, WorkerIgnoringSigtermIsKilledAtTheGraceDeadline) {
  CoordinatorProcess c({"run", "--grace", "0.3", "--", "sh", "-c",
                        "trap '' TERM; echo ready; while :; do sleep 0.05; done"});
  ASSERT_EQ(c.read_stdout_line(), "ready");
  const auto t0 = Clock::now();
  c.signal(SIGTERM);
  EXPECT_EQ(c.wait_exit(), 0);
  const auto took = Clock::now() - t0;
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 3s);
  EXPECT_EQ(c.events("grace_expired").size(), 1u);
  EXPECT_EQ(c.events("exit").at(0)["signal_name"], "SIGKILL");
}

TEST(SuperviseTest, SecondSignalKillsAtOnce) {
  CoordinatorProcess c({"run", "--grace", "60", "--", "sh", "-c",
                        "trap '' TERM INT; echo ready; while :; do sleep 0.05; done"});
  ASSERT_EQ(c.read_stdout_line(), "ready");
  c.signal(SIGTERM);
  c.wait_event("stop_requested");
  c.signal(SIGINT);
  EXPECT_EQ(c.wait_exit(3000ms), 4);
  EXPECT_EQ(c.events("stop_forced").size(), 1u);
}

TEST(SuperviseTest, MissingExecutableIsStartFailedWithBackoffThenServiceFailed) {
  CoordinatorProcess c({"run", "--admin", "off", "--backoff-initial", "0.02", "--max-restarts", "3",
                        "--cooloff", "0", "--", "/nonexistent/worker"});
  Fields first = c.wait_event("exit");
  EXPECT_EQ(first["outcome"], "start_failed");
  EXPECT_EQ(first["description"], "failed to start: execve: No such file or directory");
  c.wait_event("service_failed");
  EXPECT_EQ(c.events("exit").size(), 4u);
  auto delays = c.events("restart_scheduled");
  ASSERT_EQ(delays.size(), 2u);
  EXPECT_GT(std::stod(delays[1]["delay_seconds"]), std::stod(delays[0]["delay_seconds"]));
  EXPECT_TRUE(c.events("spawn").empty());
  // Nothing is left running, nothing will restart and no operator can start
  // it (no admin endpoint): the coordinator ends, failed.
  EXPECT_EQ(c.wait_exit(), 1);
  EXPECT_EQ(c.events("coordinator_exit").size(), 1u);
}

TEST(SuperviseTest, NothingOutlivesASigkilledCoordinator) {
  CoordinatorProcess c(
      {"run", "--replicas", "2", "--", "sh", "-c", "sleep 1000 & sleep 1000 & echo started; wait"});
  ASSERT_EQ(c.read_stdout_line(), "started");
  ASSERT_EQ(c.read_stdout_line(), "started");
  std::vector<pid_t> ours;
  for (int i = 0; i < 2; ++i) {
    pid_t worker = std::stoi(c.wait_event("spawn")["pid"]);
    ours.push_back(worker);
    for (pid_t child : children_of(worker)) ours.push_back(child);
  }
  ASSERT_EQ(ours.size(), 6u);
  for (pid_t p : ours) ASSERT_TRUE(process_alive(p)) << p;
  c.signal(SIGKILL);
  EXPECT_EQ(c.wait_exit(), 128 + SIGKILL);
  const auto deadline = Clock::now() + 5s;
  auto any_alive = [&] {
    for (pid_t p : ours)
      if (process_alive(p)) return true;
    return false;
  };
  while (any_alive() && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
  for (pid_t p : ours) EXPECT_FALSE(process_alive(p)) << "pid " << p << " outlived the coordinator";
}

TEST(SuperviseTest, BadCommandLineIsOneLineAndExitTwo) {
  CoordinatorProcess c({"run", "--replicas", "many", "--", "true"});
  EXPECT_EQ(c.wait_exit(), 2);
  EXPECT_EQ(c.stderr_text(), "occasional: --replicas: expected a whole number >= 1, got 'many'\n");
}

}  // namespace
}  // namespace occasional::testing
