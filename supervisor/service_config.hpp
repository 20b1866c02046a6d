#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "supervisor/exit_record.hpp"
#include "supervisor/process_spec.hpp"
#include "supervisor/restart_policy.hpp"
#include "workers/worker_mode.hpp"

namespace occasional::supervisor {

// When a listen_fds worker starts taking connections, as systemd's Type=.
enum class Readiness {
  notify,     // on READY=1 (Type=notify)
  started,    // once it runs (Type=exec)
  accepting,  // on READY=1, or once it is seen waiting to accept on the listener
};

const char* readiness_name(Readiness readiness);
// The readiness of that name (notify, started, accepting), or nullopt.
std::optional<Readiness> parse_readiness(std::string_view name);

struct ServiceConfig {
  std::string name;
  ProcessSpec process;
  workers::WorkerMode mode = workers::WorkerMode::plain;
  int replicas = 1;
  RestartConfig restart;
  // Between SIGTERM (or `drain`) and SIGKILL of the process group when stopping.
  Duration grace = std::chrono::seconds(10);
  // listen_fds: the listening socket (borrowed) and its name for LISTEN_FDNAMES.
  int listen_fd = -1;
  std::string listener_name;
  // listen_fds: once it has sent READY=1, the worker must send WATCHDOG=1 at
  // least this often; zero: no watchdog.
  Duration watchdog{};
  // listen_fds: gunicorn says READY=1; uvicorn and Python's http.server do not.
  Readiness readiness = Readiness::accepting;
  // readiness `accepting`: a worker not seen waiting to accept by then is
  // taken as ready and no longer looked at (docs/gateway.md).
  Duration accept_probe_for = std::chrono::seconds(60);
  // Each worker is a process of the coordinator's system, with its channel
  // after the mode's fds (docs/messages.md, "Workers are processes").
  // false: no channel, no name (for a program that uses that fd itself).
  bool process_channel = true;
};

}  // namespace occasional::supervisor
