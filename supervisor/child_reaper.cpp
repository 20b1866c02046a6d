#include "supervisor/child_reaper.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/system/system_error.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace occasional::supervisor {

namespace asio = boost::asio;

ChildReaper::ChildReaper(asio::io_context& io, const EventLog& log)
    : io_(io), log_(log), sigchld_(io, SIGCHLD), orphan_timer_(io) {
  sigchld_.async_wait([this](const boost::system::error_code& ec, int) {
    if (!ec) on_sigchld();
  });
}

ChildReaper::~ChildReaper() {
  for (auto& [pid, w] : watched_) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
}

void ChildReaper::become_subreaper() {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
    throw std::runtime_error(std::string("prctl(PR_SET_CHILD_SUBREAPER) failed: ") +
                             std::strerror(errno));
}

std::error_code ChildReaper::watch(pid_t pid, UniqueFd pidfd, ExitCallback on_exit) {
  std::error_code ec;
  try {
    auto desc = std::make_unique<asio::posix::stream_descriptor>(io_);
    desc->assign(pidfd.get());
    pidfd.release();
    watched_[pid] = Watched{std::move(desc), std::move(on_exit)};
    wait_pidfd(pid);
    return {};
  } catch (const boost::system::system_error& e) {
    ec = std::error_code(e.code().value(), std::system_category());
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  // Unwatched, it would be reaped as an orphan with nobody told: end it
  // here. A SIGKILLed child exits at once, so the wait is short.
  watched_.erase(pid);
  ::kill(-pid, SIGKILL);  // not reaped yet: still its group
  ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
  siginfo_t info{};
  while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd.get()), &info, WEXITED) <
             0 &&
         errno == EINTR) {
  }
  return ec;
}

std::error_code ChildReaper::signal(pid_t pid, int signal) const {
  auto it = watched_.find(pid);
  if (it == watched_.end()) return std::make_error_code(std::errc::no_such_process);
  if (::syscall(SYS_pidfd_send_signal, it->second.pidfd->native_handle(), signal, nullptr, 0) != 0)
    return {errno, std::system_category()};
  return {};
}

std::error_code ChildReaper::signal_group(pid_t pid, int signal) const {
  if (!watched_.contains(pid)) return std::make_error_code(std::errc::no_such_process);
  if (::kill(-pid, signal) != 0) return {errno, std::system_category()};
  return {};
}

bool ChildReaper::exited(pid_t pid) const {
  auto it = watched_.find(pid);
  if (it == watched_.end()) return false;
  siginfo_t info{};
  if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(it->second.pidfd->native_handle()),
               &info, WEXITED | WNOHANG | WNOWAIT) != 0)
    return false;
  return info.si_pid != 0;
}

void ChildReaper::wait_pidfd(pid_t pid) {
  watched_[pid].pidfd->async_wait(asio::posix::stream_descriptor::wait_read,
                                  [this, pid](const boost::system::error_code& ec) {
                                    // Aborted: SIGCHLD got there first and finished it.
                                    if (ec || !watched_.contains(pid)) return;
                                    finish(pid);
                                  });
}

void ChildReaper::finish(pid_t pid) {
  // A wake-up of the pidfd is not proof of an exit: seen under load with
  // the child still running (waitid then says EAGAIN). Asio's epoll reactor
  // keeps the readiness of one turn's events in per-descriptor state that it
  // recycles: when SIGCHLD finishes a child whose pidfd event is still
  // queued, and a replacement's pidfd is registered in the same turn, that
  // event reaches the new pidfd. Killing its group here would turn a live
  // worker into a "killed by SIGKILL" exit, so wait on.
  if (!exited(pid)) {
    if (watched_.contains(pid)) wait_pidfd(pid);
    return;
  }
  auto node = watched_.extract(pid);
  if (node.empty()) return;
  Watched& w = node.mapped();
  // The leader is a zombie until reaped, so its pid is still the group id.
  ::kill(-pid, SIGKILL);
  siginfo_t info{};
  int rc;
  do {
    rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(w.pidfd->native_handle()),
                  &info, WEXITED);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    log_.event(LogLevel::error, "waitid_failed").num("pid", pid).str("error", std::strerror(errno));
    info.si_pid = pid;
    info.si_code = CLD_KILLED;
    info.si_status = SIGKILL;
  }
  // Closing the descriptor cancels a pending wait (SIGCHLD path); the handler
  // then finds no entry.
  w.pidfd->close();
  auto callback = std::move(w.on_exit);
  callback(info);
  schedule_orphan_scan();
}

void ChildReaper::on_sigchld() {
  on_sigchld_once();
  sigchld_.async_wait([this](const boost::system::error_code& ec, int) {
    if (!ec) on_sigchld();
  });
}

void ChildReaper::on_sigchld_once() {
  for (;;) {
    siginfo_t info{};
    // WNOWAIT: look first, so that a watched child is reaped by finish().
    if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) break;
    const pid_t pid = info.si_pid;
    if (watched_.contains(pid)) {
      finish(pid);
      // Not reaped after all: its pidfd will say when; do not spin on it.
      if (watched_.contains(pid)) break;
      continue;
    }
    if (holds_ > 0) {
      // Maybe a process whose pid is not reported yet; looked at again on release.
      held_back_ = true;
      break;
    }
    ::waitpid(pid, nullptr, WNOHANG);
    ++orphans_reaped_;
    log_.event(LogLevel::debug, "orphan_reaped").num("pid", pid);
  }
}

namespace {

// Our children per /proc/self/task/*/children (CONFIG_PROC_CHILDREN), or
// nullopt when the kernel does not have it.
std::optional<std::vector<pid_t>> children_from_tasks() {
  DIR* tasks = ::opendir("/proc/self/task");
  if (!tasks) return std::nullopt;
  std::vector<pid_t> out;
  bool found = false;
  while (dirent* t = ::readdir(tasks)) {
    if (t->d_name[0] == '.') continue;
    char path[300];
    std::snprintf(path, sizeof path, "/proc/self/task/%s/children", t->d_name);
    UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
    if (!fd) continue;
    found = true;
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd.get(), buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
    const char* p = text.c_str();
    char* end = nullptr;
    for (long pid = std::strtol(p, &end, 10); end != p; pid = std::strtol(p, &end, 10)) {
      out.push_back(static_cast<pid_t>(pid));
      p = end;
    }
  }
  ::closedir(tasks);
  if (!found) return std::nullopt;
  return out;
}

}  // namespace

bool read_stat(long pid, char& state, long& ppid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd) return false;
  char buf[512];
  ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
  if (n <= 0) return false;
  buf[n] = '\0';
  // Fields after the command name, which may itself hold ')'.
  const char* close = std::strrchr(buf, ')');
  return close && std::sscanf(close + 1, " %c %ld", &state, &ppid) == 2;
}

void ChildReaper::schedule_orphan_scan() {
  if (orphan_scan_posted_) return;
  orphan_scan_posted_ = true;
  // With the children list a scan costs a few reads of our own; without
  // it, a walk of all of /proc, so at most one per kFullScanInterval
  // however many workers exit (inetd mode: one per connection).
  const auto now = std::chrono::steady_clock::now();
  const auto due = children_list_ ? now : std::max(now, last_full_scan_ + kFullScanInterval);
  orphan_timer_.expires_at(due);
  orphan_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    orphan_scan_posted_ = false;
    kill_orphans();
  });
}

void ChildReaper::release_unwatched() {
  if (holds_ == 0 || --holds_ > 0 || !held_back_) return;
  held_back_ = false;
  asio::post(io_, [this] {
    if (holds_ == 0) on_sigchld_once();
  });
  schedule_orphan_scan();
}

void ChildReaper::kill_orphans() {
  if (holds_ > 0) {
    held_back_ = true;
    return;
  }
  const pid_t self = ::getpid();
  auto kill_one = [&](long pid) {
    char state = 0;
    long ppid = 0;
    if (!read_stat(pid, state, ppid) || ppid != self || state == 'Z') return;
    // Our unreaped child: its pid cannot have been reused.
    if (::kill(static_cast<pid_t>(pid), SIGKILL) == 0) {
      ++orphans_killed_;
      log_.event(LogLevel::warn, "orphan_killed").num("pid", pid);
    }
  };
  if (children_list_) {
    if (auto children = children_from_tasks()) {
      for (pid_t pid : *children)
        if (!watched_.contains(pid)) kill_one(pid);
      return;
    }
    children_list_ = false;  // the kernel lacks it: fall back, rate-limited
  }
  ++full_scans_;
  last_full_scan_ = std::chrono::steady_clock::now();
  DIR* dir = ::opendir("/proc");
  if (!dir) return;
  while (dirent* entry = ::readdir(dir)) {
    char* end = nullptr;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || watched_.contains(static_cast<pid_t>(pid))) continue;
    kill_one(pid);
  }
  ::closedir(dir);
}

}  // namespace occasional::supervisor
