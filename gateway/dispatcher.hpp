#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "gateway/balancer.hpp"
#include "gateway/inetd_launcher.hpp"
#include "metrics/connection_stats.hpp"
#include "supervisor/service_observer.hpp"

namespace occasional::gateway {

// Routes a connection to its service's Balancer and keeps each Balancer's
// set of ready workers in step with the supervisor's reports.
class Dispatcher : public supervisor::ServiceObserver {
 public:
  Dispatcher(metrics::ConnectionStats& stats) : stats_(stats) {}

  void add_service(boost::asio::io_context& io, const std::string& service, BalancerConfig config,
                   const supervisor::EventLog& log);
  void add_inetd(boost::asio::io_context& io, supervisor::InetdService& service, QueueConfig queue);
  void dispatch(const std::string& service, UniqueFd fd, workers::ConnHeader header);
  // A listener takes several waiting connections at once: handoffs made
  // until end_burst may go out together (Balancer).
  void begin_burst();
  void end_burst();
  void close_queues();
  Balancer* find(const std::string& service);
  // Nothing staged or queued in any balancer or inetd launcher.
  bool idle() const;
  // The pending queue of a service, or null when there is no such service.
  const PendingQueue* queue(const std::string& service);
  // `f` runs whenever a full queue has room again.
  void on_queue_room(const std::function<void()>& f);

  void on_ready(const std::string& service, int replica, supervisor::WorkerLink* link) override;
  void on_unready(const std::string& service, int replica) override;
  void on_conn_closed(const std::string& service, int replica, uint64_t id) override;
  void on_exited(const supervisor::ExitRecord& record) override;

 private:
  metrics::ConnectionStats& stats_;
  std::map<std::string, std::unique_ptr<Balancer>, std::less<>> balancers_;
  std::map<std::string, std::unique_ptr<InetdLauncher>, std::less<>> inetd_;
};

}  // namespace occasional::gateway
