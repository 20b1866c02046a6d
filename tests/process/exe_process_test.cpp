// Issue 22 point 3: a program started by exe with an owner is a process of
// the system: an address, its exit reaching monitors as a DOWN with the OS
// status, and its process group killed when its owner dies.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <optional>
#include <string>

#include "tests/process/process_testing.hpp"
#include "workers/exe.hpp"
#include "workers/process.hpp"

namespace occasional {
namespace {

using namespace std::chrono_literals;
using testing::field;
using testing::kind;
using testing::kWait;
using testing::run_system;
using testing::wait_down;

bool gone(pid_t pid) {
  struct stat st;
  return ::stat(("/proc/" + std::to_string(pid)).c_str(), &st) != 0;
}

TEST(ExeProcess, AnInteractedProgramsExitReachesItsMonitorsWithTheOsStatus) {
  run_system([](Process& p) {
    exe::InteractOptions o;
    o.owner = &p;
    exe::Interaction i = exe::interact({"sh", "-c", "read x; exit 3"}, o);
    ASSERT_TRUE(i.address());
    const Reference m = p.monitor(*i.address());
    // Another process can monitor it too: it is a process like any other.
    auto [watcher, watcher_monitor] =
        p.spawn_monitor([a = *i.address(), zero = p.self()](Process& w) {
          const Reference r = w.monitor(a);
          w.send(zero, "monitoring");
          std::optional<Map> reason = wait_down(w, r);
          EXPECT_EQ(kind(reason), "exit_code");
          EXPECT_EQ(field(reason, "code"), "3");
        });
    ASSERT_TRUE(p.receive([](const Value& v) { return v == Value("monitoring"); }, kWait));
    ASSERT_TRUE(i.send("go"));
    EXPECT_EQ(i.wait(kWait).describe(), "exited 3");
    std::optional<Map> reason = wait_down(p, m);
    EXPECT_EQ(kind(reason), "exit_code") << Value(*reason).to_string();
    EXPECT_EQ(field(reason, "code"), "3");
    EXPECT_EQ(kind(wait_down(p, watcher_monitor)), "normal");
  });
}

TEST(ExeProcess, AProgramKilledFromOutsideIsDownWithTheSignal) {
  run_system([](Process& p) {
    exe::InteractOptions o;
    o.owner = &p;
    exe::Interaction i = exe::interact({"sleep", "1000"}, o);
    ASSERT_TRUE(i.address());
    const Reference m = p.monitor(*i.address());
    ASSERT_EQ(::kill(i.pid(), SIGKILL), 0);
    EXPECT_EQ(i.wait(kWait).describe(), "killed by SIGKILL");
    std::optional<Map> reason = wait_down(p, m);
    EXPECT_EQ(kind(reason), "signal");
    EXPECT_EQ(field(reason, "signal"), "SIGKILL");
  });
}

TEST(ExeProcess, RunAndPipelineGiveEachProgramAnAddress) {
  run_system([](Process& p) {
    exe::Options o;
    o.owner = &p;
    exe::Result r = exe::run({"sh", "-c", "echo hi"}, o);
    EXPECT_EQ(r.out.bytes, "hi\n");
    ASSERT_TRUE(r.status.address);
    // Reaped and reported before run() returned: the address is dead.
    std::optional<Map> after = wait_down(p, p.monitor(*r.status.address));
    EXPECT_EQ(kind(after), "noproc");
    exe::PipelineResult pl = exe::pipeline({{"printf", "b\\na\\n"}, {"sort"}}, o);
    EXPECT_EQ(pl.out.bytes, "a\nb\n");
    ASSERT_EQ(pl.stages.size(), 2u);
    ASSERT_TRUE(pl.stages[0].address && pl.stages[1].address);
    EXPECT_NE(*pl.stages[0].address, *pl.stages[1].address);
    // Without an owner: no address, as before.
    EXPECT_FALSE(exe::run({"true"}).status.address);
    // Only a child of the caller can be adopted.
    EXPECT_FALSE(p.adopt(1));
  });
}

// Its owner SIGKILLed mid-interaction: the coordinator kills the program's
// process group, its monitors get DOWN, and nothing is left behind.
TEST(ExeProcess, WhenItsOwnerDiesTheProgramsGroupIsKilled) {
  run_system([](Process& p) {
    const Address zero = p.self();
    auto [owner, owner_monitor] = p.spawn_monitor([zero](Process& o) {
      exe::InteractOptions options;
      options.owner = &o;
      // A group of two: sh and its child sleep.
      exe::Interaction i = exe::interact({"sh", "-c", "sleep 1000 & echo $!; wait"}, options);
      std::optional<exe::Interaction::Match> line = i.expect("([0-9]+)\r?\n", kWait);
      ASSERT_TRUE(line && i.address());
      o.send(zero, tuple("program", *i.address(), static_cast<int64_t>(i.pid()),
                         static_cast<int64_t>(std::stoi(line->groups[0])),
                         static_cast<int64_t>(::getpid())));
      o.receive();  // until killed
    });
    std::optional<Value> got = p.receive(
        [](const Value& v) { return v.as_tuple() && (*v.as_tuple())[0] == Value("program"); },
        kWait);
    ASSERT_TRUE(got);
    const Tuple& t = *got->as_tuple();
    const Address program = *t[1].as_address();
    const pid_t sh = static_cast<pid_t>(*t[2].as_int());
    const pid_t sleeper = static_cast<pid_t>(*t[3].as_int());
    const pid_t owner_pid = static_cast<pid_t>(*t[4].as_int());
    const Reference m = p.monitor(program);
    ASSERT_EQ(::kill(owner_pid, SIGKILL), 0);
    EXPECT_EQ(field(wait_down(p, owner_monitor), "signal"), "SIGKILL");
    std::optional<Map> reason = wait_down(p, m);
    EXPECT_EQ(kind(reason), "signal");
    EXPECT_EQ(field(reason, "signal"), "SIGKILL");
    EXPECT_EQ(field(reason, "detail"), "its owner exited");
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    while ((!gone(sh) || !gone(sleeper)) && std::chrono::steady_clock::now() < deadline)
      p.receive([](const Value&) { return false; }, 10ms);  // the subreaper reaps them
    EXPECT_TRUE(gone(sh)) << sh;
    EXPECT_TRUE(gone(sleeper)) << sleeper;
  });
}

size_t count_fds(pid_t pid) {
  size_t n = 0;
  if (DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
  }
  return n;
}

// 1000 owned runs: neither the owner nor the coordinator keeps an fd, and
// no child is left unreaped.
TEST(ExeProcess, AThousandOwnedRunsLeaveNoFdAndNoZombie) {
  run_system([](Process& p) {
    exe::Options o;
    o.owner = &p;
    // The first run makes what the process keeps (its epoll set).
    ASSERT_TRUE(exe::run({"true"}, o).ok());
    const pid_t coordinator = ::getppid();
    const size_t own_before = count_fds(::getpid());
    const size_t coordinator_before = count_fds(coordinator);
    for (int k = 0; k < 1000; ++k) {
      exe::Result r = exe::run({"true"}, o);
      ASSERT_TRUE(r.ok()) << r.status.describe();
      ASSERT_TRUE(r.status.address);
    }
    EXPECT_EQ(count_fds(::getpid()), own_before);
    // Its pidfds are closed as each exit is reported (the report is in the
    // coordinator's socket before run() returns; a request waits for it).
    p.whereis("nobody");
    EXPECT_LE(count_fds(coordinator), coordinator_before);  // a leak would be 1000
    siginfo_t info{};
    EXPECT_EQ(::waitid(P_ALL, 0, &info, WEXITED | WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD);
  });
}

}  // namespace
}  // namespace occasional
