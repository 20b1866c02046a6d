#pragma once

#include <array>
#include <chrono>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "metrics/metrics.hpp"
#include "metrics/status.hpp"
#include "supervisor/service_observer.hpp"

namespace occasional::gateway {

// Feeds the supervisor's lifecycle events to the metrics, and keeps the last
// exit records of each service for /v1/status.
class MetricsFeed : public supervisor::ServiceObserver {
 public:
  static constexpr size_t kRecentExits = 20;

  explicit MetricsFeed(metrics::Metrics& metrics) : metrics_(metrics) {}

  const std::deque<metrics::ExitSummary>& recent_exits(const std::string& service) const;
  // Restarts of `service` in each of the last 60 minutes up to `now`, oldest first.
  std::vector<uint32_t> restarts_per_minute(
      const std::string& service,
      std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now()) const;
  void count_restart(const std::string& service, std::chrono::steady_clock::time_point now);

  void on_spawned(const std::string& service, int replica, pid_t pid) override;
  void on_exited(const supervisor::ExitRecord& record) override;
  void on_restart_scheduled(const std::string& service, int replica,
                            supervisor::Duration delay) override;
  void on_service_failed(const std::string& service, int restarts,
                         supervisor::Duration window) override;
  void on_stopping(const std::string& service, int replica, pid_t pid) override;
  void on_killed_at_grace(const std::string& service, int replica, pid_t pid) override;
  void on_protocol_error(const std::string& service, int replica, const char* reason,
                         const std::string& error) override;
  void on_watchdog_timeout(const std::string& service, int replica, pid_t pid) override;
  void on_accept_probe_failed(const std::string& service, int replica,
                              const std::string& error) override;
  void on_closed_counter_unavailable(const std::string& service, int replica,
                                     const std::string& error) override;
  void on_closed_counter_clamped(const std::string& service, int replica, const char* reason,
                                 uint64_t read, uint64_t used) override;
  void on_spawn_deferred(const std::string& service, int replica, const char* call, int error,
                         supervisor::Duration delay) override;

 private:
  metrics::Metrics& metrics_;
  std::map<std::string, std::deque<metrics::ExitSummary>> exits_;
  // A ring of per-minute counts: slot m % 60 holds minute m when minute_[slot] == m.
  struct RestartHistory {
    std::array<uint32_t, 60> count{};
    std::array<int64_t, 60> minute{};
  };
  std::map<std::string, RestartHistory> restarts_;
  // Replicas whose process exited without being asked to: their next start is a restart.
  std::set<std::pair<std::string, int>> crashed_;
  std::set<std::pair<std::string, int>> stopping_;
};

// The record as /v1/status shows it.
metrics::ExitSummary summarize(const supervisor::ExitRecord& record);

}  // namespace occasional::gateway
