#include "supervisor/spawner.hpp"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sched.h>
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

extern char** environ;

namespace occasional::supervisor {
namespace {

// What the child writes to the CLOEXEC pipe when a step before or at exec fails.
struct ChildFailure {
  int error;
  int step;
};

constexpr const char* kSteps[] = {"setpgid",
                                  "prctl(PR_SET_PDEATHSIG)",
                                  "setrlimit(RLIMIT_NOFILE)",
                                  "dup",
                                  "dup2",
                                  "chdir",
                                  "close_range",
                                  "execve"};
enum Step { kSetpgid, kPdeathsig, kFdLimit, kDup, kDup2, kChdir, kCloseRange, kExecve };

// The soft fd limit workers start with; kInherit: the coordinator's own.
constexpr rlim_t kInherit = ~rlim_t{0} - 1;
rlim_t worker_soft_fd_limit = kInherit;

[[noreturn]] void child_fail(int report_fd, Step step) {
  ChildFailure failure{errno, step};
  // Nothing useful can be done if this write fails: the parent then sees EOF
  // and a child that exited with 127, which it reports as an exit.
  [[maybe_unused]] auto n = ::write(report_fd, &failure, sizeof failure);
  _exit(127);
}

std::vector<std::string> merged_environment(const std::vector<std::string>& overrides) {
  std::map<std::string, std::string> by_key;
  std::vector<std::string> order;
  auto put = [&](const std::string& entry) {
    auto eq = entry.find('=');
    std::string key = entry.substr(0, eq);
    if (!by_key.contains(key)) order.push_back(key);
    by_key[key] = entry;
  };
  // What the coordinator itself was given for socket activation and
  // notification is not the worker's: the spec adds the worker's own.
  static constexpr std::string_view kNotInherited[] = {
      "LISTEN_PID=",    "LISTEN_FDS=",    "LISTEN_FDNAMES=",
      "NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID="};
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry(*e);
    bool skip = false;
    for (auto prefix : kNotInherited) skip = skip || entry.starts_with(prefix);
    if (!skip) put(*e);
  }
  for (const auto& entry : overrides) put(entry);
  std::vector<std::string> out;
  out.reserve(order.size());
  for (const auto& key : order) out.push_back(by_key[key]);
  return out;
}

std::vector<char*> c_array(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

std::string path_of(const std::vector<std::string>& env) {
  for (const auto& entry : env)
    if (entry.starts_with("PATH=")) return entry.substr(5);
  return "/usr/local/bin:/usr/bin:/bin";
}

// Runs in the cloned child, which shares the parent's memory until exec: only
// async-signal-safe calls, no allocation, no writes to shared state.
// Writes the decimal form of `value` at `out` (room for 11 bytes), NUL-terminated.
void write_decimal(char* out, long value) {
  char digits[12];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value > 0 && n < 11);
  while (n > 0) *out++ = digits[--n];
  *out = '\0';
}

[[noreturn]] void exec_child(const ProcessSpec& spec, const char* file, char* const* argv,
                             char* const* envp, int report_fd, pid_t parent, char* listen_pid,
                             const rlimit* fd_limit) {
  if (::setpgid(0, 0) != 0) child_fail(report_fd, kSetpgid);
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(report_fd, kPdeathsig);
  // The parent may have died before PDEATHSIG was armed; then nobody watches us.
  if (::getppid() != parent) _exit(127);

  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
  if (fd_limit && ::setrlimit(RLIMIT_NOFILE, fd_limit) != 0) child_fail(report_fd, kFdLimit);

  // Move every fd we keep above all the numbers we are about to fill, so that
  // no dup2 overwrites a source still needed.
  const int wanted[3] = {spec.stdin_fd, spec.stdout_fd, spec.stderr_fd};
  const int npass = static_cast<int>(spec.pass_fds.size());
  int high = 3 + npass;
  for (int fd : wanted) high = std::max(high, fd + 1);
  for (int fd : spec.pass_fds) high = std::max(high, fd + 1);
  high = std::max(high, report_fd + 1);

  int report = ::fcntl(report_fd, F_DUPFD_CLOEXEC, high);
  if (report < 0) child_fail(report_fd, kDup);
  int moved_std[3];
  for (int i = 0; i < 3; ++i) {
    moved_std[i] = ::fcntl(wanted[i], F_DUPFD_CLOEXEC, high);
    if (moved_std[i] < 0) child_fail(report, kDup);
  }
  // pass_fds are few (a control socket, a listener); a fixed bound keeps this
  // free of allocation.
  int moved_pass[16];
  if (npass > 16) {
    errno = EMFILE;
    child_fail(report, kDup);
  }
  for (int i = 0; i < npass; ++i) {
    moved_pass[i] = ::fcntl(spec.pass_fds[i], F_DUPFD_CLOEXEC, high);
    if (moved_pass[i] < 0) child_fail(report, kDup);
  }
  for (int i = 0; i < 3; ++i)
    if (::dup2(moved_std[i], i) < 0) child_fail(report, kDup2);
  for (int i = 0; i < npass; ++i)
    if (::dup2(moved_pass[i], 3 + i) < 0) child_fail(report, kDup2);
  // Everything else closes at exec; the report pipe must live until then.
  if (::close_range(3 + npass, ~0U, CLOSE_RANGE_CLOEXEC) != 0) child_fail(report, kCloseRange);

  if (!spec.cwd.empty() && ::chdir(spec.cwd.c_str()) != 0) child_fail(report, kChdir);
  if (listen_pid) write_decimal(listen_pid, ::getpid());

  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(file, argv, envp);
  child_fail(report, kExecve);
}

struct ChildArgs {
  const ProcessSpec* spec;
  const char* file;
  char* const* argv;
  char* const* envp;
  int report_fd;
  pid_t parent;
  char* listen_pid;        // the digits of "LISTEN_PID=..." in envp, or null
  const rlimit* fd_limit;  // RLIMIT_NOFILE to set, or null to inherit ours
};

int child_entry(void* p) {
  auto* a = static_cast<ChildArgs*>(p);
  exec_child(*a->spec, a->file, a->argv, a->envp, a->report_fd, a->parent, a->listen_pid,
             a->fd_limit);
}

// The child's stack while it shares our memory (CLONE_VM) until exec.
constexpr size_t kChildStack = 256 * 1024;

}  // namespace

void set_worker_fd_limit(rlim_t soft) {
  worker_soft_fd_limit = soft;
}

std::string find_executable(const std::string& name, const std::string& path_var) {
  if (name.find('/') != std::string::npos) return name;
  size_t start = 0;
  while (start <= path_var.size()) {
    size_t end = path_var.find(':', start);
    if (end == std::string::npos) end = path_var.size();
    std::string candidate = end == start ? std::string(".") : path_var.substr(start, end - start);
    candidate.append("/").append(name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return {};
}

SpawnResult spawn_process(const ProcessSpec& spec) {
  SpawnResult result;
  if (spec.argv.empty()) {
    result.error = EINVAL;
    result.failed_call = "execve (empty argv)";
    return result;
  }
  // Everything the child needs is built before fork: it may not allocate.
  std::vector<std::string> env = merged_environment(spec.env);
  if (spec.set_listen_pid) env.push_back("LISTEN_PID=00000000000");
  std::vector<std::string> args = spec.argv;
  std::string file = find_executable(args[0], path_of(env));
  if (file.empty()) {
    result.error = ENOENT;
    result.failed_call = "execvp (not found in PATH)";
    return result;
  }
  std::vector<char*> argv = c_array(args);
  std::vector<char*> envp = c_array(env);

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    result.error = errno;
    result.failed_call = "pipe2";
    return result;
  }
  UniqueFd report_read(pipe_fds[0]);
  UniqueFd report_write(pipe_fds[1]);

  // CLONE_VM | CLONE_VFORK, as posix_spawn does: no page tables are copied
  // (fork of a large or sanitized parent costs milliseconds), and we resume
  // only once the child has exec'd or exited. With every signal blocked
  // across the clone, no handler of ours runs in the child, which shares our
  // memory, before it resets dispositions.
  std::unique_ptr<char[]> stack(new char[kChildStack]);
  char* listen_pid = spec.set_listen_pid ? env.back().data() + 11 : nullptr;
  rlimit fd_limit{};
  const bool set_fd_limit = worker_soft_fd_limit != kInherit &&
                            ::getrlimit(RLIMIT_NOFILE, &fd_limit) == 0 &&
                            fd_limit.rlim_cur != worker_soft_fd_limit;
  if (set_fd_limit) fd_limit.rlim_cur = std::min(worker_soft_fd_limit, fd_limit.rlim_max);
  ChildArgs child_args{&spec,
                       file.c_str(),
                       argv.data(),
                       envp.data(),
                       report_write.get(),
                       ::getpid(),
                       listen_pid,
                       set_fd_limit ? &fd_limit : nullptr};
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = ::clone(child_entry, stack.get() + kChildStack,
                            CLONE_VM | CLONE_VFORK | SIGCHLD, &child_args);
  const int fork_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) {
    result.error = fork_errno;
    result.failed_call = "clone";
    return result;
  }
  report_write.reset();

  ChildFailure failure{};
  ssize_t n;
  do {
    n = ::read(report_read.get(), &failure, sizeof failure);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof failure)) {
    ::waitpid(pid, nullptr, 0);
    result.error = failure.error;
    result.failed_call =
        (failure.step >= 0 && failure.step <= kExecve) ? kSteps[failure.step] : "?";
    return result;
  }

  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    result.error = errno;
    result.failed_call = "pidfd_open";
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return result;
  }
  result.pid = pid;
  result.pidfd.reset(pidfd);
  return result;
}

}  // namespace occasional::supervisor
