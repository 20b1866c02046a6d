#include "app/upgrader.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "workers/exe.hpp"

extern char** environ;

namespace occasional::gateway {

using supervisor::LogLevel;

namespace {

// The binary this process runs, as it is on disk now: when it was replaced
// since it started, the kernel's link names the path with " (deleted)".
std::string running_binary() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return {};
  std::string path(buf, static_cast<size_t>(n));
  constexpr std::string_view kDeleted = " (deleted)";
  if (path.ends_with(kDeleted)) path.resize(path.size() - kDeleted.size());
  return path;
}

// The last non-empty line of a program's output, for a one-line error.
std::string last_line(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  const size_t at = text.rfind('\n');
  return at == std::string::npos ? text : text.substr(at + 1);
}

bool set_cloexec(int fd, bool on) {
  const int flags = ::fcntl(fd, F_GETFD);
  if (flags < 0) return false;
  return ::fcntl(fd, F_SETFD, on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC) == 0;
}

// Asio opens and accepts sockets without FD_CLOEXEC (the spawner closes
// what a child should not have, so nothing leaked until now): before the
// execve every fd but stdio and `keep` gets it, or the new coordinator
// would hold admin connections nobody serves.
std::vector<int> open_fds() {
  std::vector<int> out;
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return out;
  const int own = ::dirfd(dir);
  while (const dirent* e = ::readdir(dir)) {
    int fd = -1;
    auto [end, ec] = std::from_chars(e->d_name, e->d_name + std::strlen(e->d_name), fd);
    if (ec == std::errc{} && fd != own) out.push_back(fd);
  }
  ::closedir(dir);
  return out;
}

void close_on_exec_all_but(const std::vector<int>& keep) {
  for (int fd : open_fds())
    if (fd > 2 && std::find(keep.begin(), keep.end(), fd) == keep.end()) set_cloexec(fd, true);
}

// Signals that would end the process (or be lost) between the execve and
// the new coordinator's handlers: blocked across it, they stay pending and
// are delivered to the new coordinator (release_upgrade_signals).
sigset_t upgrade_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR2, SIGCHLD}) sigaddset(&set, s);
  return set;
}

}  // namespace

void release_upgrade_signals() {
  const sigset_t set = upgrade_signals();
  ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
}

std::vector<Upgrader::InheritedFd> Upgrader::inherited_fds() {
  std::vector<InheritedFd> out;
  for (int fd : open_fds()) {
    struct stat st {};
    if (fd > 2 && ::fstat(fd, &st) == 0) out.push_back({fd, st.st_dev, st.st_ino});
  }
  return out;
}

std::vector<Upgrader::InheritedFd> Upgrader::minus(std::vector<InheritedFd> fds,
                                                   const std::vector<int>& out) {
  std::erase_if(fds, [&out](const InheritedFd& f) {
    return std::find(out.begin(), out.end(), f.fd) != out.end();
  });
  return fds;
}

Upgrader::Upgrader(boost::asio::io_context& io, Parts parts, std::vector<std::string> argv)
    : io_(io), parts_(parts), argv_(std::move(argv)), timer_(io), usr2_(io, SIGUSR2) {
  wait_signal();
}

void Upgrader::wait_signal() {
  usr2_.async_wait([this](const boost::system::error_code& ec, int) {
    if (ec) return;
    parts_.log.event(LogLevel::info, "upgrade_requested").str("by", "SIGUSR2");
    begin({}, [](metrics::ActionResult r, std::function<void()> after) {
      // The outcome is in the log (and the metrics) already.
      if (r.status < 300 && after) after();
    });
    wait_signal();
  });
}

std::string Upgrader::not_carriable() const {
  for (const auto& s : parts_.supervisor.services())
    if (std::string why = s->not_carriable(); !why.empty()) return why;
  if (!parts_.supervisor.inetd_services().empty())
    return "inetd services are not carried over an upgrade yet";
  if (std::string why = parts_.supervisor.hub().not_carriable(); !why.empty())
    return why +
           " (processes and messages): an upgrade carries workers only, without monitors, "
           "links or names of their own (docs/supervision.md, \"Upgrading the "
           "coordinator in place\")";
  return {};
}

void Upgrader::fail(const char* reason, int http_status, const std::string& why) {
  parts_.metrics.upgrade_failed(reason);
  parts_.log.event(LogLevel::error, "upgrade_failed")
      .str("reason", reason)
      .str("error", why)
      .str("action", "the running coordinator goes on");
  if (busy_) {
    busy_ = false;
    parts_.gateway.resume_accepting();
    // RELOADING=1 was sent: the manager waits for READY=1 again.
    parts_.notifier.ready();
  }
  if (auto done = std::move(done_)) {
    done_ = nullptr;
    done({http_status, "upgrade failed (" + std::string(reason) + "): " + why}, {});
  }
}

void Upgrader::begin(std::string binary, metrics::AdminBackend::UpgradeDone done) {
  if (busy_) {
    parts_.metrics.upgrade_failed("busy");
    done({409, "an upgrade is already under way"}, {});
    return;
  }
  done_ = std::move(done);
  if (std::string why = not_carriable(); !why.empty()) return fail("unsupported", 409, why);
  binary_ = binary.empty() ? running_binary() : std::move(binary);
  if (binary_.empty() || ::access(binary_.c_str(), X_OK) != 0)
    return fail("self_test", 500,
                "'" + binary_ + "' is not an executable file" +
                    (binary_.empty() ? "" : std::string(": ") + std::strerror(errno)));
  // The self-test blocks the loop for as long as the new binary takes to
  // read the configuration (milliseconds): new clients wait in the backlog.
  exe::Argv test{binary_, "--self-test", std::to_string(kUpgradeStateVersion)};
  test.insert(test.end(), argv_.begin() + 1, argv_.end());
  exe::Options options;
  options.timeout = kSelfTestTimeout;
  options.max_output = 64 * 1024;
  exe::Result r = exe::run(test, options);
  if (!r.ok()) {
    const std::string said = last_line(r.err.bytes.empty() ? r.out.bytes : r.err.bytes);
    return fail("self_test", 500,
                "the self-test of " + binary_ + " " + r.status.describe() +
                    (said.empty() ? "" : ": " + said));
  }
  busy_ = true;
  parts_.notifier.reloading();
  parts_.log.event(LogLevel::info, "upgrade_started")
      .str("binary", binary_)
      .str("self_test", "passed")
      .str("action", "accepting paused until no connection is being routed or queued");
  parts_.gateway.pause_accepting();
  wait_quiet(std::chrono::steady_clock::now() + kQuietTimeout);
}

void Upgrader::wait_quiet(std::chrono::steady_clock::time_point deadline) {
  if (parts_.gateway.quiet()) {
    auto done = std::move(done_);
    done_ = nullptr;
    done({200, "upgrading to " + binary_ + " (self-test passed)"}, [this] { hand_over(); });
    return;
  }
  if (std::chrono::steady_clock::now() >= deadline)
    return fail("not_quiet", 409,
                "connections were still being routed or queued after " +
                    std::to_string(kQuietTimeout.count()) + " s");
  timer_.expires_after(std::chrono::milliseconds(1));
  timer_.async_wait([this, deadline](const boost::system::error_code& ec) {
    if (!ec) wait_quiet(deadline);
  });
}

UpgradeState Upgrader::collect() const {
  UpgradeState st;
  st.from_version = kProgramVersion;
  st.listeners = parts_.gateway.listener_fds();
  st.admin = admin_ ? admin_->native_handle() : -1;
  const supervisor::Guardian& g = parts_.supervisor.guardian();
  st.guardian.pid = g.pid();
  st.guardian.pipe = g.pipe_fd();
  st.guardian.pidfd = parts_.supervisor.reaper().pidfd(g.pid());
  st.guardian.groups.assign(g.groups().begin(), g.groups().end());
  for (const auto& s : parts_.supervisor.services()) {
    UpgradeState::CarriedService cs{s->name(), s->carry(), {}};
    if (Balancer* b = parts_.gateway.dispatcher().find(s->name()))
      for (const auto& w : cs.workers)
        if (auto carried = b->carry(w.replica)) cs.balance[w.replica] = *carried;
    st.services.push_back(std::move(cs));
  }
  for (const auto& [name, c] : parts_.gateway.stats().listeners)
    st.listener_counts[name] = {c.accepted, c.handed_off, c.rejected};
  st.counters = parts_.metrics.carried_counters();
  st.processes = parts_.supervisor.hub().carry();
  return st;
}

void Upgrader::hand_over() {
  // The loop ran while the answer was written: look again.
  if (std::string why = not_carriable(); !why.empty()) return fail("unsupported", 409, why);
  if (!parts_.gateway.quiet()) return fail("not_quiet", 409, "a connection came in meanwhile");
  UpgradeState st;
  UniqueFd memfd;
  try {
    st = collect();
    memfd = write_upgrade_state(encode_upgrade_state(st));
  } catch (const std::exception& e) {
    return fail("exec", 500, e.what());
  }
  std::vector<int> fds = st.fds();
  for (int fd : fds)
    if (fd >= 0 && !set_cloexec(fd, false)) {
      const int err = errno;
      for (int f : fds) set_cloexec(f, true);
      return fail("exec", 500,
                  "fcntl(F_SETFD) on fd " + std::to_string(fd) + ": " + std::strerror(err));
    }
  parts_.log.event(LogLevel::info, "upgrade_exec")
      .str("binary", binary_)
      .num("fds", static_cast<int64_t>(fds.size()))
      .num("workers", [&st] {
        int64_t n = 0;
        for (const auto& s : st.services) n += static_cast<int64_t>(s.workers.size());
        return n;
      }());
  std::vector<int> keep = fds;
  keep.push_back(memfd.get());
  // What we were started with, if it is still what it was (not closed and
  // the number reused).
  for (const InheritedFd& f : inherited_) {
    struct stat st {};
    if (::fstat(f.fd, &st) == 0 && st.st_dev == f.dev && st.st_ino == f.ino) keep.push_back(f.fd);
  }
  close_on_exec_all_but(keep);
  ::setenv(kUpgradeStateEnv, std::to_string(memfd.get()).c_str(), 1);
  // What the service manager gave us, which the start took out of the
  // environment (so that workers do not see it): the new binary takes it again.
  const std::string notify = parts_.notifier.address();
  if (!notify.empty()) ::setenv("NOTIFY_SOCKET", notify.c_str(), 1);
  if (watchdog_) {
    ::setenv("WATCHDOG_USEC", std::to_string(watchdog_->count()).c_str(), 1);
    ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
  }
  std::vector<char*> args;
  for (std::string& a : argv_) args.push_back(a.data());
  args.push_back(nullptr);
  const sigset_t blocked = upgrade_signals();
  sigset_t before;
  ::sigprocmask(SIG_BLOCK, &blocked, &before);
  ::execve(binary_.c_str(), args.data(), environ);
  // Still here: nothing was handed over.
  const int err = errno;
  ::sigprocmask(SIG_SETMASK, &before, nullptr);
  for (const char* name : {kUpgradeStateEnv, "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"})
    ::unsetenv(name);
  for (int fd : fds) set_cloexec(fd, true);
  fail("exec", 500, "execve(" + binary_ + "): " + std::strerror(err));
}

}  // namespace occasional::gateway
