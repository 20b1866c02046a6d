#pragma once

#include <sys/types.h>

#include <system_error>
#include <unordered_set>
#include <vector>

#include "workers/unique_fd.hpp"

namespace occasional::supervisor {

// Makes sure no process group of ours outlives the coordinator, even when the
// coordinator is SIGKILLed.
//
// Workers die with the coordinator through PR_SET_PDEATHSIG, but their own
// children do not. The guardian is a small forked process that holds the read
// end of a pipe whose write end only the coordinator has. The coordinator
// tells it each worker's process group as it is created and removed; when the
// pipe reaches EOF (the coordinator is gone, however it died) the guardian
// SIGKILLs every group it still knows and exits. It ignores the usual stop
// signals and sits in its own process group, so a terminal's Ctrl-C or a
// kill of the coordinator's group does not take it down first.
//
// Limit: a descendant that leaves its worker's process group (setsid,
// setpgid) is beyond the guardian; while the coordinator lives it is killed
// as an orphan when reparented (see ChildReaper).
class Guardian {
 public:
  Guardian() = default;
  // Forks the guardian. Call while the process has one thread. Throws with
  // a message for a person (startup).
  void start();
  // The same without throwing, for the loop (a guardian re-forked after it
  // died): `failed_call` names the call that failed.
  std::error_code start(const char*& failed_call);
  void watch(pid_t pgid);
  void forget(pid_t pgid);
  pid_t pid() const { return pid_; }

  // A guardian handed over by the coordinator this one replaced, same pid
  // (docs/supervision.md, "Upgrade"): it keeps reading the same pipe.
  struct Carried {
    pid_t pid = -1;
    UniqueFd pipe;
    UniqueFd pidfd;
    std::vector<pid_t> groups;
  };
  void adopt(Carried carried);
  // For an upgrade: the write end of the pipe, and the groups it knows.
  int pipe_fd() const { return pipe_.get(); }
  const std::unordered_set<pid_t>& groups() const { return groups_; }
  // Takes back the pidfd of the guardian (for ChildReaper::watch).
  UniqueFd take_pidfd() { return std::move(pidfd_); }

 private:
  void send(char op, pid_t pgid);

  UniqueFd pipe_;
  UniqueFd pidfd_;
  pid_t pid_ = -1;
  std::unordered_set<pid_t> groups_;
};

}  // namespace occasional::supervisor
