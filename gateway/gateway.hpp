#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gateway/config.hpp"
#include "gateway/cpu_budget.hpp"
#include "gateway/dispatcher.hpp"
#include "gateway/listener.hpp"
#include "gateway/router.hpp"
#include "gateway/shared_listener_guard.hpp"
#include "metrics/connection_stats.hpp"
#include "supervisor/event_log.hpp"

namespace occasional::gateway {

// The bound on connections being routed (in the peek) at once, across
// listeners, for a process allowed `fd_limit` open fds: half of them, at
// least 64 and at most kMaxRoutingCap.
inline constexpr uint64_t kMaxRoutingCap = 1'000'000;
size_t max_routing_for(uint64_t fd_limit);

// The data plane: the listeners, each with its Router, feeding one
// Dispatcher. Binds every listener at construction (startup: throws),
// except those in `activated`: sockets from systemd socket activation, by
// listener name (app/socket_activation.hpp).
// `cpu` decides how a service whose `burst` is auto deals out bursts;
// `fd_limit` is the coordinator's soft RLIMIT_NOFILE (raise_fd_limit).
class Gateway {
 public:
  Gateway(boost::asio::io_context& io, const Config& config, const CpuBudget& cpu,
          uint64_t fd_limit, const supervisor::EventLog& log,
          std::map<std::string, UniqueFd> activated = {});

  Dispatcher& dispatcher() { return dispatcher_; }
  // What must hear the supervisor's reports: the dispatcher, and the guard
  // of each listener shared with listen_fds workers.
  std::vector<supervisor::ServiceObserver*> observers();
  metrics::ConnectionStats& stats() { return stats_; }
  // The listening fd of a listener (for listen_fds services), or -1.
  int listener_fd(const std::string& name);
  // Starts accepting on every listener that has routes.
  void start();
  // Stops accepting; closes connections still being routed or queued.
  void stop();

  // For a coordinator upgrade (docs/supervision.md, "Upgrade"): stop
  // accepting (new clients wait in the listen backlog), and accept again.
  void pause_accepting();
  void resume_accepting();
  // No connection being routed, staged or queued.
  bool quiet() const;
  // Every listening socket by listener name.
  std::map<std::string, int> listener_fds();

 private:
  struct Port {
    std::unique_ptr<Listener> listener;
    std::unique_ptr<Router> router;  // null for a listener shared with listen_fds workers
    std::unique_ptr<SharedListenerGuard> guard;  // for a listener shared with listen_fds workers
  };

  const supervisor::EventLog& log_;
  metrics::ConnectionStats stats_;
  Dispatcher dispatcher_;
  std::vector<Port> ports_;
};

}  // namespace occasional::gateway
