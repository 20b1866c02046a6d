#include "supervisor/service_log.hpp"

#include <chrono>
#include <cstring>
#include <string>

namespace occasional::supervisor {
namespace {

double seconds(Duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

void ServiceLog::on_spawned(const std::string& service, int replica, pid_t pid) {
  log_.event(LogLevel::info, "spawn")
      .str("service", service)
      .num("replica", replica)
      .num("pid", pid);
}

void ServiceLog::on_exited(const ExitRecord& r) {
  const bool bad = !r.clean();
  auto line = log_.event(bad ? LogLevel::warn : LogLevel::info, "exit");
  line.str("service", r.service)
      .num("replica", r.replica)
      .num("pid", r.pid)
      .str("started_at", rfc3339(r.started_at))
      .str("exited_at", rfc3339(r.exited_at))
      .real("uptime_seconds", seconds(r.uptime))
      .str("outcome", r.kind_name());
  switch (r.kind) {
    case ExitKind::exited:
      line.num("code", r.code);
      break;
    case ExitKind::killed:
      line.num("signal", r.signal)
          .str("signal_name", signal_name(r.signal))
          .flag("core_dumped", r.core_dumped);
      break;
    case ExitKind::start_failed:
      line.num("errno", r.error).str("failed_call", r.failed_call);
      break;
  }
  line.str("description", r.describe());
  if (r.stated_reason) line.str("stated_reason", *r.stated_reason);
}

void ServiceLog::on_restart_scheduled(const std::string& service, int replica, Duration delay) {
  log_.event(LogLevel::info, "restart_scheduled")
      .str("service", service)
      .num("replica", replica)
      .real("delay_seconds", seconds(delay));
}

void ServiceLog::on_service_failed(const std::string& service, int restarts, Duration window) {
  log_.event(LogLevel::error, "service_failed")
      .str("service", service)
      .str("reason", "a replica restarted more than max_restarts times within window")
      .num("max_restarts", restarts)
      .real("window_seconds", seconds(window));
}

void ServiceLog::on_service_retry_scheduled(const std::string& service, Duration delay) {
  log_.event(LogLevel::warn, "service_retry_scheduled")
      .str("service", service)
      .real("delay_seconds", seconds(delay));
}

void ServiceLog::on_accept_probe_failed(const std::string& service, int replica,
                                        const std::string& error) {
  log_.event(LogLevel::warn, "accept_probe_failed")
      .str("service", service)
      .num("replica", replica)
      .str("error", error)
      .str("action", "taken as ready (as readiness started)");
}

void ServiceLog::on_stopping(const std::string& service, int replica, pid_t pid) {
  log_.event(LogLevel::info, "stop")
      .str("service", service)
      .num("replica", replica)
      .num("pid", pid);
}

void ServiceLog::on_killed_at_grace(const std::string& service, int replica, pid_t pid) {
  log_.event(LogLevel::warn, "grace_expired")
      .str("service", service)
      .num("replica", replica)
      .num("pid", pid)
      .str("action", "SIGKILL to the process group");
}

void ServiceLog::on_idle(const std::string& service) {
  log_.event(LogLevel::info, "service_idle").str("service", service);
}

void ServiceLog::on_ready(const std::string& service, int replica, WorkerLink*) {
  log_.event(LogLevel::info, "ready").str("service", service).num("replica", replica);
}

void ServiceLog::on_unready(const std::string& service, int replica) {
  log_.event(LogLevel::info, "unready").str("service", service).num("replica", replica);
}

void ServiceLog::on_protocol_error(const std::string& service, int replica, const char* reason,
                                   const std::string& error) {
  log_.event(LogLevel::error, "protocol_error")
      .str("service", service)
      .num("replica", replica)
      .str("reason", reason)
      .str("error", error)
      .str("action", "SIGKILL to the worker's process group; the restart policy applies");
}

void ServiceLog::on_watchdog_timeout(const std::string& service, int replica, pid_t pid) {
  log_.event(LogLevel::error, "watchdog_timeout")
      .str("service", service)
      .num("replica", replica)
      .num("pid", pid)
      .str("action", "SIGKILL to the worker's process group; the restart policy applies");
}

void ServiceLog::on_closed_counter_unavailable(const std::string& service, int replica,
                                               const std::string& error) {
  log_.event(LogLevel::warn, "closed_counter_unavailable")
      .str("service", service)
      .num("replica", replica)
      .str("error", error)
      .str("action", "the worker goes on sending a closed message per connection");
}

void ServiceLog::on_closed_counter_clamped(const std::string& service, int replica,
                                           const char* reason, uint64_t read, uint64_t used) {
  log_.event(LogLevel::warn, "closed_counter_clamped")
      .str("service", service)
      .num("replica", replica)
      .str("reason", reason)
      .str("read", std::to_string(read))
      .str("used", std::to_string(used));
}

void ServiceLog::on_spawn_deferred(const std::string& service, int replica, const char* call,
                                   int error, Duration delay) {
  log_.event(LogLevel::error, "spawn_deferred")
      .str("service", service)
      .num("replica", replica)
      .str("failed_call", call)
      .num("errno", error)
      .str("error", std::strerror(error))
      .real("delay_seconds", seconds(delay))
      .str("action", "retried; not counted towards the restart intensity");
}

void ServiceLog::on_status(const std::string& service, int replica, const std::string& text) {
  log_.event(LogLevel::info, "worker_status")
      .str("service", service)
      .num("replica", replica)
      .str("text", text);
}

}  // namespace occasional::supervisor
