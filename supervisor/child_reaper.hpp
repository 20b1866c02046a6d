#pragma once

#include <signal.h>
#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <system_error>
#include <unordered_map>

#include "supervisor/event_log.hpp"
#include "workers/unique_fd.hpp"

namespace occasional::supervisor {

// Knows at once when a child exits and reaps every child of the coordinator.
//
// Watched children (workers, the guardian) are waited on through their pidfd
// on the loop; when one exits, what is left of its process group is killed
// while the exited leader still holds the group id (so the id cannot have
// been reused), then it is reaped with waitid(P_PIDFD) and its callback runs.
// The coordinator is a child subreaper: orphans of workers are reparented to
// it. SIGCHLD reaps those, and on each worker exit any orphan still alive is
// killed: it outlived the process that knew what it was for.
// `pid`'s state and parent from /proc/<pid>/stat; false if it is gone.
bool read_stat(long pid, char& state, long& ppid);

class ChildReaper {
 public:
  using ExitCallback = std::function<void(const siginfo_t&)>;

  ChildReaper(boost::asio::io_context& io, const EventLog& log);
  ChildReaper(const ChildReaper&) = delete;
  ChildReaper& operator=(const ChildReaper&) = delete;
  // Kills and reaps every watched child still there: nothing outlives us as a zombie.
  ~ChildReaper();

  // Marks this process a child subreaper; call once at startup.
  static void become_subreaper();

  // Fails (ENOMEM, ENOSPC from epoll) without throwing; the child is then
  // killed and reaped at once, and `on_exit` never runs.
  std::error_code watch(pid_t pid, UniqueFd pidfd, ExitCallback on_exit);
  bool watching(pid_t pid) const { return watched_.contains(pid); }
  // The pidfd of a watched child, or -1 (for an upgrade, which carries it).
  int pidfd(pid_t pid) const {
    auto it = watched_.find(pid);
    return it == watched_.end() ? -1 : it->second.pidfd->native_handle();
  }
  // The only ways to signal a watched child. A pid is watched until the
  // moment it is reaped (the callback runs after), so neither can reach a
  // process that reused the id: `signal` goes through the pidfd, and
  // `signal_group` to the group the child leads, whose id a zombie leader
  // still holds. Both are ESRCH once the child is reaped or if never watched.
  std::error_code signal(pid_t pid, int signal) const;
  std::error_code signal_group(pid_t pid, int signal) const;
  // The watched child has exited and waits to be reaped (checked without
  // reaping it: waitid WNOHANG | WNOWAIT on its pidfd). False once reaped.
  bool exited(pid_t pid) const;
  // While held (calls nest), children nobody watches are neither reaped nor
  // killed as orphans: a process cloned with CLONE_PARENT is our child
  // before its spawner has told us its pid, and reaping it then would let
  // the pid be reused before we pidfd_open it. Released to zero, what was
  // held back is reaped and scanned at once.
  void hold_unwatched() { ++holds_; }
  void release_unwatched();
  // Orphans reaped and killed so far (for tests and metrics).
  uint64_t orphans_reaped() const { return orphans_reaped_; }
  uint64_t orphans_killed() const { return orphans_killed_; }
  // Walks of all of /proc made to find orphans: none while the kernel lists
  // our children in /proc/self/task/*/children.
  uint64_t full_scans() const { return full_scans_; }
  // For tests: behave as on a kernel without /proc/.../children.
  void use_children_list(bool yes) { children_list_ = yes; }
  static constexpr std::chrono::seconds kFullScanInterval{1};

 private:
  struct Watched {
    std::unique_ptr<boost::asio::posix::stream_descriptor> pidfd;
    ExitCallback on_exit;
  };

  void wait_pidfd(pid_t pid);
  void on_sigchld();
  void on_sigchld_once();
  void finish(pid_t pid);
  void kill_orphans();
  void schedule_orphan_scan();

  boost::asio::io_context& io_;
  const EventLog& log_;
  boost::asio::signal_set sigchld_;
  std::unordered_map<pid_t, Watched> watched_;
  bool orphan_scan_posted_ = false;
  boost::asio::steady_timer orphan_timer_;
  bool children_list_ = true;
  std::chrono::steady_clock::time_point last_full_scan_{};
  uint64_t full_scans_ = 0;
  uint64_t orphans_reaped_ = 0;
  uint64_t orphans_killed_ = 0;
  uint64_t holds_ = 0;
  bool held_back_ = false;  // an orphan scan or reap was skipped while held
};

}  // namespace occasional::supervisor
