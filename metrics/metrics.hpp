#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "metrics/connection_stats.hpp"
#include "metrics/status.hpp"

namespace occasional::metrics {

// The Prometheus catalogue of docs/metrics.md. Lifecycle events are counted
// as they happen; gauges that describe the present (workers by state,
// readiness, connections pending) and the gateway's counters are read at
// scrape time from `status` and `connections`. prometheus-cpp stays in the
// .cpp file.
// Why the admin endpoint refused a request or a connection
// (occasional_admin_refused_total{reason}; docs/metrics.md).
inline constexpr const char* kAdminRefusals[] = {
    "no_token",       "wrong_token",      "cross_origin", "no_csrf_header",
    "body_too_large", "header_too_large", "malformed",    "timeout",
    "connection_cap", "probes_only",      "stream_cap",
};

// Why a message to the coordinator's own service manager was not sent
// (occasional_systemd_notify_errors_total{reason}; docs/metrics.md).
inline constexpr const char* kSystemdNotifyErrors[] = {"again", "no_listener", "other"};

// Why a coordinator upgrade did not happen; the old coordinator runs on
// (occasional_upgrade_failures_total{reason}; docs/metrics.md).
inline constexpr const char* kUpgradeFailures[] = {"busy", "unsupported", "self_test", "not_quiet",
                                                   "exec"};

class Metrics {
 public:
  Metrics(const ConnectionStats& connections, std::function<Status()> status);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Creates every series of `service` whose labels are known now, at 0, so
  // that Prometheus' increase() and rate() see its first event (a series
  // that appears at 1 has no increase). Call once per service at start.
  void declare_service(const std::string& service);
  // `restart`: the replica had exited and this start replaces that process.
  void worker_started(const std::string& service, bool restart);
  // `reason` is exited, killed or start_failed; `signal` a signal name or
  // "none"; `code` the exit code, or 128 + signal when killed.
  void worker_exited(const std::string& service, const std::string& reason,
                     const std::string& signal, bool core_dumped, int code, double uptime_seconds,
                     double exit_time_seconds);
  void restart_scheduled(const std::string& service, double delay_seconds);
  void service_failed(const std::string& service);
  void protocol_error(const std::string& service, const std::string& reason);
  void watchdog_timeout(const std::string& service);
  void accept_probe_failed(const std::string& service);
  void closed_counter_unavailable(const std::string& service);
  void killed_at_grace(const std::string& service);
  // `reason`: backwards, beyond_handed.
  void closed_counter_clamped(const std::string& service, const std::string& reason);
  // `reason`: the failed call and errno, e.g. socketpair_EMFILE.
  void spawn_deferred(const std::string& service, const std::string& reason);
  // One admin response by HTTP status code (0: the admin accept failed).
  void admin_request(int code);
  // One admin request or connection refused, by a reason of kAdminRefusals.
  void admin_refused(const std::string& reason);
  // One message to NOTIFY_SOCKET not sent, by a reason of kSystemdNotifyErrors.
  void systemd_notify_error(const std::string& reason);
  // GET /v1/events streams open now.
  void event_streams(size_t open);
  // One event stream dropped because its client did not take what it was sent.
  void event_stream_dropped();

  // This process took over from the coordinator it upgraded.
  void upgrade_done();
  // One upgrade that did not happen, by a reason of kUpgradeFailures.
  void upgrade_failed(const std::string& reason);
  // Every counter and histogram as exported now (process_* aside: the
  // kernel keeps those across execve), as text for the coordinator that
  // replaces this one; carry_counters() there adds them to what it counts,
  // so no counter goes back in Prometheus. Throws std::invalid_argument on
  // text it does not understand.
  std::string carried_counters() const;
  void carry_counters(std::string_view text);

  // The text exposition format (version 0.0.4).
  std::string exposition() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace occasional::metrics
