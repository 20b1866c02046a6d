#pragma once

#include "supervisor/event_log.hpp"
#include "supervisor/service_observer.hpp"

namespace occasional::supervisor {

// Writes every lifecycle step of every service to the event log.
class ServiceLog : public ServiceObserver {
 public:
  explicit ServiceLog(const EventLog& log) : log_(log) {}

  void on_spawned(const std::string& service, int replica, pid_t pid) override;
  void on_exited(const ExitRecord& record) override;
  void on_restart_scheduled(const std::string& service, int replica, Duration delay) override;
  void on_service_failed(const std::string& service, int restarts, Duration window) override;
  void on_service_retry_scheduled(const std::string& service, Duration delay) override;
  void on_stopping(const std::string& service, int replica, pid_t pid) override;
  void on_killed_at_grace(const std::string& service, int replica, pid_t pid) override;
  void on_idle(const std::string& service) override;
  void on_ready(const std::string& service, int replica, WorkerLink* link) override;
  void on_unready(const std::string& service, int replica) override;
  void on_protocol_error(const std::string& service, int replica, const char* reason,
                         const std::string& error) override;
  void on_watchdog_timeout(const std::string& service, int replica, pid_t pid) override;
  void on_accept_probe_failed(const std::string& service, int replica,
                              const std::string& error) override;
  void on_status(const std::string& service, int replica, const std::string& text) override;
  void on_closed_counter_unavailable(const std::string& service, int replica,
                                     const std::string& error) override;
  void on_closed_counter_clamped(const std::string& service, int replica, const char* reason,
                                 uint64_t read, uint64_t used) override;
  void on_spawn_deferred(const std::string& service, int replica, const char* call, int error,
                         Duration delay) override;

 private:
  const EventLog& log_;
};

}  // namespace occasional::supervisor
