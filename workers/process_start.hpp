#pragma once

#include <sys/types.h>

#include "workers/process.hpp"

// How a process begins, shared by Process::spawn (a clone of the spawner)
// and run() (process zero, a fork of the coordinator).
namespace occasional::process_start {

// The calling process's threads per /proc/self/stat; 0 if it cannot be read.
int thread_count();

// Throws std::logic_error naming `what` when the caller has other threads.
void require_single_thread(const char* what);

// In the new child, right after the fork: keeps fds 0-2, `control_fd`
// (moved to 3) and, for process zero of a handoff worker, the coordinator's
// `gateway_fd` (moved to 4; it must be above 4), and closes every other,
// starts its own process group, dies
// with the coordinator, resets signal handling, runs `body` as `self`,
// reports the result on the control channel and exits (0 after a returned
// value, 1 after an uncaught exception). Never returns.
[[noreturn]] void run_child(int control_fd, const Address& self, pid_t coordinator,
                            Process::Body& body, int gateway_fd = -1);

// Runs `body` as `p`, reports its exit reason (a returned value, or an
// uncaught exception's type and what()) once every batched message is
// written, and returns that reason.
Map run_body(Process& p, Process::Body& body);

// For occasional::run in a service's worker: `p` (from_environment) takes
// the handoff worker's control channel, for tcp::gateway_start.
void give_gateway(Process& p, UniqueFd gateway);

}  // namespace occasional::process_start
