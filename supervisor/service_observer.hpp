#pragma once

#include <sys/types.h>

#include <string>

#include "supervisor/exit_record.hpp"

namespace occasional::supervisor {

// What a service reports as its workers come and go. The event log is one
// observer; metrics and tests are others.
class ServiceObserver {
 public:
  virtual ~ServiceObserver() = default;
  virtual void on_spawned(const std::string& service, int replica, pid_t pid) = 0;
  virtual void on_exited(const ExitRecord& record) = 0;
  virtual void on_restart_scheduled(const std::string& service, int replica, Duration delay) = 0;
  virtual void on_service_failed(const std::string& service, int restarts, Duration window) = 0;
  virtual void on_stopping(const std::string& service, int replica, pid_t pid) = 0;
  virtual void on_killed_at_grace(const std::string& service, int replica, pid_t pid) = 0;
  // The service has no process and nothing scheduled.
  virtual void on_idle(const std::string& service) = 0;
};

}  // namespace occasional::supervisor
