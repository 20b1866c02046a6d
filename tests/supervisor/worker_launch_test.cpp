#include "supervisor/worker_launch.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "tests/supervisor/real_peers.hpp"

namespace occasional::supervisor {
namespace {

// A service running `script` under sh, its stdout to a pipe the test reads.
struct Launched {
  SpawnResult launch;
  std::string out;  // all it printed, once it has exited
  int status = -1;
};

Launched launch_sh(
    ServiceConfig config, const std::string& script, int replica = 0,
    const std::string& notify_socket = {},
    const AdoptControl& adopt = [](UniqueFd) { return std::error_code(); },
    int process_channel = -1) {
  int p[2];
  EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  config.process.argv = {"/bin/sh", "-c", script};
  config.process.stdout_fd = wr.get();
  Launched l;
  l.launch = launch_worker(config, replica, notify_socket, adopt, process_channel);
  wr.reset();
  // EOF once the child and what it started have exited (or if it never ran).
  char buf[4096];
  ssize_t n;
  while ((n = ::read(rd.get(), buf, sizeof buf)) > 0) l.out.append(buf, static_cast<size_t>(n));
  if (l.launch.ok()) ::waitpid(l.launch.pid, &l.status, 0);
  return l;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

ServiceConfig config(workers::WorkerMode mode) {
  ServiceConfig c;
  c.name = "web";
  c.mode = mode;
  return c;
}

TEST(WorkerLaunchTest, EveryWorkerKnowsItsServiceAndReplica) {
  Launched l = launch_sh(config(workers::WorkerMode::plain),
                         "echo \"$OCCASIONAL_SERVICE $OCCASIONAL_REPLICA "
                         "${OCCASIONAL_CONTROL_FD-none} ${LISTEN_FDS-none}\"",
                         5);
  ASSERT_TRUE(l.launch.ok()) << l.launch.failed_call;
  EXPECT_GT(l.launch.pid, 0);
  EXPECT_TRUE(l.launch.pidfd);
  EXPECT_EQ(l.out, "web 5 none none\n");
  EXPECT_TRUE(WIFEXITED(l.status) && WEXITSTATUS(l.status) == 0);
}

// handoff: fd 3 is the worker's blocking end of a SEQPACKET pair whose other,
// non-blocking end the caller adopted before the fork.
TEST(WorkerLaunchTest, AHandoffWorkerTalksToTheAdoptedEndOnFd3) {
  UniqueFd ours;
  Launched l = launch_sh(config(workers::WorkerMode::handoff),
                         "echo \"$OCCASIONAL_CONTROL_FD\"; "
                         "sed -n 's/^flags:[[:space:]]*//p' /proc/self/fdinfo/3; "
                         "printf hello >&3",
                         0, {}, [&](UniqueFd control) {
                           ours = std::move(control);
                           return std::error_code();
                         });
  ASSERT_TRUE(l.launch.ok()) << l.launch.failed_call;
  ASSERT_TRUE(ours);
  const std::vector<std::string> out = lines(l.out);
  ASSERT_EQ(out.size(), 2u) << l.out;
  EXPECT_EQ(out[0], "3");
  EXPECT_EQ(std::stoul(out[1], nullptr, 8) & O_NONBLOCK, 0u) << "the worker's end blocks";
  EXPECT_NE(::fcntl(ours.get(), F_GETFL) & O_NONBLOCK, 0) << "ours does not";
  EXPECT_NE(::fcntl(ours.get(), F_GETFD) & FD_CLOEXEC, 0);
  int type = 0;
  socklen_t len = sizeof type;
  ASSERT_EQ(::getsockopt(ours.get(), SOL_SOCKET, SO_TYPE, &type, &len), 0);
  EXPECT_EQ(type, SOCK_SEQPACKET);
  char buf[16] = {};
  EXPECT_EQ(::recv(ours.get(), buf, sizeof buf, 0), 5);
  EXPECT_STREQ(buf, "hello");
}

// A control socket the loop cannot take fails the launch before the fork.
TEST(WorkerLaunchTest, AControlSocketNotAdoptedStartsNoProcess) {
  Launched l = launch_sh(config(workers::WorkerMode::handoff), "echo ran", 0, {}, [](UniqueFd) {
    return std::make_error_code(std::errc::too_many_files_open);
  });
  EXPECT_FALSE(l.launch.ok());
  EXPECT_EQ(l.launch.error, EMFILE);
  EXPECT_STREQ(l.launch.failed_call, "register_link");
  EXPECT_EQ(l.launch.pid, -1);
  EXPECT_EQ(l.out, "") << "no process ran";
}

// listen_fds: systemd's socket activation, with the listener itself as fd 3.
TEST(WorkerLaunchTest, AListenFdsWorkerGetsTheListenerAsSystemdWould) {
  real_peers::Listener listener;

  ServiceConfig c = config(workers::WorkerMode::listen_fds);
  c.listen_fd = listener.fd;
  c.listener_name = "public";
  c.watchdog = std::chrono::milliseconds(1500);
  Launched l = launch_sh(c,
                         "echo \"$LISTEN_FDS $LISTEN_FDNAMES $NOTIFY_SOCKET $WATCHDOG_USEC\"; "
                         "echo \"$LISTEN_PID\"; echo $$; readlink /proc/self/fd/3",
                         1, "@notify-test");
  ASSERT_TRUE(l.launch.ok()) << l.launch.failed_call;
  const std::vector<std::string> out = lines(l.out);
  ASSERT_EQ(out.size(), 4u) << l.out;
  EXPECT_EQ(out[0], "1 public @notify-test 1500000");
  EXPECT_EQ(out[1], std::to_string(l.launch.pid));
  EXPECT_EQ(out[2], std::to_string(l.launch.pid));
  EXPECT_EQ(out[3], "socket:[" + std::to_string(listener.inode) + "]");
}

// A service worker's process channel (ProcessHub::open_worker's child end)
// comes after what its mode gives: fd 3 in plain mode, 4 after the handoff
// control socket or the listener, named by OCCASIONAL_PROCESS_FD; the
// worker holds no other fd.
TEST(WorkerLaunchTest, TheProcessChannelFollowsTheModesFds) {
  real_peers::Listener listener;
  for (workers::WorkerMode mode : {workers::WorkerMode::plain, workers::WorkerMode::handoff,
                                   workers::WorkerMode::listen_fds}) {
    SCOPED_TRACE(workers::worker_mode_name(mode));
    int pair[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
    UniqueFd hub_end(pair[0]), worker_end(pair[1]);
    struct stat st {};
    ASSERT_EQ(::fstat(worker_end.get(), &st), 0);
    ServiceConfig c = config(mode);
    c.listen_fd = listener.fd;
    c.listener_name = "public";
    UniqueFd control;
    Launched l = launch_sh(
        c,
        "n=$OCCASIONAL_PROCESS_FD; echo $n; readlink /proc/self/fd/$n; "
        "ls /proc/self/fd | sort -n | tr '\\n' ' '; echo; printf hi >&$n",
        0, {},
        [&](UniqueFd theirs) {
          control = std::move(theirs);
          return std::error_code();
        },
        worker_end.get());
    worker_end.reset();
    ASSERT_TRUE(l.launch.ok()) << l.launch.failed_call;
    const std::vector<std::string> out = lines(l.out);
    ASSERT_EQ(out.size(), 3u) << l.out;
    const std::string fd = mode == workers::WorkerMode::plain ? "3" : "4";
    EXPECT_EQ(out[0], fd);
    EXPECT_EQ(out[1], "socket:[" + std::to_string(st.st_ino) + "]");
    // ls itself opens one more fd for the directory it lists.
    const std::string expected = mode == workers::WorkerMode::plain ? "0 1 2 3 4 " : "0 1 2 3 4 5 ";
    EXPECT_EQ(out[2], expected);
    char buf[8] = {};
    EXPECT_EQ(::recv(hub_end.get(), buf, sizeof buf, MSG_DONTWAIT), 2);
    EXPECT_STREQ(buf, "hi");
  }
}

TEST(WorkerLaunchTest, NoNotifySocketAndNoWatchdogSetNeither) {
  const char* saved_notify = std::getenv("NOTIFY_SOCKET");
  const char* saved_watchdog = std::getenv("WATCHDOG_USEC");
  if (saved_notify || saved_watchdog) GTEST_SKIP() << "the test's own environment sets them";
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener);
  ServiceConfig c = config(workers::WorkerMode::listen_fds);
  c.listen_fd = listener.get();
  c.listener_name = "main";
  Launched l = launch_sh(c, "echo \"${NOTIFY_SOCKET-unset} ${WATCHDOG_USEC-unset}\"");
  ASSERT_TRUE(l.launch.ok()) << l.launch.failed_call;
  EXPECT_EQ(l.out, "unset unset\n");
}

TEST(WorkerLaunchTest, AFailedExecIsTheWorkersFailure) {
  ServiceConfig c = config(workers::WorkerMode::plain);
  c.process.argv = {"/nonexistent/worker"};
  SpawnResult launch = launch_worker(c, 0, {}, {});
  EXPECT_FALSE(launch.ok());
  EXPECT_EQ(launch.error, ENOENT);
  EXPECT_STREQ(launch.failed_call, "execve");
  EXPECT_FALSE(coordinator_exhausted(launch.error, launch.failed_call));
}

// The coordinator's own shortage defers a spawn; the worker's failures count.
TEST(WorkerLaunchTest, OnlyTheCoordinatorsOwnShortageIsExhaustion) {
  for (const char* call :
       {"socketpair", "pipe2", "clone", "fork", "pidfd_open", "register_link", "register_pidfd"})
    for (int error : {EMFILE, ENFILE, ENOMEM, EAGAIN, ENOSPC})
      EXPECT_TRUE(coordinator_exhausted(error, call)) << call << " " << error;
  EXPECT_FALSE(coordinator_exhausted(EACCES, "socketpair"));
  EXPECT_FALSE(coordinator_exhausted(EMFILE, "execve"));
  EXPECT_FALSE(coordinator_exhausted(ENOMEM, "chdir"));
}

}  // namespace
}  // namespace occasional::supervisor
