#include "supervisor/spawner.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace occasional::supervisor {
namespace {

// Runs `script` under sh with stdout to a pipe; returns what it printed and its status.
struct Ran {
  std::string out;
  int status = -1;
};

Ran run_sh(const std::string& script, std::vector<int> pass_fds = {}) {
  int p[2];
  EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  ProcessSpec spec;
  spec.argv = {"/bin/sh", "-c", script};
  spec.stdout_fd = wr.get();
  spec.pass_fds = std::move(pass_fds);
  SpawnResult r = spawn_process(spec);
  EXPECT_TRUE(r.ok()) << r.failed_call << ": " << r.error;
  wr.reset();
  Ran ran;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(rd.get(), buf, sizeof buf)) > 0) ran.out.append(buf, static_cast<size_t>(n));
  ::waitpid(r.pid, &ran.status, 0);
  return ran;
}

TEST(SpawnerTest, ChildSeesOnlyStandardFdsAndPassedOnes) {
  // A leaked fd of ours: not CLOEXEC, so only our own fd hygiene keeps it out.
  int leak = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(leak, 0);
  int passed = ::open("/dev/zero", O_RDONLY | O_CLOEXEC);
  Ran ran = run_sh("ls /proc/self/fd | sort -n | tr '\\n' ' '", {passed});
  ::close(leak);
  ::close(passed);
  // ls itself opens one fd to read the directory (the highest number).
  std::istringstream in(ran.out);
  std::vector<int> fds;
  for (int fd; in >> fd;) fds.push_back(fd);
  ASSERT_GE(fds.size(), 4u) << ran.out;
  fds.pop_back();
  EXPECT_EQ(fds, (std::vector<int>{0, 1, 2, 3})) << ran.out;
  // fd 3 is the one we passed.
  Ran target = run_sh("readlink /proc/self/fd/3", {::open("/dev/zero", O_RDONLY | O_CLOEXEC)});
  EXPECT_EQ(target.out, "/dev/zero\n");
}

TEST(SpawnerTest, ChildStartsWithTheWorkerFdLimitNotOurs) {
  rlimit ours{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &ours), 0);
  ASSERT_GT(ours.rlim_max, 777u);
  set_worker_fd_limit(777);
  Ran lowered = run_sh("ulimit -n");
  // Back to what children inherit: our own soft limit.
  set_worker_fd_limit(ours.rlim_cur);
  EXPECT_EQ(lowered.out, "777\n");
  Ran inherited = run_sh("ulimit -n");
  EXPECT_EQ(inherited.out, std::to_string(ours.rlim_cur) + "\n");
}

TEST(SpawnerTest, ChildHasEmptyMaskDefaultDispositionsAndOwnGroup) {
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  ::pthread_sigmask(SIG_BLOCK, &block, &old);
  auto previous = ::signal(SIGUSR2, SIG_IGN);
  Ran ran = run_sh(
      "grep -E '^(SigBlk|SigIgn):' /proc/self/status; echo pgid=$(cut -d' ' -f5 /proc/self/stat) "
      "pid=$$");
  ::signal(SIGUSR2, previous);
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  EXPECT_NE(ran.out.find("SigBlk:\t0000000000000000"), std::string::npos) << ran.out;
  EXPECT_NE(ran.out.find("SigIgn:\t0000000000000000"), std::string::npos) << ran.out;
  auto pgid = ran.out.substr(ran.out.find("pgid=") + 5);
  auto pid = ran.out.substr(ran.out.find("pid=", ran.out.find("pgid=") + 5) + 4);
  EXPECT_EQ(std::stoi(pgid), std::stoi(pid)) << ran.out;
}

TEST(SpawnerTest, MissingExecutableFailsAtOnceWithErrno) {
  ProcessSpec spec;
  spec.argv = {"/nonexistent/occasional-test-binary"};
  SpawnResult r = spawn_process(spec);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error, ENOENT);
  EXPECT_STREQ(r.failed_call, "execve");
  // No child is left over to reap.
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST(SpawnerTest, NameNotInPathFailsWithEnoent) {
  ProcessSpec spec;
  spec.argv = {"occasional-no-such-command-anywhere"};
  SpawnResult r = spawn_process(spec);
  EXPECT_EQ(r.error, ENOENT);
}

TEST(SpawnerTest, NonExecutableFileFailsWithEacces) {
  char path[] = "/tmp/occasional-noexec-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  ProcessSpec spec;
  spec.argv = {path};
  SpawnResult r = spawn_process(spec);
  ::unlink(path);
  EXPECT_EQ(r.error, EACCES);
  EXPECT_STREQ(r.failed_call, "execve");
}

TEST(SpawnerTest, BadWorkingDirectoryIsReportedAsChdir) {
  ProcessSpec spec;
  spec.argv = {"/bin/true"};
  spec.cwd = "/nonexistent-dir-for-occasional";
  SpawnResult r = spawn_process(spec);
  EXPECT_EQ(r.error, ENOENT);
  EXPECT_STREQ(r.failed_call, "chdir");
}

TEST(SpawnerTest, EnvironmentOverridesAndCwdApply) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  ProcessSpec spec;
  spec.argv = {"sh", "-c", "echo \"$OCC_TEST_VAR $(pwd)\""};
  spec.env = {"OCC_TEST_VAR=hello"};
  spec.cwd = "/tmp";
  spec.stdout_fd = wr.get();
  SpawnResult r = spawn_process(spec);
  ASSERT_TRUE(r.ok());
  wr.reset();
  char buf[256] = {};
  ssize_t n = ::read(rd.get(), buf, sizeof buf - 1);
  ::waitpid(r.pid, nullptr, 0);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf), "hello /tmp\n");
}

TEST(SpawnerTest, FindExecutableSearchesPath) {
  EXPECT_EQ(find_executable("sh", "/nonexistent:/bin"), "/bin/sh");
  EXPECT_EQ(find_executable("./x", "/bin"), "./x");
  EXPECT_EQ(find_executable("no-such-thing-xyz", "/bin:/usr/bin"), "");
}

}  // namespace
}  // namespace occasional::supervisor
