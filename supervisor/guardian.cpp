#include "supervisor/guardian.hpp"

#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace occasional::supervisor {
namespace {

struct Record {
  char op;  // '+' watch, '-' forget
  pid_t pgid;
};

// Shows "occasional-guardian for PID" in ps -ef and pgrep -f rather than the
// coordinator's command line, which a fork inherits: the kernel reads
// /proc/self/cmdline from the argv strings in our memory (arg_start ..
// arg_end in /proc/self/stat), so they are overwritten in place, cut to fit.
void retitle(pid_t coordinator) {
  char stat[1024];
  int fd = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = ::read(fd, stat, sizeof stat - 1);
  ::close(fd);
  if (n <= 0) return;
  stat[n] = '\0';
  const char* p = std::strrchr(stat, ')');
  if (!p) return;
  // Field 3 (state) is the first after ')'; arg_start and arg_end are 48 and 49.
  unsigned long long field = 0, start = 0, end = 0;
  for (int i = 3; i <= 49 && *p; ++i) {
    while (*p == ' ' || *p == ')') ++p;
    field = std::strtoull(p, nullptr, 10);
    if (i == 48) start = field;
    if (i == 49) end = field;
    while (*p && *p != ' ') ++p;
  }
  if (start == 0 || end <= start) return;
  char* args = reinterpret_cast<char*>(static_cast<uintptr_t>(start));
  const size_t room = static_cast<size_t>(end - start);
  char title[64];
  std::snprintf(title, sizeof title, "occasional-guardian for %d", static_cast<int>(coordinator));
  std::memset(args, 0, room);
  std::memcpy(args, title, std::min(room - 1, std::strlen(title)));
}

[[noreturn]] void guardian_main(int fd, pid_t coordinator) {
  ::prctl(PR_SET_NAME, "occasional-grd");
  retitle(coordinator);
  ::setpgid(0, 0);
  // The coordinator's handlers (the loop's signal pipe) mean nothing here.
  for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2})
    ::signal(sig, SIG_IGN);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // Keep only stderr and the pipe: listeners and the loop's fds belong to the
  // coordinator alone.
  ::dup2(fd, 3);
  ::close_range(4, ~0U, 0);
  ::close(0);
  ::close(1);
  std::unordered_set<pid_t> groups;
  Record r;
  for (;;) {
    ssize_t n = ::read(3, &r, sizeof r);
    if (n < 0 && errno == EINTR) continue;
    if (n != static_cast<ssize_t>(sizeof r)) break;
    if (r.op == '+')
      groups.insert(r.pgid);
    else
      groups.erase(r.pgid);
  }
  for (pid_t pgid : groups) ::kill(-pgid, SIGKILL);
  _exit(0);
}

}  // namespace

std::error_code Guardian::start(const char*& failed_call) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    failed_call = "pipe2";
    return {errno, std::system_category()};
  }
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  const pid_t coordinator = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    failed_call = "fork";
    return {errno, std::system_category()};
  }
  if (pid == 0) guardian_main(read_end.get(), coordinator);
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    const int error = errno;
    // Before the write end closes: at EOF the new guardian would kill every
    // group it knows (none yet, but it must not outlive this failure).
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    failed_call = "pidfd_open";
    return {error, std::system_category()};
  }
  pid_ = pid;
  pidfd_.reset(pidfd);
  pipe_ = std::move(write_end);
  // A restarted guardian learns every group the previous one knew.
  for (pid_t pgid : groups_) send('+', pgid);
  return {};
}

void Guardian::start() {
  const char* call = "";
  if (std::error_code ec = start(call))
    throw std::runtime_error(std::string(call) +
                             "() failed while starting the guardian: " + ec.message());
}

void Guardian::adopt(Carried carried) {
  pid_ = carried.pid;
  pipe_ = std::move(carried.pipe);
  pidfd_ = std::move(carried.pidfd);
  groups_.clear();
  groups_.insert(carried.groups.begin(), carried.groups.end());
}

void Guardian::watch(pid_t pgid) {
  groups_.insert(pgid);
  send('+', pgid);
}

void Guardian::forget(pid_t pgid) {
  groups_.erase(pgid);
  send('-', pgid);
}

void Guardian::send(char op, pid_t pgid) {
  if (!pipe_) return;
  Record r{op, pgid};
  // Records are smaller than PIPE_BUF, so each write is atomic.
  ssize_t n;
  do {
    n = ::write(pipe_.get(), &r, sizeof r);
  } while (n < 0 && errno == EINTR);
}

}  // namespace occasional::supervisor
