#include "supervisor/supervisor.hpp"

#include <csignal>

namespace occasional::supervisor {

Supervisor::Supervisor(boost::asio::io_context& io, const EventLog& log)
    : io_(io), log_(log), reaper_(io, log) {
  ChildReaper::become_subreaper();
  guardian_.start();
  watch_guardian();
}

void Supervisor::watch_guardian() {
  const pid_t pid = guardian_.pid();
  reaper_.watch(pid, guardian_.take_pidfd(), [this, pid](const siginfo_t& info) {
    // Without a guardian a SIGKILLed coordinator would leave workers' children
    // behind: start a new one, which learns every live group.
    log_.event(LogLevel::error, "guardian_exited")
        .num("pid", pid)
        .num("status", info.si_status)
        .str("action", "starting a new guardian");
    guardian_.start();
    watch_guardian();
  });
}

Service& Supervisor::add_service(ServiceConfig config) {
  services_.push_back(std::make_unique<Service>(io_, std::move(config), reaper_, guardian_,
                                                static_cast<ServiceObserver&>(*this)));
  return *services_.back();
}

void Supervisor::start_all() {
  for (auto& s : services_) s->start();
}

void Supervisor::stop_all() {
  for (auto& s : services_) s->stop();
}

void Supervisor::kill_all() {
  for (auto& s : services_) s->kill_all();
}

bool Supervisor::all_idle() const {
  for (const auto& s : services_)
    if (!s->idle()) return false;
  return true;
}

bool Supervisor::any_failed() const {
  for (const auto& s : services_)
    if (s->failed()) return true;
  return false;
}

Service* Supervisor::find(const std::string& name) {
  for (auto& s : services_)
    if (s->name() == name) return s.get();
  return nullptr;
}

void Supervisor::on_spawned(const std::string& service, int replica, pid_t pid) {
  for (auto* o : observers_) o->on_spawned(service, replica, pid);
}
void Supervisor::on_exited(const ExitRecord& record) {
  for (auto* o : observers_) o->on_exited(record);
}
void Supervisor::on_restart_scheduled(const std::string& service, int replica, Duration delay) {
  for (auto* o : observers_) o->on_restart_scheduled(service, replica, delay);
}
void Supervisor::on_service_failed(const std::string& service, int restarts, Duration window) {
  for (auto* o : observers_) o->on_service_failed(service, restarts, window);
}
void Supervisor::on_stopping(const std::string& service, int replica, pid_t pid) {
  for (auto* o : observers_) o->on_stopping(service, replica, pid);
}
void Supervisor::on_killed_at_grace(const std::string& service, int replica, pid_t pid) {
  for (auto* o : observers_) o->on_killed_at_grace(service, replica, pid);
}
void Supervisor::on_idle(const std::string& service) {
  for (auto* o : observers_) o->on_idle(service);
  if (all_idle() && on_all_idle_) on_all_idle_();
}

}  // namespace occasional::supervisor
