#pragma once

#include <functional>
#include <string>
#include <system_error>

#include "supervisor/service_config.hpp"
#include "supervisor/spawner.hpp"
#include "workers/unique_fd.hpp"

namespace occasional::supervisor {

// Takes the coordinator's end of a handoff worker's control socket, before
// the fork: registering it with the loop can fail (EMFILE, ENOMEM from
// epoll), and failing then leaves no process to clean up.
using AdoptControl = std::function<std::error_code(UniqueFd control)>;

// Starts replica `replica` of `config` (as spawn_process: on success the
// program runs, otherwise no process is left) with what its mode gives a worker
// (ARCHITECTURE.md, Worker kinds), OCCASIONAL_SERVICE and OCCASIONAL_REPLICA
// in every mode:
// - plain: nothing more;
// - handoff: one end of a SOCK_SEQPACKET socketpair as fd 3, blocking, with
//   OCCASIONAL_CONTROL_FD=3; the other end, non-blocking, goes to
//   `adopt_control` (whose error fails the launch as "register_link");
// - listen_fds: the listening socket as fd 3 with LISTEN_FDS=1, LISTEN_PID
//   and LISTEN_FDNAMES (systemd socket activation), NOTIFY_SOCKET unless
//   `notify_socket` is empty, and WATCHDOG_USEC when there is a watchdog.
// inetd and standalone workers are not a Service's: asking for one aborts.
// A `process_channel` (>= 0: the child's end of its ProcessHub control
// channel) follows the mode's fds, as fd 3 (plain) or 4, named by
// OCCASIONAL_PROCESS_FD.
SpawnResult launch_worker(const ServiceConfig& config, int replica,
                          const std::string& notify_socket, const AdoptControl& adopt_control,
                          int process_channel = -1);

// Whether a launch failed for want of the coordinator's own fds, memory or
// processes — in a call it makes for itself before the child runs — rather
// than through the worker's fault (a failed execve: ENOENT, EACCES, ...).
bool coordinator_exhausted(int error, const char* call);

}  // namespace occasional::supervisor
