#include "gateway/gateway.hpp"

#include <algorithm>
#include <chrono>
#include <set>

namespace occasional::gateway {

size_t max_routing_for(uint64_t fd_limit) {
  // Half the fds for connections being routed leaves the other half for
  // queued connections, workers' sockets and pidfds, spawns and the admin
  // endpoint: a flood of silent clients can then not starve a spawn of fds.
  // Where the hard limit is all but unbounded (containerd's is about 1e9),
  // half of it bounds nothing: memory would run out first.
  return static_cast<size_t>(std::clamp<uint64_t>(fd_limit / 2, 64, kMaxRoutingCap));
}

Gateway::Gateway(boost::asio::io_context& io, const Config& config, const CpuBudget& cpu,
                 uint64_t fd_limit, const supervisor::EventLog& log,
                 std::map<std::string, UniqueFd> activated)
    : log_(log), dispatcher_(stats_) {
  const size_t max_routing = max_routing_for(fd_limit);
  stats_.routing_max = max_routing;
  for (const ServiceEntry& s : config.services) {
    if (s.service.mode != workers::WorkerMode::handoff) continue;
    BalancerConfig balancer = s.balancer;
    if (balancer.burst == BurstMode::automatic)
      balancer.burst = cpu.one_cpu() ? BurstMode::runs : BurstMode::spread;
    dispatcher_.add_service(io, s.service.name, balancer, log);
    log.event(supervisor::LogLevel::info, "balancing")
        .str("service", s.service.name)
        .str("burst", burst_mode_name(balancer.burst))
        .str("configured", burst_mode_name(s.balancer.burst))
        .num("affinity_cpus", cpu.affinity_cpus)
        .real("quota_cores", cpu.quota_cores);
  }
  for (const ListenerConfig& l : config.listeners) {
    Port port;
    auto passed = activated.find(l.name);
    const bool is_activated = passed != activated.end();
    port.listener =
        std::make_unique<Listener>(io, l.name, l.address, l.defer_accept, stats_, log,
                                   is_activated ? std::move(passed->second) : UniqueFd());
    std::set<std::string> sharing;
    std::chrono::milliseconds grace = std::chrono::milliseconds::max();
    for (const ServiceEntry& s : config.services)
      if (s.service.mode == workers::WorkerMode::listen_fds && s.listener == l.name) {
        sharing.insert(s.service.name);
        grace = std::min(grace, s.balancer.queue_timeout);
      }
    if (!sharing.empty())
      port.guard = std::make_unique<SharedListenerGuard>(io, *port.listener, std::move(sharing),
                                                         grace, stats_, log);
    if (!l.routes.empty())
      port.router =
          std::make_unique<Router>(io, RouteTable(l.routes), l.peek, dispatcher_, stats_, log);
    log.event(supervisor::LogLevel::info, "listening")
        .str("listener", l.name)
        .str("address", l.address.text)
        .num("port", port.listener->port())
        .flag("socket_activated", is_activated)
        .flag("defer_accept", l.defer_accept)
        .num("max_routing", static_cast<int64_t>(max_routing))
        .str("accepts", port.router ? "coordinator" : "listen_fds workers");
    ports_.push_back(std::move(port));
  }
}

int Gateway::listener_fd(const std::string& name) {
  for (Port& p : ports_)
    if (p.listener->name() == name) return p.listener->fd();
  return -1;
}

std::vector<supervisor::ServiceObserver*> Gateway::observers() {
  std::vector<supervisor::ServiceObserver*> out{&dispatcher_};
  for (Port& p : ports_)
    if (p.guard) out.push_back(p.guard.get());
  return out;
}

void Gateway::start() {
  for (Port& p : ports_) {
    if (p.guard) p.guard->start();
    if (!p.router) continue;
    Router* router = p.router.get();
    // A listener accepts while at least one service it routes to has room
    // in its queue (or is unknown: that connection is closed and counted).
    // Routed connections for a full service are still closed as queue_full.
    std::vector<const PendingQueue*> queues;
    for (const Route& r : router->table().routes()) queues.push_back(dispatcher_.queue(r.service));
    p.listener->start(
        [router](UniqueFd fd, workers::ConnHeader header) {
          router->route(std::move(fd), std::move(header));
        },
        [queues = std::move(queues)] {
          for (const PendingQueue* q : queues)
            if (!q || !q->full()) return true;
          return queues.empty();
        },
        [this](bool begin) {
          if (begin)
            dispatcher_.begin_burst();
          else
            dispatcher_.end_burst();
        });
  }
  dispatcher_.on_queue_room([this] {
    for (Port& p : ports_)
      if (p.router) p.listener->resume();
  });
}

void Gateway::pause_accepting() {
  for (Port& p : ports_)
    if (p.router) p.listener->stop();
}

void Gateway::resume_accepting() {
  for (Port& p : ports_)
    if (p.router) p.listener->restart();
}

bool Gateway::quiet() const {
  return stats_.peeking == 0 && stats_.pending == 0 && dispatcher_.idle();
}

std::map<std::string, int> Gateway::listener_fds() {
  std::map<std::string, int> out;
  for (Port& p : ports_) out[p.listener->name()] = p.listener->fd();
  return out;
}

void Gateway::stop() {
  for (Port& p : ports_) {
    if (p.guard) p.guard->stop();
    if (!p.router) continue;
    p.listener->close();
    p.router->close_all();
  }
  dispatcher_.close_queues();
  log_.event(supervisor::LogLevel::info, "gateway_stopped")
      .num("accepted", static_cast<int64_t>(stats_.accepted))
      .num("handed_off", static_cast<int64_t>(stats_.handed_off));
}

}  // namespace occasional::gateway
