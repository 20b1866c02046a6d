#include "supervisor/supervisor.hpp"

#include <algorithm>
#include <csignal>
#include <cstring>

namespace occasional::supervisor {

Supervisor::Supervisor(boost::asio::io_context& io, const EventLog& log,
                       std::optional<Guardian::Carried> guardian)
    : io_(io), log_(log), reaper_(io, log), hub_(io, reaper_, log), guardian_timer_(io) {
  ChildReaper::become_subreaper();
  if (guardian)
    guardian_.adopt(std::move(*guardian));
  else
    guardian_.start();
  guardian_started_ = std::chrono::steady_clock::now();
  watch_guardian();
}

void Supervisor::watch_guardian() {
  const pid_t pid = guardian_.pid();
  std::error_code ec =
      reaper_.watch(pid, guardian_.take_pidfd(), [this, pid](const siginfo_t& info) {
        // Without a guardian a SIGKILLed coordinator would leave workers'
        // children behind: start a new one, which learns every live group.
        log_.event(LogLevel::error, "guardian_exited")
            .num("pid", pid)
            .num("status", info.si_status)
            .str("action", "starting a new guardian");
        restart_guardian();
      });
  if (ec) {
    // The reaper killed it; try again later.
    count_loop_error("guardian_register", ec.value());
    restart_guardian();
  }
}

void Supervisor::restart_guardian() {
  // A guardian that keeps dying (or cannot be forked: an nproc limit, no
  // memory) is re-forked with a growing delay, not in a loop.
  const auto now = std::chrono::steady_clock::now();
  if (now - guardian_started_ > std::chrono::seconds(10))
    guardian_backoff_ = Duration::zero();
  else
    guardian_backoff_ = std::clamp<Duration>(guardian_backoff_ * 2, std::chrono::milliseconds(100),
                                             std::chrono::seconds(30));
  guardian_timer_.expires_after(guardian_backoff_);
  guardian_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    const char* call = "";
    guardian_started_ = std::chrono::steady_clock::now();
    if (std::error_code err = guardian_.start(call)) {
      count_loop_error(std::string("guardian_") + call, err.value());
      log_.event(LogLevel::error, "guardian_start_failed")
          .str("failed_call", call)
          .str("error", err.message())
          .str("action", "retrying with backoff");
      restart_guardian();
      return;
    }
    watch_guardian();
  });
}

void Supervisor::count_loop_error(const std::string& what, int error) {
  const char* name = strerrorname_np(error);
  ++loop_errors_[what + "_" + (name ? name : "other")];
}

Service& Supervisor::add_service(ServiceConfig config) {
  if (config.mode == workers::WorkerMode::listen_fds && !notify_) {
    notify_ = std::make_unique<NotifySocket>(
        io_, [this](pid_t pid, std::string_view a) { on_notify(pid, a); },
        [this](const char* reason) {
          ++notify_rejected_;
          log_.event(LogLevel::warn, "notify_rejected").str("reason", reason);
        });
  }
  services_.push_back(std::make_unique<Service>(
      io_, std::move(config), reaper_, guardian_, static_cast<ServiceObserver&>(*this),
      notify_ ? notify_->address() : std::string(), &hub_));
  return *services_.back();
}

InetdService& Supervisor::add_inetd(InetdConfig config) {
  inetd_.push_back(std::make_unique<InetdService>(io_, std::move(config), reaper_, guardian_,
                                                  static_cast<ServiceObserver&>(*this)));
  return *inetd_.back();
}

void Supervisor::on_notify(pid_t pid, std::string_view assignment) {
  auto it = by_pid_.find(pid);
  if (it == by_pid_.end()) {
    // As systemd's NotifyAccess=main: only a worker's main process speaks.
    ++notify_rejected_;
    log_.event(LogLevel::warn, "notify_rejected").str("reason", "unknown_sender").num("pid", pid);
    return;
  }
  it->second.first->on_notify(it->second.second, assignment);
}

void Supervisor::start_all() {
  for (auto& s : services_) s->start();
  for (auto& s : inetd_) s->start();
}

void Supervisor::stop_all() {
  for (auto& s : services_) s->stop();
  for (auto& s : inetd_) s->stop();
}

void Supervisor::kill_all() {
  for (auto& s : services_) s->kill_all();
  for (auto& s : inetd_) s->kill_all();
}

bool Supervisor::all_idle() const {
  for (const auto& s : services_)
    if (!s->idle()) return false;
  for (const auto& s : inetd_)
    if (!s->idle()) return false;
  return true;
}

bool Supervisor::any_failed() const {
  for (const auto& s : services_)
    if (s->failed()) return true;
  return false;
}

InetdService* Supervisor::find_inetd(const std::string& name) {
  for (auto& s : inetd_)
    if (s->name() == name) return s.get();
  return nullptr;
}

Service* Supervisor::find(const std::string& name) {
  for (auto& s : services_)
    if (s->name() == name) return s.get();
  return nullptr;
}

void Supervisor::on_spawned(const std::string& service, int replica, pid_t pid) {
  if (Service* s = find(service)) by_pid_[pid] = {s, replica};
  for (auto* o : observers_) o->on_spawned(service, replica, pid);
}
void Supervisor::on_ready(const std::string& service, int replica, WorkerLink* link) {
  for (auto* o : observers_) o->on_ready(service, replica, link);
}
void Supervisor::on_unready(const std::string& service, int replica) {
  for (auto* o : observers_) o->on_unready(service, replica);
}
void Supervisor::on_conn_closed(const std::string& service, int replica, uint64_t id) {
  for (auto* o : observers_) o->on_conn_closed(service, replica, id);
}
void Supervisor::on_closed_counter_clamped(const std::string& service, int replica,
                                           const char* reason, uint64_t read, uint64_t used) {
  for (auto* o : observers_) o->on_closed_counter_clamped(service, replica, reason, read, used);
}
void Supervisor::on_spawn_deferred(const std::string& service, int replica, const char* call,
                                   int error, Duration delay) {
  for (auto* o : observers_) o->on_spawn_deferred(service, replica, call, error, delay);
}
void Supervisor::on_exited(const ExitRecord& record) {
  by_pid_.erase(record.pid);
  for (auto* o : observers_) o->on_exited(record);
}
void Supervisor::on_restart_scheduled(const std::string& service, int replica, Duration delay) {
  for (auto* o : observers_) o->on_restart_scheduled(service, replica, delay);
}
void Supervisor::on_service_failed(const std::string& service, int restarts, Duration window) {
  for (auto* o : observers_) o->on_service_failed(service, restarts, window);
}
void Supervisor::on_service_retry_scheduled(const std::string& service, Duration delay) {
  for (auto* o : observers_) o->on_service_retry_scheduled(service, delay);
}
void Supervisor::on_stopping(const std::string& service, int replica, pid_t pid) {
  for (auto* o : observers_) o->on_stopping(service, replica, pid);
}
void Supervisor::on_killed_at_grace(const std::string& service, int replica, pid_t pid) {
  for (auto* o : observers_) o->on_killed_at_grace(service, replica, pid);
}
void Supervisor::on_protocol_error(const std::string& service, int replica, const char* reason,
                                   const std::string& error) {
  for (auto* o : observers_) o->on_protocol_error(service, replica, reason, error);
}
void Supervisor::on_watchdog_timeout(const std::string& service, int replica, pid_t pid) {
  for (auto* o : observers_) o->on_watchdog_timeout(service, replica, pid);
}
void Supervisor::on_closed_counter_unavailable(const std::string& service, int replica,
                                               const std::string& error) {
  for (auto* o : observers_) o->on_closed_counter_unavailable(service, replica, error);
}
void Supervisor::on_accept_probe_failed(const std::string& service, int replica,
                                        const std::string& error) {
  for (auto* o : observers_) o->on_accept_probe_failed(service, replica, error);
}
void Supervisor::on_status(const std::string& service, int replica, const std::string& text) {
  for (auto* o : observers_) o->on_status(service, replica, text);
}
void Supervisor::on_idle(const std::string& service) {
  for (auto* o : observers_) o->on_idle(service);
  if (all_idle() && on_all_idle_) on_all_idle_();
}

}  // namespace occasional::supervisor
