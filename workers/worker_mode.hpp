#pragma once

#include <optional>
#include <string_view>

namespace occasional::workers {

// How a worker is connected to the coordinator (ARCHITECTURE.md, Worker
// kinds). A service is configured with one of the first four; the worker
// library finds itself in handoff, listen_fds or standalone.
enum class WorkerMode {
  plain,       // no connections: ready once spawned
  handoff,     // control socket at fd 3; ready on `ready`; connections as fds
  listen_fds,  // the listener at fd 3 (LISTEN_FDS); ready on READY=1 (NOTIFY_SOCKET)
  inetd,       // one process per connection: stdin and stdout are the socket
  standalone,  // no coordinator: the worker listens on an address with SO_REUSEPORT
};

// The name used in the configuration, `--mode` and the admin API.
const char* worker_mode_name(WorkerMode mode);

// A service's `mode` (plain, handoff, listen_fds, inetd), or nullopt.
std::optional<WorkerMode> parse_service_mode(std::string_view name);

}  // namespace occasional::workers
