#pragma once

#include <functional>
#include <set>
#include <string>

#include "app/metrics_feed.hpp"
#include "gateway/dispatcher.hpp"
#include "metrics/admin_server.hpp"
#include "supervisor/event_log.hpp"
#include "supervisor/supervisor.hpp"

namespace occasional::gateway {

// The admin API over this coordinator: status from the supervisor, the
// balancers and the exit history; operations on the supervisor's services.
class CoordinatorAdmin : public metrics::AdminBackend {
 public:
  // `on_operator_stop(true)` when a service is stopped through the API, so
  // that the coordinator keeps running with nothing to do.
  CoordinatorAdmin(supervisor::Supervisor& supervisor, Dispatcher& dispatcher,
                   const metrics::ConnectionStats& connections, const MetricsFeed& feed,
                   const supervisor::EventLog& log, std::function<void(bool)> on_operator_stop);

  metrics::Status status() override;
  metrics::ActionResult act(const std::string& service, const std::string& action,
                            int replicas) override;
  void upgrade(const std::string& binary, UpgradeDone done) override;
  // What performs an upgrade (Upgrader::begin); none: 404.
  void on_upgrade(std::function<void(const std::string&, UpgradeDone)> f) {
    on_upgrade_ = std::move(f);
  }

 private:
  metrics::ServiceStatus service_status(const supervisor::Service& s);
  metrics::ServiceStatus inetd_status(const supervisor::InetdService& s);
  metrics::ActionResult act_inetd(supervisor::InetdService& s, const std::string& action);

  supervisor::Supervisor& supervisor_;
  Dispatcher& dispatcher_;
  const metrics::ConnectionStats& connections_;
  const MetricsFeed& feed_;
  const supervisor::EventLog& log_;
  std::function<void(bool)> on_operator_stop_;
  std::set<std::string> stopped_;  // by an operator
  std::function<void(const std::string&, UpgradeDone)> on_upgrade_;
};

}  // namespace occasional::gateway
