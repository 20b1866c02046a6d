#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "gateway/listener.hpp"
#include "metrics/connection_stats.hpp"
#include "supervisor/event_log.hpp"
#include "supervisor/service_observer.hpp"

namespace occasional::gateway {

// A listener shared with `listen_fds` workers, who accept on it themselves.
// With no worker ready to accept (the service failed or stopped, every
// replica in backoff, or crash-looping before it gets ready), clients would
// wait in the kernel's backlog for ever. Once no worker has been ready for
// `grace` (the services' queue.timeout: the promise handoff mode's queue
// makes), or at once when the service has nothing left to start, the guard
// accepts and closes each client itself (`no_worker`), until a worker is
// ready again. Spawns do not restart that clock: a worker that exits
// before it is ready does not hold clients longer.
class SharedListenerGuard : public supervisor::ServiceObserver {
 public:
  SharedListenerGuard(boost::asio::io_context& io, Listener& listener,
                      std::set<std::string> services, std::chrono::milliseconds grace,
                      metrics::ConnectionStats& stats, const supervisor::EventLog& log);

  // Before the first worker is spawned: refuses after `grace` unless one is ready.
  void start();
  // Leaves the socket to the workers for good (shutdown).
  void stop();
  bool refusing() const { return refusing_; }

  void on_spawned(const std::string& service, int replica, pid_t pid) override;
  void on_ready(const std::string& service, int replica, supervisor::WorkerLink* link) override;
  void on_unready(const std::string& service, int replica) override;
  void on_exited(const supervisor::ExitRecord& record) override;
  void on_idle(const std::string& service) override;
  // A failed service's retry is a cool-off away (10 s by default, longer for
  // each failure in a row), not a backoff: refused at once when its last
  // worker has gone, until one is ready again.
  void on_service_failed(const std::string& service, int restarts,
                         supervisor::Duration window) override;

 private:
  void nobody_ready();
  void refuse();
  void stop_refusing();

  Listener& listener_;
  std::set<std::string> services_;
  std::chrono::milliseconds grace_;
  metrics::ConnectionStats& stats_;
  const supervisor::EventLog& log_;
  boost::asio::steady_timer timer_;
  std::set<std::pair<std::string, int>> running_;  // (service, replica)
  std::set<std::pair<std::string, int>> ready_;    // (service, replica)
  std::set<std::string> failed_;                   // failed, none spawned since
  // Since when no worker has been ready (while the grace runs), if it runs.
  std::optional<std::chrono::steady_clock::time_point> unready_since_;
  bool refusing_ = false;
  bool stopped_ = false;
};

}  // namespace occasional::gateway
