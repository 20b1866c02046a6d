#include "supervisor/service.hpp"

#include <signal.h>

#include <random>

#include "supervisor/spawner.hpp"

namespace occasional::supervisor {

namespace {
std::function<double()> jitter_source() {
  auto engine = std::make_shared<std::minstd_rand>(std::random_device{}());
  return [engine] { return std::uniform_real_distribution<double>(0.0, 1.0)(*engine); };
}
}  // namespace

Service::Service(boost::asio::io_context& io, ServiceConfig config, ChildReaper& reaper,
                 Guardian& guardian, ServiceObserver& observer)
    : io_(io),
      config_(std::move(config)),
      reaper_(reaper),
      guardian_(guardian),
      observer_(observer),
      policy_(config_.restart, config_.replicas, jitter_source()) {
  grow_to(config_.replicas);
}

void Service::grow_to(int size) {
  while (static_cast<int>(replicas_.size()) < size)
    replicas_.push_back(std::make_unique<Replica>(io_));
}

void Service::start() {
  apply(policy_.start_service());
}

void Service::stop() {
  for (int i = 0; i < policy_.table_size(); ++i) handle(i, {PolicyEventKind::stop});
}

void Service::kill_all() {
  for (int i = 0; i < policy_.table_size(); ++i) signal_group(i, SIGKILL);
}

void Service::scale(int replicas) {
  grow_to(replicas);
  apply(policy_.scale(replicas));
  report_idle();
}

bool Service::idle() const {
  for (int i = 0; i < policy_.table_size(); ++i)
    if (policy_.state(i) != ReplicaState::stopped) return false;
  return true;
}

void Service::handle(int replica, PolicyEvent event) {
  apply(policy_.on(replica, event, std::chrono::steady_clock::now()));
  report_idle();
}

void Service::report_idle() {
  // Events nest (a failed spawn is an exit inside the spawn), so report the
  // transition to idle once, not once per level.
  const bool now_idle = idle();
  if (now_idle && !idle_reported_) observer_.on_idle(config_.name);
  idle_reported_ = now_idle;
}

void Service::apply(const std::vector<Action>& actions) {
  for (const Action& a : actions) {
    Replica& r = *replicas_.at(static_cast<size_t>(a.replica));
    switch (a.kind) {
      case ActionKind::spawn:
        spawn(a.replica);
        break;
      case ActionKind::schedule_restart:
        arm_timer(a.replica, a.delay, PolicyEventKind::backoff_elapsed);
        observer_.on_restart_scheduled(config_.name, a.replica, a.delay);
        break;
      case ActionKind::cancel_restart:
        r.timer.cancel();
        break;
      case ActionKind::terminate:
        observer_.on_stopping(config_.name, a.replica, r.pid);
        signal_group(a.replica, SIGTERM);
        arm_timer(a.replica, config_.grace, PolicyEventKind::grace_elapsed);
        break;
      case ActionKind::kill:
        observer_.on_killed_at_grace(config_.name, a.replica, r.pid);
        signal_group(a.replica, SIGKILL);
        break;
      case ActionKind::service_failed:
        observer_.on_service_failed(config_.name, policy_.config().max_restarts,
                                    policy_.config().window);
        break;
    }
  }
}

void Service::spawn(int replica) {
  Replica& r = *replicas_[static_cast<size_t>(replica)];
  r.started_wall = std::chrono::system_clock::now();
  r.started_mono = std::chrono::steady_clock::now();
  SpawnResult result = spawn_process(config_.process);
  if (!result.ok()) {
    record_start_failure(replica, result.error, result.failed_call);
    return;
  }
  r.pid = result.pid;
  guardian_.watch(r.pid);
  const pid_t pid = r.pid;
  reaper_.watch(pid, std::move(result.pidfd),
                [this, replica](const siginfo_t& info) { on_exit(replica, info); });
  observer_.on_spawned(config_.name, replica, pid);
}

void Service::on_exit(int replica, const siginfo_t& info) {
  Replica& r = *replicas_[static_cast<size_t>(replica)];
  guardian_.forget(r.pid);
  ExitRecord record;
  record.pid = r.pid;
  switch (info.si_code) {
    case CLD_EXITED:
      record.kind = ExitKind::exited;
      record.code = info.si_status;
      break;
    case CLD_DUMPED:
      record.core_dumped = true;
      [[fallthrough]];
    default:
      record.kind = ExitKind::killed;
      record.signal = info.si_status;
  }
  r.pid = -1;
  r.timer.cancel();
  finish_exit(replica, std::move(record));
}

void Service::record_start_failure(int replica, int error, const char* call) {
  ExitRecord record;
  record.kind = ExitKind::start_failed;
  record.error = error;
  record.failed_call = call;
  finish_exit(replica, std::move(record));
}

void Service::finish_exit(int replica, ExitRecord record) {
  Replica& r = *replicas_[static_cast<size_t>(replica)];
  record.service = config_.name;
  record.replica = replica;
  record.started_at = r.started_wall;
  record.exited_at = std::chrono::system_clock::now();
  record.uptime = std::chrono::steady_clock::now() - r.started_mono;
  observer_.on_exited(record);
  handle(replica, {PolicyEventKind::exited, record.clean(), record.uptime});
}

void Service::signal_group(int replica, int signal) {
  const pid_t pid = replicas_[static_cast<size_t>(replica)]->pid;
  // The worker is a group leader not yet reaped, so -pid is still its group.
  if (pid > 0) ::kill(-pid, signal);
}

void Service::arm_timer(int replica, Duration delay, PolicyEventKind event) {
  auto& timer = replicas_[static_cast<size_t>(replica)]->timer;
  timer.expires_after(delay);
  timer.async_wait([this, replica, event](const boost::system::error_code& ec) {
    if (!ec) handle(replica, {event});
  });
}

}  // namespace occasional::supervisor
