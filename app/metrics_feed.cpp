#include "app/metrics_feed.hpp"

#include <cstring>

#include "supervisor/event_log.hpp"

namespace occasional::gateway {

namespace {
double seconds(supervisor::Duration d) {
  return std::chrono::duration<double>(d).count();
}
}  // namespace

metrics::ExitSummary summarize(const supervisor::ExitRecord& r) {
  metrics::ExitSummary e;
  e.replica = r.replica;
  e.pid = r.pid;
  e.started_at = supervisor::rfc3339(r.started_at);
  e.exited_at = supervisor::rfc3339(r.exited_at);
  e.uptime_seconds = seconds(r.uptime);
  e.outcome = r.kind_name();
  e.code = r.code;
  if (r.kind == supervisor::ExitKind::killed) e.signal = supervisor::signal_name(r.signal);
  e.core_dumped = r.core_dumped;
  e.description = r.describe();
  e.stated_reason = r.stated_reason.value_or("");
  return e;
}

const std::deque<metrics::ExitSummary>& MetricsFeed::recent_exits(
    const std::string& service) const {
  static const std::deque<metrics::ExitSummary> kNone;
  auto it = exits_.find(service);
  return it == exits_.end() ? kNone : it->second;
}

namespace {
int64_t minute_of(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::minutes>(t.time_since_epoch()).count();
}
}  // namespace

void MetricsFeed::count_restart(const std::string& service,
                                std::chrono::steady_clock::time_point now) {
  RestartHistory& h = restarts_[service];
  const int64_t m = minute_of(now);
  const size_t slot = static_cast<size_t>(m % 60);
  if (h.minute[slot] != m) {
    h.minute[slot] = m;
    h.count[slot] = 0;
  }
  ++h.count[slot];
}

std::vector<uint32_t> MetricsFeed::restarts_per_minute(
    const std::string& service, std::chrono::steady_clock::time_point now) const {
  std::vector<uint32_t> out(60, 0);
  auto it = restarts_.find(service);
  if (it == restarts_.end()) return out;
  const int64_t last = minute_of(now);
  for (int64_t i = 0; i < 60; ++i) {
    const int64_t m = last - 59 + i;
    if (m < 0) continue;
    const size_t slot = static_cast<size_t>(m % 60);
    if (it->second.minute[slot] == m) out[static_cast<size_t>(i)] = it->second.count[slot];
  }
  return out;
}

void MetricsFeed::on_spawned(const std::string& service, int replica, pid_t) {
  const bool restart = crashed_.erase({service, replica}) > 0;
  metrics_.worker_started(service, restart);
  if (restart) count_restart(service, std::chrono::steady_clock::now());
}

void MetricsFeed::on_exited(const supervisor::ExitRecord& r) {
  const std::pair<std::string, int> key{r.service, r.replica};
  if (stopping_.erase(key) == 0) crashed_.insert(key);
  int code = r.code;
  if (r.kind == supervisor::ExitKind::killed) code = 128 + r.signal;
  if (r.kind == supervisor::ExitKind::start_failed) code = -1;
  metrics_.worker_exited(
      r.service, r.kind_name(),
      r.kind == supervisor::ExitKind::killed ? supervisor::signal_name(r.signal) : "none",
      r.core_dumped, code, seconds(r.uptime),
      std::chrono::duration<double>(r.exited_at.time_since_epoch()).count());
  auto& list = exits_[r.service];
  list.push_back(summarize(r));
  if (list.size() > kRecentExits) list.pop_front();
}

void MetricsFeed::on_restart_scheduled(const std::string& service, int,
                                       supervisor::Duration delay) {
  metrics_.restart_scheduled(service, seconds(delay));
}

void MetricsFeed::on_service_failed(const std::string& service, int, supervisor::Duration) {
  metrics_.service_failed(service);
}

void MetricsFeed::on_stopping(const std::string& service, int replica, pid_t) {
  stopping_.insert({service, replica});
}

void MetricsFeed::on_killed_at_grace(const std::string& service, int, pid_t) {
  metrics_.killed_at_grace(service);
}

void MetricsFeed::on_protocol_error(const std::string& service, int, const char* reason,
                                    const std::string&) {
  metrics_.protocol_error(service, reason);
}

void MetricsFeed::on_watchdog_timeout(const std::string& service, int, pid_t) {
  metrics_.watchdog_timeout(service);
}

void MetricsFeed::on_accept_probe_failed(const std::string& service, int, const std::string&) {
  metrics_.accept_probe_failed(service);
}

void MetricsFeed::on_closed_counter_unavailable(const std::string& service, int,
                                                const std::string&) {
  metrics_.closed_counter_unavailable(service);
}

void MetricsFeed::on_closed_counter_clamped(const std::string& service, int, const char* reason,
                                            uint64_t, uint64_t) {
  metrics_.closed_counter_clamped(service, reason);
}

void MetricsFeed::on_spawn_deferred(const std::string& service, int, const char* call, int error,
                                    supervisor::Duration) {
  metrics_.spawn_deferred(service, std::string(call) + "_" +
                                       (strerrorname_np(error) ? strerrorname_np(error) : "other"));
}

}  // namespace occasional::gateway
