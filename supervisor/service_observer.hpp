#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "supervisor/exit_record.hpp"

namespace occasional::supervisor {

class WorkerLink;

// What a service reports as its workers come and go. The event log is one
// observer; the gateway's balancer, metrics and tests are others. Each
// observer overrides what it needs.
class ServiceObserver {
 public:
  virtual ~ServiceObserver() = default;
  virtual void on_spawned(const std::string& /*service*/, int /*replica*/, pid_t /*pid*/) {}
  // The worker may receive connections: `link` is its control socket in
  // handoff mode, null in the other modes. Valid until on_unready or on_exited.
  virtual void on_ready(const std::string& /*service*/, int /*replica*/, WorkerLink* /*link*/) {}
  // The worker must receive no new connection (draining, stopping, STOPPING=1).
  virtual void on_unready(const std::string& /*service*/, int /*replica*/) {}
  // A handoff worker finished one connection (`closed` message).
  virtual void on_conn_closed(const std::string& /*service*/, int /*replica*/, uint64_t /*id*/) {}
  // A worker asked for a shared closed-connection counter and none could be
  // made or sent: it goes on sending `closed` messages, at more CPU per connection.
  virtual void on_closed_counter_unavailable(const std::string& /*service*/, int /*replica*/,
                                             const std::string& /*error*/) {}
  // The worker's shared closed counter read `read`, which cannot be true
  // (`reason`: backwards, beyond_handed); `used` was taken instead.
  virtual void on_closed_counter_clamped(const std::string& /*service*/, int /*replica*/,
                                         const char* /*reason*/, uint64_t /*read*/,
                                         uint64_t /*used*/) {}
  // A spawn failed for want of the coordinator's own resources (`call`
  // failed with `error`: EMFILE, ENFILE, ENOMEM, EAGAIN). Not the worker's
  // fault: it is retried after `delay` and does not count towards the
  // service's restart intensity.
  virtual void on_spawn_deferred(const std::string& /*service*/, int /*replica*/,
                                 const char* /*call*/, int /*error*/, Duration /*delay*/) {}
  virtual void on_exited(const ExitRecord& /*record*/) {}
  virtual void on_restart_scheduled(const std::string& /*service*/, int /*replica*/,
                                    Duration /*delay*/) {}
  virtual void on_service_failed(const std::string& /*service*/, int /*restarts*/,
                                 Duration /*window*/) {}
  // A failed service will be started again after `delay` (its cool-off).
  virtual void on_service_retry_scheduled(const std::string& /*service*/, Duration /*delay*/) {}
  virtual void on_stopping(const std::string& /*service*/, int /*replica*/, pid_t /*pid*/) {}
  virtual void on_killed_at_grace(const std::string& /*service*/, int /*replica*/, pid_t /*pid*/) {}
  // The worker broke the protocol (`reason` is a metric label); it is killed and restarted.
  virtual void on_protocol_error(const std::string& /*service*/, int /*replica*/,
                                 const char* /*reason*/, const std::string& /*error*/) {}
  virtual void on_watchdog_timeout(const std::string& /*service*/, int /*replica*/, pid_t /*pid*/) {
  }
  // readiness `accepting`: the worker could not be looked at, so it was
  // taken as ready at once.
  virtual void on_accept_probe_failed(const std::string& /*service*/, int /*replica*/,
                                      const std::string& /*error*/) {}
  virtual void on_status(const std::string& /*service*/, int /*replica*/,
                         const std::string& /*text*/) {}
  // The service has no process and nothing scheduled.
  virtual void on_idle(const std::string& /*service*/) {}
};

}  // namespace occasional::supervisor
