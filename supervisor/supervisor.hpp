#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "supervisor/child_reaper.hpp"
#include "supervisor/event_log.hpp"
#include "supervisor/guardian.hpp"
#include "supervisor/inetd_service.hpp"
#include "supervisor/notify_socket.hpp"
#include "supervisor/process_hub.hpp"
#include "supervisor/service.hpp"
#include "supervisor/service_observer.hpp"

namespace occasional::supervisor {

// All services of one coordinator, the reaper of their processes, the
// guardian that outlives a killed coordinator, and the NOTIFY_SOCKET of
// listen_fds workers. Fans service events out to observers (event log,
// balancer, metrics, tests).
class Supervisor : private ServiceObserver {
 public:
  // Forks the guardian: construct while the process has one thread. After
  // an upgrade, takes over the guardian of the coordinator it replaced.
  Supervisor(boost::asio::io_context& io, const EventLog& log,
             std::optional<Guardian::Carried> guardian = std::nullopt);
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  Service& add_service(ServiceConfig config);
  InetdService& add_inetd(InetdConfig config);
  void add_observer(ServiceObserver& observer) { observers_.push_back(&observer); }
  // Called each time every service has become idle (nothing running, nothing scheduled).
  void on_all_idle(std::function<void()> callback) { on_all_idle_ = std::move(callback); }

  void start_all();
  void stop_all();
  void kill_all();

  bool all_idle() const;
  bool any_failed() const;
  Service* find(const std::string& name);
  InetdService* find_inetd(const std::string& name);
  const std::vector<std::unique_ptr<Service>>& services() const { return services_; }
  const std::vector<std::unique_ptr<InetdService>>& inetd_services() const { return inetd_; }
  const ChildReaper& reaper() const { return reaper_; }
  // The processes-and-messages system every service worker belongs to.
  const ProcessHub& hub() const { return hub_; }
  ProcessHub& hub() { return hub_; }
  const Guardian& guardian() const { return guardian_; }
  const EventLog& log() const { return log_; }
  // NOTIFY_SOCKET datagrams rejected so far (no credentials, unknown sender, too large).
  uint64_t notify_rejected() const { return notify_rejected_; }
  // Failures of the coordinator's own machinery on the loop, by reason
  // (e.g. guardian_fork_EAGAIN, guardian_register_ENOMEM): each was logged
  // and retried with backoff instead of ending the coordinator.
  const std::map<std::string, uint64_t>& loop_errors() const { return loop_errors_; }

 private:
  void watch_guardian();
  void restart_guardian();
  void count_loop_error(const std::string& what, int error);
  void on_notify(pid_t pid, std::string_view assignment);

  void on_spawned(const std::string& service, int replica, pid_t pid) override;
  void on_ready(const std::string& service, int replica, WorkerLink* link) override;
  void on_unready(const std::string& service, int replica) override;
  void on_conn_closed(const std::string& service, int replica, uint64_t id) override;
  void on_closed_counter_unavailable(const std::string& service, int replica,
                                     const std::string& error) override;
  void on_closed_counter_clamped(const std::string& service, int replica, const char* reason,
                                 uint64_t read, uint64_t used) override;
  void on_spawn_deferred(const std::string& service, int replica, const char* call, int error,
                         Duration delay) override;
  void on_exited(const ExitRecord& record) override;
  void on_restart_scheduled(const std::string& service, int replica, Duration delay) override;
  void on_service_failed(const std::string& service, int restarts, Duration window) override;
  void on_service_retry_scheduled(const std::string& service, Duration delay) override;
  void on_stopping(const std::string& service, int replica, pid_t pid) override;
  void on_killed_at_grace(const std::string& service, int replica, pid_t pid) override;
  void on_protocol_error(const std::string& service, int replica, const char* reason,
                         const std::string& error) override;
  void on_watchdog_timeout(const std::string& service, int replica, pid_t pid) override;
  void on_accept_probe_failed(const std::string& service, int replica,
                              const std::string& error) override;
  void on_status(const std::string& service, int replica, const std::string& text) override;
  void on_idle(const std::string& service) override;

  boost::asio::io_context& io_;
  const EventLog& log_;
  Guardian guardian_;
  ChildReaper reaper_;
  ProcessHub hub_;  // after the reaper, which it uses until destroyed
  std::unique_ptr<NotifySocket> notify_;
  std::vector<std::unique_ptr<Service>> services_;
  std::vector<std::unique_ptr<InetdService>> inetd_;
  // Which service and replica each live worker pid is, for NOTIFY_SOCKET senders.
  std::unordered_map<pid_t, std::pair<Service*, int>> by_pid_;
  std::vector<ServiceObserver*> observers_;
  std::function<void()> on_all_idle_;
  uint64_t notify_rejected_ = 0;
  std::map<std::string, uint64_t> loop_errors_;
  boost::asio::steady_timer guardian_timer_;
  Duration guardian_backoff_{};
  MonoTime guardian_started_{};
};

}  // namespace occasional::supervisor
