#include "supervisor/service.hpp"

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <random>
#include <string_view>
#include <system_error>

#include <boost/system/system_error.hpp>

#include "supervisor/worker_launch.hpp"

namespace occasional::supervisor {

namespace {
std::function<double()> jitter_source() {
  auto engine = std::make_shared<std::minstd_rand>(std::random_device{}());
  return [engine] { return std::uniform_real_distribution<double>(0.0, 1.0)(*engine); };
}
}  // namespace

Service::Service(boost::asio::io_context& io, ServiceConfig config, ChildReaper& reaper,
                 Guardian& guardian, ServiceObserver& observer, std::string notify_socket,
                 ProcessHub* hub)
    : io_(io),
      config_(std::move(config)),
      reaper_(reaper),
      guardian_(guardian),
      observer_(observer),
      notify_socket_(std::move(notify_socket)),
      policy_(config_.restart, config_.replicas, jitter_source()),
      retry_timer_(io),
      hub_(hub) {
  struct stat st {};
  if (config_.mode == workers::WorkerMode::listen_fds && ::fstat(config_.listen_fd, &st) == 0)
    listen_inode_ = st.st_ino;
  grow_to(config_.replicas);
}

void Service::grow_to(int size) {
  while (static_cast<int>(replicas_.size()) < size)
    replicas_.push_back(std::make_unique<Replica>(io_));
}

void Service::start() {
  retry_timer_.cancel();
  apply(policy_.start_service());
  report_idle();
}

void Service::stop() {
  rolling_.abort();
  policy_.cancel_retry();
  retry_timer_.cancel();
  for (int i = 0; i < policy_.table_size(); ++i) handle(i, {PolicyEventKind::stop});
}

void Service::kill_all() {
  for (int i = 0; i < policy_.table_size(); ++i) signal_group(i, SIGKILL);
}

void Service::scale(int replicas) {
  rolling_.abort();
  grow_to(replicas);
  apply(policy_.scale(replicas));
  report_idle();
}

bool Service::rolling_restart() {
  if (!rolling_.begin(policy_)) return false;
  next_replacement();
  return true;
}

void Service::next_replacement() {
  std::vector<Action> actions = rolling_.next(policy_);
  grow_to(policy_.table_size());
  apply(actions);
}

bool Service::idle() const {
  if (policy_.retry_pending()) return false;
  for (int i = 0; i < policy_.table_size(); ++i)
    if (policy_.state(i) != ReplicaState::stopped) return false;
  return true;
}

std::string Service::not_carriable() const {
  const std::string self = "service '" + config_.name + "'";
  if (config_.mode != workers::WorkerMode::handoff)
    return self + " has mode " + workers::worker_mode_name(config_.mode) +
           ", which an upgrade does not carry yet (only handoff)";
  if (rolling_.active()) return self + " is in a rolling restart";
  if (policy_.failed() || policy_.retry_pending()) return self + " is failed";
  for (int i = 0; i < policy_.table_size(); ++i) {
    const ReplicaState state = policy_.state(i);
    if (state == ReplicaState::stopped && !policy_.wanted(i)) continue;
    const Replica& r = *replicas_[static_cast<size_t>(i)];
    const std::string which = self + " replica " + std::to_string(i);
    if (state != ReplicaState::running) return which + " is " + replica_state_name(state);
    if (r.pid <= 0 || !r.protocol) return which + " has no process (a spawn is deferred)";
    if (!r.ready || !r.protocol->settled()) return which + " is starting or exiting";
  }
  return {};
}

std::vector<Service::CarriedWorker> Service::carry() const {
  std::vector<CarriedWorker> out;
  for (int i = 0; i < policy_.table_size(); ++i) {
    if (policy_.state(i) != ReplicaState::running) continue;
    const Replica& r = *replicas_[static_cast<size_t>(i)];
    CarriedWorker w;
    w.replica = i;
    w.pid = r.pid;
    w.pidfd = reaper_.pidfd(r.pid);
    WorkerLink& link = r.protocol->link();
    w.control = link.fd();
    w.counter = link.counter_fd();
    w.takes_batches = link.takes_batches();
    w.handed = link.handed();
    w.counted = link.counted();
    if (hub_ && r.process) {
      w.process_fd = hub_->control_fd(*r.process);
      w.process_id = r.process->id;
    }
    w.started_wall = r.started_wall;
    w.started_mono = r.started_mono;
    w.status_text = r.status_text;
    w.consecutive = policy_.consecutive_restarts(i);
    const auto& times = policy_.restart_times(i);
    w.restarts.assign(times.begin(), times.end());
    out.push_back(std::move(w));
  }
  return out;
}

void Service::adopt(const std::vector<CarriedWorker>& workers) {
  std::vector<RestartPolicy::Carried> carried;
  for (const CarriedWorker& w : workers) carried.push_back({w.replica, w.consecutive, w.restarts});
  policy_.adopt(carried);
  replicas_.clear();
  grow_to(policy_.table_size());
  for (const CarriedWorker& w : workers) {
    Replica& r = *replicas_[static_cast<size_t>(w.replica)];
    UniqueFd pidfd(w.pidfd), control(w.control), counter(w.counter), process(w.process_fd);
    r.started_wall = w.started_wall;
    r.started_mono = w.started_mono;
    r.status_text = w.status_text;
    const std::string what =
        "upgrade: service '" + config_.name + "' replica " + std::to_string(w.replica);
    if (std::error_code ec = open_protocol(w.replica, std::move(control)))
      throw std::system_error(ec, what + ": control socket");
    std::error_code ec;
    if (!r.protocol->link().restore(std::move(counter), w.takes_batches, w.handed, w.counted, ec))
      throw std::system_error(ec, what + ": closed counter");
    const int replica = w.replica;
    if ((ec = reaper_.watch(w.pid, std::move(pidfd),
                            [this, replica](const siginfo_t& info) { on_exit(replica, info); })))
      throw std::system_error(ec, what + ": pidfd");
    r.pid = w.pid;
    if (hub_ && config_.process_channel && process)
      r.process = hub_->adopt_worker(w.process_id, config_.name + "/" + std::to_string(w.replica),
                                     w.pid, std::move(process));
  }
  // Carried only when ready: back to the balancer at once.
  for (const CarriedWorker& w : workers) set_ready(w.replica, true);
  report_idle();
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
        terminate(a.replica);
        break;
      case ActionKind::kill:
        observer_.on_killed_at_grace(config_.name, a.replica, r.pid);
        signal_group(a.replica, SIGKILL);
        break;
      case ActionKind::service_failed:
        rolling_.abort();
        observer_.on_service_failed(config_.name, policy_.config().max_restarts,
                                    policy_.config().window);
        break;
      case ActionKind::schedule_retry:
        observer_.on_service_retry_scheduled(config_.name, a.delay);
        retry_timer_.expires_after(a.delay);
        retry_timer_.async_wait([this](const boost::system::error_code& ec) {
          if (ec) return;
          apply(policy_.retry_service(std::chrono::steady_clock::now()));
          report_idle();
        });
        break;
    }
  }
}

void Service::spawn(int replica) {
  Replica& r = *replicas_[static_cast<size_t>(replica)];
  r.started_wall = std::chrono::system_clock::now();
  r.started_mono = std::chrono::steady_clock::now();
  r.status_text.clear();
  r.ready = false;

  ProcessHub::Opened process;
  ProcessHub* const hub = config_.process_channel ? hub_ : nullptr;
  if (hub) {
    try {
      process = hub->open_worker(config_.name + "/" + std::to_string(replica));
    } catch (const std::system_error& e) {
      start_failed(replica, e.code().value(), "socketpair");
      return;
    } catch (const boost::system::system_error& e) {  // epoll: ENOMEM, ENOSPC
      start_failed(replica, e.code().value(), "register_link");
      return;
    }
  }
  auto failed = [&](int error, const char* call) {
    r.protocol.reset();
    if (hub)
      hub->worker_failed(
          process.address,
          std::string(call) + ": " + std::error_code(error, std::system_category()).message());
    start_failed(replica, error, call);
  };
  SpawnResult launch = launch_worker(
      config_, replica, notify_socket_,
      [this, replica](UniqueFd control) { return open_protocol(replica, std::move(control)); },
      hub ? process.child_control.get() : -1);
  process.child_control.reset();
  if (!launch.ok()) return failed(launch.error, launch.failed_call);
  const pid_t pid = launch.pid;
  if (std::error_code ec =
          reaper_.watch(pid, std::move(launch.pidfd),
                        [this, replica](const siginfo_t& info) { on_exit(replica, info); }))
    // The reaper killed and reaped it: it never ran as a worker.
    return failed(ec.value(), "register_pidfd");
  r.deferrals = 0;
  r.pid = pid;
  if (hub) {
    r.process = process.address;
    hub->worker_started(process.address, pid);
  }
  guardian_.watch(r.pid);
  observer_.on_spawned(config_.name, replica, pid);
  begin_readiness(replica);
}

std::error_code Service::open_protocol(int replica, UniqueFd control) {
  Replica& r = *replicas_[static_cast<size_t>(replica)];
  try {
    r.protocol = std::make_unique<WorkerProtocol>(
        io_, std::move(control), config_.grace, config_.name, replica, observer_,
        WorkerProtocol::Handlers{[this, replica](bool ready) { set_ready(replica, ready); },
                                 [this, replica](const std::string& text) {
                                   replicas_[static_cast<size_t>(replica)]->status_text = text;
                                   observer_.on_status(config_.name, replica, text);
                                 },
                                 [this, replica](const char* reason, const std::string& error) {
                                   on_protocol_error(replica, reason, error);
                                 },
                                 [this, replica] {
                                   return reaper_.exited(
                                       replicas_[static_cast<size_t>(replica)]->pid);
                                 }});
  } catch (const boost::system::system_error& e) {
    return {e.code().value(), std::system_category()};
  }
  return {};
}

void Service::begin_readiness(int replica) {
  Replica& r = *replicas_[static_cast<size_t>(replica)];
  switch (config_.mode) {
    case workers::WorkerMode::plain:
      set_ready(replica, true);
      break;
    case workers::WorkerMode::handoff:
      r.protocol->start();
      break;
    case workers::WorkerMode::listen_fds:
      // The watchdog starts with READY=1 (or a first WATCHDOG=1), as
      // systemd's does once start-up is complete: a slow start is not a hang.
      if (config_.readiness == Readiness::started)
        set_ready(replica, true);
      else if (config_.readiness == Readiness::accepting)
        look_for_accepting(replica);
      break;
    case workers::WorkerMode::inetd:
    case workers::WorkerMode::standalone:
      break;
  }
}

void Service::terminate(int replica) {
  Replica& r = *replicas_[static_cast<size_t>(replica)];
  if (r.pid <= 0) {
    // A deferred spawn: nothing to stop, so the stop is done.
    r.deferred.cancel();
    handle(replica, {PolicyEventKind::exited, true, {}});
    return;
  }
  observer_.on_stopping(config_.name, replica, r.pid);
  set_ready(replica, false);
  // A native worker drains: it finishes what it has and exits by itself.
  if (!(r.protocol && r.protocol->drain())) signal_group(replica, SIGTERM);
  arm_timer(replica, config_.grace, PolicyEventKind::grace_elapsed);
}

void Service::set_ready(int replica, bool ready) {
  Replica& r = *replicas_[static_cast<size_t>(replica)];
  if (r.ready == ready) return;
  // Only a running replica takes connections; a stopping one has said its last.
  if (ready && policy_.state(replica) != ReplicaState::running) return;
  r.ready = ready;
  if (!ready) {
    observer_.on_unready(config_.name, replica);
    return;
  }
  r.accepting.cancel();
  observer_.on_ready(config_.name, replica, r.protocol ? &r.protocol->link() : nullptr);
  // A rolling restart's replacement serves: now the old replica drains.
  if (std::optional<std::vector<Action>> retire = rolling_.on_ready(policy_, replica)) {
    apply(*retire);
    next_replacement();
  }
}

void Service::on_protocol_error(int replica, const char* reason, const std::string& error) {
  Replica& r = *replicas_[static_cast<size_t>(replica)];
  observer_.on_protocol_error(config_.name, replica, reason, error);
  set_ready(replica, false);
  if (r.protocol) r.protocol->close();
  signal_group(replica, SIGKILL);
}

void Service::on_notify(int replica, std::string_view assignment) {
  Replica& r = *replicas_.at(static_cast<size_t>(replica));
  if (assignment == "READY=1") {
    set_ready(replica, true);
    if (!r.watchdog.armed()) arm_watchdog(replica);
  } else if (assignment == "WATCHDOG=1") {
    arm_watchdog(replica);
  } else if (assignment == "STOPPING=1") {
    r.accepting.cancel();
    set_ready(replica, false);
  } else if (assignment.starts_with("STATUS=")) {
    r.status_text = assignment.substr(7);
    observer_.on_status(config_.name, replica, r.status_text);
  }
}

void Service::arm_watchdog(int replica) {
  if (config_.watchdog <= Duration::zero()) return;
  Replica& r = *replicas_[static_cast<size_t>(replica)];
  const pid_t pid = r.pid;
  r.watchdog.kick(config_.watchdog, [this, replica, pid] {
    Replica& rr = *replicas_[static_cast<size_t>(replica)];
    if (rr.pid != pid || pid <= 0) return;
    observer_.on_watchdog_timeout(config_.name, replica, pid);
    set_ready(replica, false);
    signal_group(replica, SIGKILL);
  });
}

void Service::look_for_accepting(int replica) {
  Replica& r = *replicas_[static_cast<size_t>(replica)];
  r.accepting.start(r.pid, listen_inode_, r.started_mono + config_.accept_probe_for,
                    AcceptingWatch::Handlers{[this, replica] { set_ready(replica, true); },
                                             [this, replica](const std::string& why) {
                                               observer_.on_accept_probe_failed(config_.name,
                                                                                replica, why);
                                               set_ready(replica, true);
                                             }});
}

void Service::on_exit(int replica, const siginfo_t& info) {
  Replica& r = *replicas_[static_cast<size_t>(replica)];
  guardian_.forget(r.pid);
  ExitRecord record = process_exit_record(r.pid, info);
  // A stated reason may still sit in the control socket, sent just before exit.
  if (r.protocol) {
    record.stated_reason = r.protocol->finish();
    r.protocol.reset();
  }
  // Before the replacement is spawned: it takes over the name.
  if (std::optional<Address> process = std::exchange(r.process, std::nullopt))
    hub_->worker_exited(*process, info);
  r.ready = false;
  r.pid = -1;
  r.timer.cancel();
  r.watchdog.disarm();
  r.accepting.cancel();
  finish_exit(replica, std::move(record));
}

void Service::start_failed(int replica, int error, const char* call) {
  if (!coordinator_exhausted(error, call)) {
    finish_exit(replica, start_failure_record(error, call));
    return;
  }
  // Not the worker's failure, so not the restart policy's business (it
  // would count towards the intensity, and client traffic that used up the
  // fds could mark a service failed): the replica stays running with no
  // process and the spawn is retried with its own backoff.
  Replica& r = *replicas_[static_cast<size_t>(replica)];
  const int doublings = std::min(r.deferrals++, 16);
  const Duration delay =
      std::min<Duration>(config_.restart.backoff_initial * (1 << doublings),
                         std::max(config_.restart.backoff_initial, config_.restart.backoff_max));
  observer_.on_spawn_deferred(config_.name, replica, call, error, delay);
  r.deferred.expires_after(delay);
  r.deferred.async_wait([this, replica](const boost::system::error_code& ec) {
    if (!ec && policy_.state(replica) == ReplicaState::running &&
        replicas_[static_cast<size_t>(replica)]->pid <= 0)
      spawn(replica);
  });
}

void Service::finish_exit(int replica, ExitRecord record) {
  Replica& r = *replicas_[static_cast<size_t>(replica)];
  finish_exit_record(record, config_.name, replica, r.started_wall, r.started_mono);
  observer_.on_exited(record);
  handle(replica, {PolicyEventKind::exited, record.clean(), record.uptime});
}

void Service::signal_group(int replica, int signal) {
  const pid_t pid = replicas_[static_cast<size_t>(replica)]->pid;
  // Through the reaper: after the worker is reaped (an error found in its
  // last messages, on_exit) its pid may already be someone else's.
  if (pid > 0) reaper_.signal_group(pid, signal);
}

void Service::arm_timer(int replica, Duration delay, PolicyEventKind event) {
  auto& timer = replicas_[static_cast<size_t>(replica)]->timer;
  timer.expires_after(delay);
  timer.async_wait([this, replica, event](const boost::system::error_code& ec) {
    if (!ec) handle(replica, {event});
  });
}

}  // namespace occasional::supervisor
