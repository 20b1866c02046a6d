#include "app/coordinator_admin.hpp"

#include "app/process_metrics.hpp"

#include <algorithm>

namespace occasional::gateway {

using supervisor::LogLevel;

namespace {
double seconds_since(supervisor::MonoTime t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

CoordinatorAdmin::CoordinatorAdmin(supervisor::Supervisor& supervisor, Dispatcher& dispatcher,
                                   const metrics::ConnectionStats& connections,
                                   const MetricsFeed& feed, const supervisor::EventLog& log,
                                   std::function<void(bool)> on_operator_stop)
    : supervisor_(supervisor),
      dispatcher_(dispatcher),
      connections_(connections),
      feed_(feed),
      log_(log),
      on_operator_stop_(std::move(on_operator_stop)) {}

metrics::ServiceStatus CoordinatorAdmin::service_status(const supervisor::Service& s) {
  metrics::ServiceStatus out;
  out.name = s.name();
  out.mode = workers::worker_mode_name(s.config().mode);
  out.replicas = s.replica_count();
  out.failed = s.failed();
  if (const auto retry = s.retry_at()) out.retry_in_seconds = std::max(0.0, -seconds_since(*retry));
  out.stopped = stopped_.contains(s.name());
  out.rolling_restart = s.rolling_restart_active();
  const Balancer* balancer = dispatcher_.find(s.name());
  for (int i = 0; i < s.table_size(); ++i) {
    const auto state = s.replica_state(i);
    if (state == supervisor::ReplicaState::stopped) continue;
    metrics::WorkerStatus w;
    w.replica = i;
    w.state = supervisor::replica_state_name(state);
    if (state == supervisor::ReplicaState::running || state == supervisor::ReplicaState::stopping) {
      w.pid = s.replica_pid(i);
      w.uptime_seconds = w.pid > 0 ? seconds_since(s.replica_started(i)) : 0;
    } else if (state == supervisor::ReplicaState::backoff) {
      w.restart_in_seconds = std::max(0.0, -seconds_since(s.replica_restart_at(i)));
    }
    w.ready = s.replica_ready(i);
    w.status_text = s.replica_status_text(i);
    if (balancer) w.open_connections = balancer->outstanding(i);
    out.ready_workers += w.ready ? 1 : 0;
    out.workers.push_back(std::move(w));
  }
  const auto& exits = feed_.recent_exits(s.name());
  out.recent_exits.assign(exits.begin(), exits.end());
  out.restarts_per_minute = feed_.restarts_per_minute(s.name());
  return out;
}

metrics::ServiceStatus CoordinatorAdmin::inetd_status(const supervisor::InetdService& s) {
  metrics::ServiceStatus out;
  out.name = s.name();
  out.mode = "inetd";
  out.replicas = s.config().max_processes;
  out.stopped = s.stopped();
  // Ready while it takes connections: each starts its own process.
  out.ready_workers = s.stopped() ? 0 : s.config().max_processes;
  for (const auto& p : s.processes()) {
    metrics::WorkerStatus w;
    w.replica = p.slot;
    w.pid = p.pid;
    w.state = "running";
    w.ready = true;
    w.uptime_seconds = seconds_since(p.started);
    w.open_connections = 1;
    out.workers.push_back(std::move(w));
  }
  const auto& exits = feed_.recent_exits(s.name());
  out.recent_exits.assign(exits.begin(), exits.end());
  out.restarts_per_minute = feed_.restarts_per_minute(s.name());
  return out;
}

metrics::Status CoordinatorAdmin::status() {
  metrics::Status st;
  for (const auto& s : supervisor_.services()) st.services.push_back(service_status(*s));
  for (const auto& s : supervisor_.inetd_services()) st.services.push_back(inetd_status(*s));
  for (const auto& [name, counts] : connections_.listeners)
    st.listeners.push_back(
        {name, counts.address, counts.accepted, counts.handed_off, counts.rejected});
  st.notify_rejected = supervisor_.notify_rejected();
  st.orphans_reaped = supervisor_.reaper().orphans_reaped();
  st.supervisor_errors = supervisor_.loop_errors();
  st.log_lines_dropped = supervisor_.log().dropped();
  st.processes = processes_status(supervisor_.hub());
  return st;
}

metrics::ActionResult CoordinatorAdmin::act_inetd(supervisor::InetdService& s,
                                                  const std::string& action) {
  if (action == "stop") {
    stopped_.insert(s.name());
    on_operator_stop_(true);
    s.stop();
    return {200, "service " + s.name() + " stops taking connections; its processes get SIGTERM"};
  }
  if (action == "start") {
    stopped_.erase(s.name());
    if (stopped_.empty()) on_operator_stop_(false);
    s.start();
    return {200, "service " + s.name() + " takes connections again"};
  }
  return {409, "service " + s.name() + " is inetd (a process per connection): " + action +
                   " does not apply; use stop and start"};
}

metrics::ActionResult CoordinatorAdmin::act(const std::string& name, const std::string& action,
                                            int replicas) {
  log_.event(LogLevel::info, "admin_action")
      .str("service", name)
      .str("action", action)
      .num("replicas", replicas);
  if (supervisor::InetdService* inetd = supervisor_.find_inetd(name))
    return act_inetd(*inetd, action);
  supervisor::Service* s = supervisor_.find(name);
  if (!s) return {404, "no service named '" + name + "'"};
  if (action == "restart") {
    if (s->failed())
      return {409, "service " + name + " is failed: start it (ctl start " + name + ")"};
    if (stopped_.contains(name))
      return {409, "service " + name + " is stopped: start it (ctl start " + name + ")"};
    if (!s->rolling_restart())
      return {409, "a rolling restart of " + name + " is already under way"};
    return {202, "rolling restart of " + name + " started: each worker is replaced once its " +
                     "replacement is ready"};
  }
  if (action == "scale") {
    s->scale(replicas);
    return {200, "service " + name + " scaled to " + std::to_string(replicas) + " replicas"};
  }
  if (action == "stop") {
    stopped_.insert(name);
    on_operator_stop_(true);
    s->stop();
    return {200, "service " + name + " is stopping (drain, then SIGKILL at the grace deadline)"};
  }
  if (action == "start") {
    stopped_.erase(name);
    if (stopped_.empty()) on_operator_stop_(false);
    s->start();
    return {200, "service " + name + " started"};
  }
  return {404, "unknown action '" + action + "'"};
}

void CoordinatorAdmin::upgrade(const std::string& binary, UpgradeDone done) {
  if (!on_upgrade_) return metrics::AdminBackend::upgrade(binary, std::move(done));
  on_upgrade_(binary, std::move(done));
}

}  // namespace occasional::gateway
