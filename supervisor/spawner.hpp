#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <string>

#include "supervisor/process_spec.hpp"
#include "workers/unique_fd.hpp"

namespace occasional::supervisor {

// The outcome of one fork/exec. On success `pid` runs the program (exec has
// already succeeded) and `pidfd` refers to it; otherwise `error` is the errno
// of `failed_call` and no process is left behind.
struct SpawnResult {
  pid_t pid = -1;
  UniqueFd pidfd;
  int error = 0;
  const char* failed_call = "";

  bool ok() const { return error == 0; }
};

// Starts `spec` (clone with CLONE_VM|CLONE_VFORK, then exec). The child is a process group leader,
// dies with the coordinator (PR_SET_PDEATHSIG), has default signal dispositions, an empty signal
// mask and exactly fds 0, 1, 2 and spec.pass_fds (as 3, 4, ...). Blocks only until the child has
// exec'd or failed to (a CLOEXEC pipe says which), so an exec failure is known before this returns.
SpawnResult spawn_process(const ProcessSpec& spec);

// The soft RLIMIT_NOFILE every process spawned from now on starts with.
// The coordinator raises its own soft limit to the hard one (docs/gateway.md);
// its workers get the limit it was started with, as systemd and Go's os/exec
// do: select() fails on fds past 1024, and some programs close every fd up
// to the limit at start. Without a call, children inherit ours.
void set_worker_fd_limit(rlim_t soft);

// Looks `name` up like execvp does, in `path_var` (a PATH value). Returns
// empty when nothing executable is found. Names with a '/' are returned as is.
std::string find_executable(const std::string& name, const std::string& path_var);

}  // namespace occasional::supervisor
