// The coordinator as PID 1 of a PID namespace (as in a container), without
// a container: unshare --pid --fork --mount-proc.
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "tests/integration/coordinator_process.hpp"

namespace occasional::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::vector<std::string> kUnshare = {"unshare", "--pid", "--fork", "--mount-proc"};

std::string cmdline(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
  std::string s((std::istreambuf_iterator<char>(in)), {});
  for (char& c : s)
    if (c == '\0') c = ' ';
  return s;
}

bool exists(pid_t pid) {
  return ::access(("/proc/" + std::to_string(pid)).c_str(), F_OK) == 0;
}

// The coordinator: the only child of unshare.
pid_t coordinator_of(pid_t unshare) {
  const auto deadline = Clock::now() + 5s;
  while (Clock::now() < deadline) {
    auto kids = children_of(unshare);
    if (kids.size() == 1) return kids[0];
    std::this_thread::sleep_for(5ms);
  }
  return -1;
}

TEST(Pid1Test, ReapsOrphanedGrandchildrenAndStopsCleanlyOnSigterm) {
  // The worker leaves a grandchild behind (double fork): it is reparented to
  // PID 1, the coordinator, which must reap it when it exits.
  CoordinatorProcess c(kUnshare, {"run", "--admin", "off", "--", "sh", "-c",
                                  "(sleep 0.4 &); echo started; exec sleep 1000"});
  const pid_t coordinator = coordinator_of(c.pid());
  ASSERT_GT(coordinator, 0);
  Fields spawn = c.wait_event("spawn");
  EXPECT_EQ(c.read_stdout_line(), "started");

  pid_t orphan = -1;
  auto deadline = Clock::now() + 5s;
  while (orphan < 0 && Clock::now() < deadline) {
    for (pid_t k : children_of(coordinator))
      if (cmdline(k) == "sleep 0.4 ") orphan = k;
    std::this_thread::sleep_for(2ms);
  }
  ASSERT_GT(orphan, 0) << "the grandchild was not reparented to the coordinator";
  deadline = Clock::now() + 5s;
  while (exists(orphan) && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(exists(orphan)) << "the orphan was not reaped (a zombie of PID 1)";

  ASSERT_EQ(::kill(coordinator, SIGTERM), 0);
  c.wait_event("coordinator_exit");
  EXPECT_EQ(c.wait_exit(), 0);  // unshare exits with its child's status
  EXPECT_EQ(c.events("exit").size(), 1u);
}

TEST(Pid1Test, AFailedServiceEndsPid1WithStatus1) {
  CoordinatorProcess c(kUnshare,
                       {"run", "--admin", "off", "--restart", "on-failure", "--max-restarts", "0",
                        "--cooloff", "0", "--", "sh", "-c", "exit 7"});
  c.wait_event("service_failed");
  EXPECT_EQ(c.wait_exit(), 1);
}

}  // namespace
}  // namespace occasional::testing
