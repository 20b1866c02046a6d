#include "workers/worker_mode.hpp"

namespace occasional::workers {

const char* worker_mode_name(WorkerMode mode) {
  switch (mode) {
    case WorkerMode::plain:
      return "plain";
    case WorkerMode::handoff:
      return "handoff";
    case WorkerMode::listen_fds:
      return "listen_fds";
    case WorkerMode::inetd:
      return "inetd";
    case WorkerMode::standalone:
      return "standalone";
  }
  return "?";
}

std::optional<WorkerMode> parse_service_mode(std::string_view name) {
  for (WorkerMode m :
       {WorkerMode::plain, WorkerMode::handoff, WorkerMode::listen_fds, WorkerMode::inetd})
    if (name == worker_mode_name(m)) return m;
  return std::nullopt;
}

}  // namespace occasional::workers
