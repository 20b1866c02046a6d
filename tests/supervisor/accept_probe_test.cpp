#include "supervisor/accept_probe.hpp"

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/supervisor/real_peers.hpp"

namespace occasional::supervisor {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using real_peers::Child;
using real_peers::Listener;

// Whether every thread of `pid` sits in a system call (it has got to where
// it blocks).
bool blocked(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/syscall");
  long nr = -1;
  return static_cast<bool>(in >> nr) && nr >= 0;
}

AcceptProbe probe_until_accepting(pid_t pid, ino_t inode) {
  const auto deadline = Clock::now() + 5s;
  std::error_code error;
  AcceptProbe result = AcceptProbe::not_yet;
  while (Clock::now() < deadline) {
    result = probe_accepting(pid, inode, error);
    if (result != AcceptProbe::not_yet) break;
    ::usleep(2000);  // polling a condition with a deadline, not a wait for an event
  }
  EXPECT_FALSE(error) << error.message();
  return result;
}

TEST(AcceptProbeTest, SeesABlockingAccept) {
  Listener l;
  Child c([&] { ::accept(l.fd, nullptr, nullptr); });
  EXPECT_EQ(probe_until_accepting(c.pid, l.inode), AcceptProbe::accepting);
}

TEST(AcceptProbeTest, SeesPollOnTheListener) {
  Listener l;
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  Child c([&] {
    pollfd p[2] = {{pipe_fds[0], POLLIN, 0}, {l.fd, POLLIN, 0}};
    ::poll(p, 2, -1);
  });
  EXPECT_EQ(probe_until_accepting(c.pid, l.inode), AcceptProbe::accepting);
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

TEST(AcceptProbeTest, SeesSelectOnTheListener) {
  Listener l;
  Child c([&] {
    fd_set read;
    FD_ZERO(&read);
    FD_SET(l.fd, &read);
    ::select(l.fd + 1, &read, nullptr, nullptr, nullptr);
  });
  EXPECT_EQ(probe_until_accepting(c.pid, l.inode), AcceptProbe::accepting);
}

TEST(AcceptProbeTest, SeesEpollWaitOnASetHoldingTheListener) {
  Listener l;
  Child c([&] {
    const int ep = ::epoll_create1(0);
    epoll_event e{};
    e.events = EPOLLIN;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, l.fd, &e);
    ::epoll_wait(ep, &e, 1, -1);
  });
  EXPECT_EQ(probe_until_accepting(c.pid, l.inode), AcceptProbe::accepting);
}

TEST(AcceptProbeTest, SeesAGrandchildAccepting) {
  Listener l;
  // As gunicorn: the main process waits on its workers, which accept.
  Child c([&] {
    const pid_t parent = ::getpid();
    if (::fork() == 0) {
      // Dies with its parent, which the test SIGKILLs.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() == parent) ::accept(l.fd, nullptr, nullptr);
      ::_exit(0);
    }
    ::pause();
  });
  EXPECT_EQ(probe_until_accepting(c.pid, l.inode), AcceptProbe::accepting);
}

TEST(AcceptProbeTest, AProcessWaitingOnAnythingElseIsNotAccepting) {
  Listener l;
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  Child sleeper([&] { ::pause(); });
  Child other_poll([&] {
    pollfd p[2] = {{pipe_fds[0], POLLIN, 0}, {l.fd, POLLOUT, 0}};
    ::poll(p, 2, -1);
  });
  Child other_epoll([&] {
    const int ep = ::epoll_create1(0);
    epoll_event e{};
    e.events = EPOLLIN;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, pipe_fds[0], &e);
    ::epoll_wait(ep, &e, 1, -1);
  });
  for (pid_t pid : {sleeper.pid, other_poll.pid, other_epoll.pid}) {
    const auto deadline = Clock::now() + 5s;
    while (!blocked(pid) && Clock::now() < deadline) ::usleep(1000);
    ASSERT_TRUE(blocked(pid));
    std::error_code error;
    EXPECT_EQ(probe_accepting(pid, l.inode, error), AcceptProbe::not_yet) << pid;
    EXPECT_FALSE(error) << error.message();
  }
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

TEST(AcceptProbeTest, AGoneProcessIsNotAccepting) {
  Listener l;
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  std::error_code error;
  EXPECT_EQ(probe_accepting(pid, l.inode, error), AcceptProbe::not_yet);
}

// The kernel checks ptrace access to /proc/PID/task/TID/syscall when it is
// read, not when it is opened: root without CAP_SYS_PTRACE opens a worker's
// file that belongs to another user (CAP_DAC_OVERRIDE) and read() says EPERM.
// That is a refusal (cannot_tell), not an empty file (not_yet for ever).
TEST(AcceptProbeTest, AReadRefusedByTheKernelIsCannotTell) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run the worker as another user";
  Listener l;
  Child worker([&] {
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) return;
    // Changing uid made it non-dumpable; dumpable, its /proc files are its own
    // (nobody's), so opening them succeeds and only read() is refused.
    ::prctl(PR_SET_DUMPABLE, 1);
    ::accept(l.fd, nullptr, nullptr);
  });
  const auto deadline = Clock::now() + 5s;
  while (!blocked(worker.pid) && Clock::now() < deadline) ::usleep(1000);
  ASSERT_TRUE(blocked(worker.pid));

  // The probe runs in a process that dropped CAP_SYS_PTRACE, as a coordinator
  // started as root in a container without it does.
  int result_pipe[2];
  ASSERT_EQ(::pipe(result_pipe), 0);
  const pid_t prober = ::fork();
  if (prober == 0) {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (::syscall(SYS_capget, &header, data) != 0) ::_exit(10);
    data[CAP_SYS_PTRACE / 32].effective &= ~(1u << (CAP_SYS_PTRACE % 32));
    data[CAP_SYS_PTRACE / 32].permitted &= ~(1u << (CAP_SYS_PTRACE % 32));
    if (::syscall(SYS_capset, &header, data) != 0) ::_exit(11);
    std::error_code error;
    const int r[2] = {static_cast<int>(probe_accepting(worker.pid, l.inode, error)), error.value()};
    ::_exit(::write(result_pipe[1], r, sizeof r) == sizeof r ? 0 : 12);
  }
  ::close(result_pipe[1]);
  int r[2] = {-1, 0};
  const ssize_t n = ::read(result_pipe[0], r, sizeof r);
  ::close(result_pipe[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(prober, &status, 0), prober);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ASSERT_EQ(n, static_cast<ssize_t>(sizeof r));
  EXPECT_EQ(static_cast<AcceptProbe>(r[0]), AcceptProbe::cannot_tell);
  EXPECT_TRUE(r[1] == EPERM || r[1] == EACCES) << r[1];
}

// A probe reads a bounded amount of /proc whatever the worker looks like: a
// worker with more threads than one probe may look at is one it cannot tell
// about (taken as ready), not one it walks for ever on the event loop.
TEST(AcceptProbeTest, AWorkerTooLargeToLookAtIsCannotTell) {
  Listener l;
  constexpr int kThreads = 1100;  // each costs a read of its syscall file at least
  int ready_pipe[2];
  ASSERT_EQ(::pipe(ready_pipe), 0);
  Child c([&] {
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) threads.emplace_back([] { ::pause(); });
    char x = 1;
    (void)!::write(ready_pipe[1], &x, 1);
    ::pause();
  });
  char x = 0;
  ASSERT_EQ(::read(ready_pipe[0], &x, 1), 1);
  ::close(ready_pipe[0]);
  ::close(ready_pipe[1]);
  std::error_code error;
  EXPECT_EQ(probe_accepting(c.pid, l.inode, error), AcceptProbe::cannot_tell);
  EXPECT_EQ(error, std::errc::value_too_large);
}

}  // namespace
}  // namespace occasional::supervisor
