#include "supervisor/child_reaper.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <fstream>
#include <optional>
#include <string>

#include "supervisor/guardian.hpp"
#include "supervisor/spawner.hpp"

namespace occasional::supervisor {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// 'R', 'S', 'Z', ... or 0 when there is no such process.
char state_of(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return 0;
  auto close = line.rfind(')');
  return close != std::string::npos && line.size() > close + 2 ? line[close + 2] : 0;
}

bool gone(pid_t pid) {
  const char s = state_of(pid);
  return s == 0 || s == 'Z';
}

std::string read_line(int fd, std::chrono::milliseconds timeout = 5s) {
  std::string line;
  const auto deadline = Clock::now() + timeout;
  char c;
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    if (::read(fd, &c, 1) != 1) break;
    if (c == '\n') return line;
    line.push_back(c);
  }
  return line;
}

class ChildReaperTest : public ::testing::Test {
 protected:
  ChildReaperTest()
      : devnull_(::open("/dev/null", O_WRONLY | O_CLOEXEC)), log_(LogFormat::json, devnull_) {
    ChildReaper::become_subreaper();
  }
  ~ChildReaperTest() override {
    reaper_.reset();
    ::close(devnull_);
  }

  // Spawns `script` under /bin/sh with stdout on a pipe the test reads, and
  // watches it; the exit lands in `exit_`.
  pid_t spawn(const std::string& script) {
    int p[2];
    EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
    out_.reset(p[0]);
    UniqueFd w(p[1]);
    ProcessSpec spec;
    spec.argv = {"/bin/sh", "-c", script};
    spec.stdout_fd = w.get();
    SpawnResult r = spawn_process(spec);
    EXPECT_TRUE(r.ok()) << r.failed_call;
    EXPECT_FALSE(
        reaper_->watch(r.pid, std::move(r.pidfd), [this](const siginfo_t& info) { exit_ = info; }));
    return r.pid;
  }

  template <class Pred>
  bool run_until(Pred pred, std::chrono::milliseconds timeout = 5s) {
    const auto deadline = Clock::now() + timeout;
    while (!pred()) {
      if (Clock::now() >= deadline) return false;
      io_.run_one_for(20ms);
    }
    return true;
  }

  boost::asio::io_context io_;
  int devnull_;
  EventLog log_;
  std::unique_ptr<ChildReaper> reaper_ = std::make_unique<ChildReaper>(io_, log_);
  UniqueFd out_;
  std::optional<siginfo_t> exit_;
};

TEST_F(ChildReaperTest, ReportsTheExitStatusAndReapsTheChild) {
  const pid_t pid = spawn("exit 7");
  ASSERT_TRUE(run_until([&] { return exit_.has_value(); }));
  EXPECT_EQ(exit_->si_code, CLD_EXITED);
  EXPECT_EQ(exit_->si_status, 7);
  EXPECT_EQ(state_of(pid), 0) << "reaped, not a zombie";
  EXPECT_FALSE(reaper_->watching(pid));
}

TEST_F(ChildReaperTest, ExitedSeesAnExitBeforeTheLoopHandlesIt) {
  const pid_t pid = spawn("exit 0");
  const auto deadline = Clock::now() + 5s;
  while (state_of(pid) != 'Z' && Clock::now() < deadline) ::usleep(1000);
  ASSERT_EQ(state_of(pid), 'Z');
  EXPECT_TRUE(reaper_->exited(pid));
  EXPECT_TRUE(reaper_->watching(pid));  // WNOWAIT: not reaped by the look
  ASSERT_TRUE(run_until([&] { return exit_.has_value(); }));
  EXPECT_FALSE(reaper_->exited(pid));
}

TEST_F(ChildReaperTest, SignalsReachOnlyAChildNotYetReaped) {
  const pid_t pid = spawn("echo up; exec sleep 60");
  ASSERT_EQ(read_line(out_.get()), "up");
  EXPECT_FALSE(reaper_->exited(pid));
  EXPECT_FALSE(reaper_->signal(pid, SIGTERM));
  ASSERT_TRUE(run_until([&] { return exit_.has_value(); }));
  EXPECT_EQ(exit_->si_code, CLD_KILLED);
  EXPECT_EQ(exit_->si_status, SIGTERM);
  // Reaped: its pid may be anyone's now, so neither way signals it.
  EXPECT_EQ(reaper_->signal(pid, SIGKILL), std::errc::no_such_process);
  EXPECT_EQ(reaper_->signal_group(pid, SIGKILL), std::errc::no_such_process);
  EXPECT_EQ(reaper_->signal(::getpid(), 0), std::errc::no_such_process);  // never watched
  // A live group leader the reaper never watched, as a reused pid would be:
  // a bare kill(-pid) would reach it, signal_group must not.
  const pid_t other = ::fork();
  if (other == 0) {
    ::setpgid(0, 0);
    for (;;) ::pause();
  }
  ASSERT_GT(other, 0);
  ::setpgid(other, other);  // either side may run first
  EXPECT_EQ(::kill(-other, 0), 0) << "a live group: kill(-pid) reaches it";
  EXPECT_EQ(reaper_->signal_group(other, SIGKILL), std::errc::no_such_process);
  EXPECT_EQ(reaper_->signal(other, SIGKILL), std::errc::no_such_process);
  EXPECT_EQ(::kill(other, 0), 0) << "still alive: nothing was sent to it";
  ::kill(other, SIGKILL);
  ::waitpid(other, nullptr, 0);
}

// A pidfd the loop cannot register (epoll_ctl fails: ENOMEM or ENOSPC in
// life; here an fd number that is not open, EBADF) is an error returned,
// not an exception on the loop, and the child, which nobody would be told
// of, is killed at once with its group.
TEST_F(ChildReaperTest, APidfdTheLoopCannotRegisterIsAnErrorAndTheChildIsKilled) {
  ProcessSpec spec;
  spec.argv = {"/bin/sh", "-c", "exec sleep 60"};
  SpawnResult r = spawn_process(spec);
  ASSERT_TRUE(r.ok()) << r.failed_call;
  r.pidfd.reset();
  const int unused = ::dup(0);
  ASSERT_GE(unused, 0);
  ::close(unused);
  bool told = false;
  std::error_code ec;
  EXPECT_NO_THROW(ec = reaper_->watch(r.pid, UniqueFd(unused),
                                      [&](const siginfo_t&) { told = true; }));
  EXPECT_EQ(ec, std::errc::bad_file_descriptor);
  int status = 0;
  ASSERT_EQ(::waitpid(r.pid, &status, 0), r.pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  EXPECT_EQ(reaper_->signal(r.pid, 0), std::errc::no_such_process) << "not watched";
  io_.poll();
  EXPECT_FALSE(told);
}

TEST_F(ChildReaperTest, WorkersGroupIsKilledWhenItExits) {
  const pid_t pid = spawn("sleep 60 & echo $!; exec sleep 60");
  const pid_t child = std::stoi(read_line(out_.get()));
  EXPECT_FALSE(reaper_->signal_group(pid, 0));
  EXPECT_FALSE(reaper_->signal(pid, SIGKILL));
  ASSERT_TRUE(run_until([&] { return exit_.has_value(); }));
  EXPECT_TRUE(run_until([&] { return gone(child); }));
}

// A worker's child that left its group (setsid) is reparented to us when
// the worker exits and is killed as an orphan; with the kernel's list of
// our children, without walking all of /proc.
TEST_F(ChildReaperTest, OrphanIsKilledWithoutWalkingAllOfProc) {
  // The worker exits only once the orphan has left its group: were it still
  // in it, the group kill at the worker's exit would take it first.
  const pid_t pid = spawn(
      "f=$(mktemp -u); mkfifo $f; setsid sh -c \"echo \\$\\$ > $f; exec sleep 60\" & "
      "read -r p < $f; rm $f; echo $p; exit 0");
  const pid_t orphan = std::stoi(read_line(out_.get()));
  ASSERT_TRUE(run_until([&] { return exit_.has_value(); }));
  ASSERT_TRUE(run_until([&] { return reaper_->orphans_killed() >= 1; }));
  EXPECT_TRUE(run_until([&] { return state_of(orphan) == 0; })) << "killed and reaped";
  EXPECT_GE(reaper_->orphans_reaped(), 1u);
  const std::string list = "/proc/self/task/" + std::to_string(::getpid()) + "/children";
  if (::access(list.c_str(), R_OK) == 0) {
    EXPECT_EQ(reaper_->full_scans(), 0u);
  }
  (void)pid;
}

// A process cloned with CLONE_PARENT is the coordinator's child before its
// spawner reports its pid: while held, such children are neither reaped
// (the pid must stay theirs until pidfd_open) nor killed as orphans.
TEST_F(ChildReaperTest, HeldUnwatchedChildrenAreNeitherReapedNorKilled) {
  reaper_->hold_unwatched();
  const pid_t exited = ::fork();
  if (exited == 0) _exit(0);
  const pid_t alive = ::fork();
  if (alive == 0) {
    ::pause();
    _exit(0);
  }
  const auto deadline = Clock::now() + 5s;
  while (state_of(exited) != 'Z' && Clock::now() < deadline) ::usleep(1000);
  ASSERT_EQ(state_of(exited), 'Z');
  // A watched exit: SIGCHLD handling and an orphan scan both run.
  spawn("exit 0");
  ASSERT_TRUE(run_until([&] { return exit_.has_value(); }));
  for (int i = 0; i < 10; ++i) io_.poll();
  EXPECT_EQ(state_of(exited), 'Z') << "not reaped while held";
  EXPECT_EQ(state_of(alive), 'S') << "not killed while held";
  EXPECT_EQ(reaper_->orphans_reaped(), 0u);
  reaper_->release_unwatched();
  EXPECT_TRUE(run_until([&] { return state_of(exited) == 0; })) << "reaped once released";
  EXPECT_TRUE(run_until([&] { return state_of(alive) == 0; })) << "killed and reaped";
  EXPECT_EQ(reaper_->orphans_killed(), 1u);
}

// Without the children list (older kernels), the walk of /proc happens at
// most once per kFullScanInterval however many workers exit.
TEST_F(ChildReaperTest, WithoutTheChildrenListFullScansAreRateLimited) {
  reaper_->use_children_list(false);
  const auto t0 = Clock::now();
  for (int i = 0; i < 20; ++i) {
    exit_.reset();
    spawn("exit 0");
    ASSERT_TRUE(run_until([&] { return exit_.has_value(); }));
  }
  const auto elapsed = Clock::now() - t0;
  const auto allowed = 1 + elapsed / ChildReaper::kFullScanInterval;
  EXPECT_LE(reaper_->full_scans(), static_cast<uint64_t>(allowed));
}

// The guardian: when the process that started it dies (here a child
// standing in for a SIGKILLed coordinator), every group it was told of is
// killed, including a worker's child, which PR_SET_PDEATHSIG does not cover.
TEST(GuardianTest, KillsKnownGroupsWhenItsCoordinatorDies) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  const pid_t coordinator = ::fork();
  ASSERT_GE(coordinator, 0);
  if (coordinator == 0) {
    Guardian g;
    g.start();
    // The guardian's pid, then the worker's child's, as the worker writes it.
    const std::string line = std::to_string(g.pid()) + "\n";
    if (::write(wr.get(), line.data(), line.size()) < 0) ::_exit(1);
    ProcessSpec spec;
    spec.argv = {"/bin/sh", "-c", "sleep 60 & echo $!; exec sleep 60"};
    spec.stdout_fd = wr.get();
    SpawnResult r = spawn_process(spec);
    if (!r.ok()) ::_exit(1);
    g.watch(r.pid);
    if (::write(wr.get(), "watched\n", 8) < 0) ::_exit(1);
    ::pause();
  }
  wr.reset();
  const pid_t guardian = std::stoi(read_line(rd.get()));
  // The worker's line and "watched" (the guardian has been told of the
  // group), in either order: killing the coordinator before the second
  // would leave a group the guardian never knew.
  std::string first = read_line(rd.get());
  std::string second = read_line(rd.get());
  if (first == "watched") std::swap(first, second);
  ASSERT_EQ(second, "watched");
  const pid_t grandchild = std::stoi(first);
  ASSERT_FALSE(gone(grandchild));
  ASSERT_FALSE(gone(guardian));
  ::kill(coordinator, SIGKILL);
  ::waitpid(coordinator, nullptr, 0);
  const auto deadline = Clock::now() + 5s;
  while (!(gone(grandchild) && gone(guardian)) && Clock::now() < deadline) ::usleep(2000);
  EXPECT_TRUE(gone(grandchild));
  EXPECT_TRUE(gone(guardian)) << "the guardian exits once its work is done";
}

// ps -ef and pgrep -f show the guardian as what it is, not as a second
// coordinator with the same command line.
TEST(GuardianTest, HasACommandLineOfItsOwn) {
  pid_t guardian = -1;
  {
    Guardian g;
    g.start();
    guardian = g.pid();
    std::string cmdline;
    const auto deadline = Clock::now() + 5s;
    const std::string want = "occasional-guardian for " + std::to_string(::getpid());
    while (Clock::now() < deadline) {
      std::ifstream f("/proc/" + std::to_string(guardian) + "/cmdline");
      std::getline(f, cmdline, '\0');
      if (cmdline == want) break;
      ::usleep(2000);
    }
    EXPECT_EQ(cmdline, want);
  }
  // Its pipe closed with `g`: it exits.
  EXPECT_EQ(::waitpid(guardian, nullptr, 0), guardian);
}

}  // namespace
}  // namespace occasional::supervisor
