#include "workers/exe.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <regex>
#include <system_error>

#include "workers/process.hpp"

extern char** environ;

namespace occasional::exe {

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void fail(const char* call) {
  throw std::system_error(errno, std::system_category(), std::string("occasional::exe: ") + call);
}

std::pair<UniqueFd, UniqueFd> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) fail("pipe2()");
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// stdin is a socket, not a pipe: send(MSG_NOSIGNAL) to a program that has
// stopped reading is EPIPE here, never a SIGPIPE that would kill the caller.
std::pair<UniqueFd, UniqueFd> make_input() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) fail("socketpair()");
  ::shutdown(fds[0], SHUT_WR);
  ::shutdown(fds[1], SHUT_RD);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// The caller's environment with `overrides` applied; empty when there are
// none (then environ itself is passed).
std::vector<std::string> merged_env(const std::vector<std::string>& overrides) {
  if (overrides.empty()) return {};
  std::map<std::string, std::string> by_key;
  std::vector<std::string> order;
  auto put = [&](const std::string& entry) {
    const std::string key = entry.substr(0, entry.find('='));
    if (!by_key.contains(key)) order.push_back(key);
    by_key[key] = entry;
  };
  for (char** e = environ; e && *e; ++e) put(*e);
  for (const auto& entry : overrides) put(entry);
  std::vector<std::string> out;
  for (const auto& key : order) out.push_back(by_key[key]);
  return out;
}

struct Stdio {
  int in = -1;  // dup2'd to 0, else in_path is opened
  std::string in_path = "/dev/null";
  int out = -1, err = -1;  // dup2'd to 1 and 2
  std::string tty;         // a terminal's path: opened as 0, 1, 2 (after setsid)
};

// posix_spawn (glibc: clone(CLONE_VM | CLONE_VFORK), so an exec failure is
// its return value). The child leads a new process group (or joins
// `pgroup`), or a new session for a terminal; signals are reset to default
// and unblocked. Our own fds are all close-on-exec.
pid_t start(const Argv& argv, const std::vector<std::string>& env, const std::string& cwd,
            pid_t pgroup, const Stdio& io, std::string& error) {
  if (argv.empty()) {
    error = "empty argv";
    return -1;
  }
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  if (!io.tty.empty()) {
    posix_spawn_file_actions_addopen(&fa, 0, io.tty.c_str(), O_RDWR, 0);
    posix_spawn_file_actions_adddup2(&fa, 0, 1);
    posix_spawn_file_actions_adddup2(&fa, 0, 2);
  } else {
    if (io.in >= 0)
      posix_spawn_file_actions_adddup2(&fa, io.in, 0);
    else
      posix_spawn_file_actions_addopen(&fa, 0, io.in_path.c_str(), O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, io.out, 1);
    posix_spawn_file_actions_adddup2(&fa, io.err, 2);
  }
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (!io.tty.empty()) {
    flags |= POSIX_SPAWN_SETSID;
  } else {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&attr, pgroup);
  }
  posix_spawnattr_setflags(&attr, flags);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);

  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  char* const* envv = env.empty() ? environ : envp.data();

  pid_t pid = -1;
  const int rc = argv[0].find('/') == std::string::npos
                     ? ::posix_spawnp(&pid, args[0], &fa, &attr, args.data(), envv)
                     : ::posix_spawn(&pid, args[0], &fa, &attr, args.data(), envv);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    error = "posix_spawn(" + argv[0] + "): " + std::strerror(rc);
    return -1;
  }
  return pid;
}

UniqueFd pidfd_of(pid_t pid) {
  UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!fd) fail("pidfd_open()");
  return fd;
}

ExitStatus status_of(const siginfo_t& info) {
  ExitStatus s;
  if (info.si_code == CLD_EXITED) {
    s.kind = ExitStatus::Kind::exited;
    s.code = info.si_status;
  } else {
    s.kind = ExitStatus::Kind::signaled;
    s.signal = info.si_status;
    s.core = info.si_code == CLD_DUMPED;
  }
  return s;
}

// Blocks until `pid` has exited and reaps it.
ExitStatus reap(pid_t pid) {
  siginfo_t info{};
  while (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED) != 0) {
    if (errno != EINTR) {
      ExitStatus s;
      s.error = std::string("waitid: ") + std::strerror(errno);
      return s;
    }
  }
  return status_of(info);
}

// An adopted program, reaped: its owner tells the coordinator how it ended.
void report_exit(Process* owner, const ExitStatus& s) {
  if (!owner || !s.address || s.kind == ExitStatus::Kind::start_failed) return;
  const bool exited = s.kind == ExitStatus::Kind::exited;
  owner->adopted_exit(*s.address, exited, exited ? s.code : s.signal, s.core);
}

constexpr Clock::time_point kNever = Clock::time_point::max();

int poll_ms(Clock::time_point deadline) {
  if (deadline == kNever) return -1;
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1'000'000'000));
}

// One running group of programs (a single one, or a pipeline's stages):
// feeds stdin, drains stdout and stderr, reaps each child, and kills the
// group at the deadline.
struct Group {
  struct Child {
    pid_t pid = -1;
    UniqueFd pidfd;
    ExitStatus status;
    bool done = false;
  };
  std::vector<Child> children;
  pid_t pgid = 0;
  UniqueFd in;  // write end, while input remains
  std::string_view input;
  UniqueFd out, err;
  Output* out_sink = nullptr;
  Output* err_sink = nullptr;
  size_t max_output = 0;
  Process* owner = nullptr;

  static void take(UniqueFd& fd, Output& sink, size_t max) {
    char buf[65536];
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n <= 0) {
      fd.reset();
      return;
    }
    const size_t keep = std::min(static_cast<size_t>(n), max - std::min(max, sink.bytes.size()));
    sink.bytes.append(buf, keep);
    sink.dropped += static_cast<uint64_t>(n) - keep;
  }

  void run(std::chrono::milliseconds timeout) {
    Clock::time_point deadline = timeout.count() > 0 ? Clock::now() + timeout : kNever;
    bool killed = false;
    for (;;) {
      bool alive = false;
      for (auto& c : children) alive = alive || !c.done;
      if (!alive && !out && !err) return;
      std::vector<pollfd> fds;
      if (in) fds.push_back({in.get(), POLLOUT, 0});
      if (out) fds.push_back({out.get(), POLLIN, 0});
      if (err) fds.push_back({err.get(), POLLIN, 0});
      for (auto& c : children)
        if (!c.done) fds.push_back({c.pidfd.get(), POLLIN, 0});
      const int n = ::poll(fds.data(), fds.size(), poll_ms(deadline));
      if (n < 0 && errno != EINTR) fail("poll()");
      if (n == 0) {
        if (killed) {
          // Past the grace after the kill: a process outside the group
          // still holds the output; stop reading it.
          out.reset();
          err.reset();
          in.reset();
          deadline = kNever;
          continue;
        }
        for (auto& c : children) c.status.timed_out = !c.done;
        if (pgid > 0) ::kill(-pgid, SIGKILL);
        killed = true;
        deadline = Clock::now() + std::chrono::seconds(1);
        continue;
      }
      for (const pollfd& p : fds) {
        if (!p.revents) continue;
        if (in && p.fd == in.get()) {
          ssize_t w = ::send(in.get(), input.data(), std::min<size_t>(input.size(), 65536),
                             MSG_NOSIGNAL | MSG_DONTWAIT);
          if (w > 0) input.remove_prefix(static_cast<size_t>(w));
          if ((w < 0 && errno != EAGAIN && errno != EINTR) || input.empty()) in.reset();
        } else if (out && p.fd == out.get()) {
          take(out, *out_sink, max_output);
        } else if (err && p.fd == err.get()) {
          take(err, *err_sink, max_output);
        } else {
          for (auto& c : children)
            if (!c.done && c.pidfd.get() == p.fd) {
              const bool timed_out = c.status.timed_out;
              std::optional<Address> address = std::move(c.status.address);
              c.status = reap(c.pid);
              c.status.timed_out = timed_out;
              c.status.address = std::move(address);
              report_exit(owner, c.status);
              c.done = true;
              c.pidfd.reset();
            }
        }
      }
    }
  }
};

// stdin for the first (or only) program, from the options.
void plan_input(const Options& o, Group& g, Stdio& io, UniqueFd& child_in) {
  if (o.input) {
    auto [r, w] = make_input();
    child_in = std::move(r);
    g.in = std::move(w);
    g.input = *o.input;
    io.in = child_in.get();
  } else if (!o.input_file.empty()) {
    io.in_path = o.input_file;
  }
}

}  // namespace

std::string ExitStatus::describe() const {
  std::string s;
  switch (kind) {
    case Kind::exited:
      s = "exited " + std::to_string(code);
      break;
    case Kind::signaled: {
      const char* abbrev = ::sigabbrev_np(signal);
      s = std::string("killed by ") +
          (abbrev ? "SIG" + std::string(abbrev) : "signal " + std::to_string(signal));
      if (core) s += " (core dumped)";
      break;
    }
    case Kind::start_failed:
      return "failed to start: " + error;
  }
  if (timed_out) s += " (timed out)";
  return s;
}

Result run(const Argv& argv, const Options& options) {
  PipelineResult p = pipeline({argv}, options);
  return Result{std::move(p.stages[0]), std::move(p.out), std::move(p.err)};
}

const ExitStatus& PipelineResult::status() const {
  for (auto it = stages.rbegin(); it != stages.rend(); ++it)
    if (!it->ok()) return *it;
  return stages.back();
}

PipelineResult pipeline(const std::vector<Argv>& stages, const Options& options) {
  PipelineResult result;
  if (stages.empty()) {
    ExitStatus s;
    s.error = "empty pipeline";
    result.stages.push_back(s);
    return result;
  }
  const std::vector<std::string> env = merged_env(options.env);
  Group g;
  g.out_sink = &result.out;
  g.err_sink = &result.err;
  g.max_output = options.max_output;
  g.owner = options.owner;
  auto [out_r, out_w] = make_pipe();
  auto [err_r, err_w] = make_pipe();
  g.out = std::move(out_r);
  g.err = std::move(err_r);
  UniqueFd stage_in;
  Stdio first;
  plan_input(options, g, first, stage_in);
  for (size_t i = 0; i < stages.size(); ++i) {
    Stdio io;
    if (i == 0)
      io = first;
    else
      io.in = stage_in.get();
    UniqueFd next_in, stage_out;
    if (i + 1 < stages.size()) {
      auto [r, w] = make_pipe();
      next_in = std::move(r);
      stage_out = std::move(w);
      io.out = stage_out.get();
    } else {
      io.out = out_w.get();
    }
    io.err = err_w.get();
    Group::Child c;
    std::string error;
    c.pid = start(stages[i], env, options.cwd, g.pgid, io, error);
    if (c.pid < 0) {
      c.status.error = error;
      c.done = true;
    } else {
      if (g.pgid == 0) g.pgid = c.pid;
      c.pidfd = pidfd_of(c.pid);
      if (options.owner) c.status.address = options.owner->adopt(c.pid);
    }
    g.children.push_back(std::move(c));
    stage_in = std::move(next_in);  // the parent's copies of this stage's ends close here
  }
  out_w.reset();
  err_w.reset();
  stage_in.reset();
  g.run(options.timeout);
  for (auto& c : g.children) result.stages.push_back(std::move(c.status));
  return result;
}

// --- interaction ---

struct Interaction::Impl {
  pid_t pid = -1;
  UniqueFd pidfd;
  UniqueFd in;   // pipes: our end of its stdin; pty: unused
  UniqueFd out;  // pipes: its stdout and stderr; pty: the master
  bool pty = false;
  bool at_eof = false;
  std::string buffer;
  std::optional<ExitStatus> status;
  Process* owner = nullptr;
  std::optional<Address> address;

  int input_fd() const { return pty ? out.get() : in.get(); }

  // One read; false at EOF (a pty master reads EIO once the terminal is closed).
  bool read_some(int timeout_ms) {
    pollfd p{out.get(), POLLIN, 0};
    const int n = ::poll(&p, 1, timeout_ms);
    if (n <= 0) return true;
    char buf[65536];
    ssize_t r = ::read(out.get(), buf, sizeof buf);
    if (r > 0) {
      buffer.append(buf, static_cast<size_t>(r));
      return true;
    }
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    at_eof = true;
    return false;
  }

  bool write_all(std::string_view bytes) {
    const int fd = input_fd();
    while (!bytes.empty()) {
      if (fd < 0) return false;
      ssize_t w = pty ? ::write(fd, bytes.data(), bytes.size())
                      : ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        return false;
      }
      bytes.remove_prefix(static_cast<size_t>(w));
    }
    return true;
  }

  void kill_and_reap() {
    if (status || pid <= 0) return;
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    reaped();
  }

  void reaped() {
    status = reap(pid);
    status->address = address;
    report_exit(owner, *status);
  }
};

Interaction::Interaction(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Interaction::Interaction(Interaction&&) noexcept = default;
Interaction& Interaction::operator=(Interaction&&) noexcept = default;
Interaction::~Interaction() {
  if (impl_) impl_->kill_and_reap();
}

std::optional<Interaction::Match> Interaction::expect(std::string_view pattern,
                                                      std::chrono::milliseconds timeout) {
  const std::regex re{std::string(pattern), std::regex::ECMAScript};
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    std::smatch m;
    if (std::regex_search(impl_->buffer, m, re)) {
      Match out;
      out.before = m.prefix().str();
      out.text = m.str(0);
      for (size_t i = 1; i < m.size(); ++i) out.groups.push_back(m.str(i));
      impl_->buffer.erase(0, static_cast<size_t>(m.position(0) + m.length(0)));
      return out;
    }
    if (impl_->at_eof) return std::nullopt;
    const int left = poll_ms(deadline);
    if (left == 0) return std::nullopt;
    impl_->read_some(left);
  }
}

bool Interaction::send(std::string_view line) {
  return impl_->write_all(std::string(line) + "\n");
}

bool Interaction::send_raw(std::string_view bytes) {
  return impl_->write_all(bytes);
}

void Interaction::close_input() {
  if (impl_->pty) {
    termios t{};
    const char eof =
        ::tcgetattr(impl_->out.get(), &t) == 0 ? static_cast<char>(t.c_cc[VEOF]) : '\x04';
    impl_->write_all(std::string_view(&eof, 1));
  } else {
    impl_->in.reset();
  }
}

ExitStatus Interaction::wait(std::chrono::milliseconds timeout) {
  Impl& i = *impl_;
  if (i.status) return *i.status;
  const Clock::time_point deadline = timeout.count() > 0 ? Clock::now() + timeout : kNever;
  for (;;) {
    // Its output is read meanwhile, so that it never blocks on a full pipe.
    std::vector<pollfd> fds{{i.pidfd.get(), POLLIN, 0}};
    if (!i.at_eof) fds.push_back({i.out.get(), POLLIN, 0});
    const int n = ::poll(fds.data(), fds.size(), poll_ms(deadline));
    if (n < 0 && errno != EINTR) fail("poll()");
    if (n == 0) {
      i.kill_and_reap();
      i.status->timed_out = true;
      return *i.status;
    }
    if (fds.size() > 1 && fds[1].revents) i.read_some(0);
    if (fds[0].revents) {
      i.reaped();
      ::kill(-i.pid, SIGKILL);  // what it left in its group
      return *i.status;
    }
  }
}

bool Interaction::eof() const {
  return impl_->at_eof;
}

const std::string& Interaction::pending() const {
  return impl_->buffer;
}

pid_t Interaction::pid() const {
  return impl_->pid;
}

const std::optional<Address>& Interaction::address() const {
  return impl_->address;
}

Interaction interact(const Argv& argv, const InteractOptions& options) {
  auto impl = std::make_unique<Interaction::Impl>();
  impl->pty = options.pty;
  const std::vector<std::string> env = merged_env(options.env);
  Stdio io;
  UniqueFd child_in, child_out, slave;
  if (options.pty) {
    UniqueFd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!master) fail("posix_openpt()");
    if (::grantpt(master.get()) != 0 || ::unlockpt(master.get()) != 0) fail("unlockpt()");
    char name[128];
    if (::ptsname_r(master.get(), name, sizeof name) != 0) fail("ptsname_r()");
    // Held open until the child has its own: the settings stay with the terminal.
    slave.reset(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!slave) fail("open(pty)");
    termios t{};
    if (::tcgetattr(slave.get(), &t) == 0) {
      if (!options.echo) t.c_lflag &= ~static_cast<tcflag_t>(ECHO | ECHONL);
      ::tcsetattr(slave.get(), TCSANOW, &t);
    }
    winsize ws{};
    ws.ws_row = options.rows;
    ws.ws_col = options.columns;
    ::ioctl(slave.get(), TIOCSWINSZ, &ws);
    io.tty = name;
    impl->out = std::move(master);
  } else {
    auto [r, w] = make_input();
    child_in = std::move(r);
    impl->in = std::move(w);
    auto [out_r, out_w] = make_pipe();
    impl->out = std::move(out_r);
    child_out = std::move(out_w);
    io.in = child_in.get();
    io.out = io.err = child_out.get();
  }
  std::string error;
  impl->pid = start(argv, env, options.cwd, 0, io, error);
  if (impl->pid < 0) throw std::system_error(ENOENT, std::system_category(), error);
  impl->pidfd = pidfd_of(impl->pid);
  impl->owner = options.owner;
  if (options.owner) impl->address = options.owner->adopt(impl->pid);
  return Interaction(std::move(impl));
}

}  // namespace occasional::exe
