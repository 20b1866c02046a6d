#include "supervisor/service.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string_view>

#include <boost/system/system_error.hpp>

#include "supervisor/accept_probe.hpp"
#include "supervisor/spawner.hpp"

namespace occasional::supervisor {

const char* readiness_name(Readiness readiness) {
  switch (readiness) {
    case Readiness::notify:
      return "notify";
    case Readiness::started:
      return "started";
    case Readiness::accepting:
      return "accepting";
  }
  return "?";
}

std::optional<Readiness> parse_readiness(std::string_view name) {
  for (Readiness r : {Readiness::notify, Readiness::started, Readiness::accepting})
    if (name == readiness_name(r)) return r;
  return std::nullopt;
}

namespace {
// A starting worker is looked at this often at first, then less and less.
constexpr Duration kFirstProbe = std::chrono::milliseconds(10);
constexpr Duration kLongestProbe = std::chrono::milliseconds(500);

std::function<double()> jitter_source() {
  auto engine = std::make_shared<std::minstd_rand>(std::random_device{}());
  return [engine] { return std::uniform_real_distribution<double>(0.0, 1.0)(*engine); };
}
}  // namespace

Service::Service(boost::asio::io_context& io, ServiceConfig config, ChildReaper& reaper,
                 Guardian& guardian, ServiceObserver& observer, std::string notify_socket)
    : io_(io),
      config_(std::move(config)),
      reaper_(reaper),
      guardian_(guardian),
      observer_(observer),
      notify_socket_(std::move(notify_socket)),
      policy_(config_.restart, config_.replicas, jitter_source()),
      retry_timer_(io) {
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
  r.stated_reason.reset();
  r.status_text.clear();
  r.ready = false;

  ProcessSpec spec = config_.process;
  spec.env.push_back("OCCASIONAL_SERVICE=" + config_.name);
  spec.env.push_back("OCCASIONAL_REPLICA=" + std::to_string(replica));
  UniqueFd ours, theirs;
  switch (config_.mode) {
    case workers::WorkerMode::plain:
      break;
    case workers::WorkerMode::handoff: {
      int pair[2];
      if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) != 0) {
        start_failed(replica, errno, "socketpair");
        return;
      }
      ours.reset(pair[0]);
      theirs.reset(pair[1]);
      // The worker's end blocks, as a simple worker expects.
      int flags = ::fcntl(theirs.get(), F_GETFL);
      ::fcntl(theirs.get(), F_SETFL, flags & ~O_NONBLOCK);
      spec.pass_fds = {theirs.get()};
      // Registered with the loop before the fork: failing here (epoll out
      // of memory, ...) leaves no process to clean up.
      try {
        r.link = std::make_unique<WorkerLink>(
            io_, std::move(ours),
            WorkerLink::Handlers{
                [this, replica](const workers::Message& m) { on_message(replica, m); },
                [this, replica](const char* reason, const std::string& error) {
                  on_protocol_error(replica, reason, error);
                },
                [this, replica](const char* reason, uint64_t read, uint64_t used) {
                  observer_.on_closed_counter_clamped(config_.name, replica, reason, read, used);
                },
                [this, replica] { on_channel_closed(replica); }});
      } catch (const boost::system::system_error& e) {
        start_failed(replica, e.code().value(), "register_link");
        return;
      }
      spec.env.push_back(std::string(workers::kControlFdEnv) + "=" +
                         std::to_string(workers::kControlFd));
      break;
    }
    case workers::WorkerMode::listen_fds:
      spec.pass_fds = {config_.listen_fd};
      spec.env.push_back("LISTEN_FDS=1");
      spec.env.push_back("LISTEN_FDNAMES=" + config_.listener_name);
      spec.set_listen_pid = true;
      if (!notify_socket_.empty()) spec.env.push_back("NOTIFY_SOCKET=" + notify_socket_);
      if (config_.watchdog > Duration::zero())
        spec.env.push_back(
            "WATCHDOG_USEC=" +
            std::to_string(
                std::chrono::duration_cast<std::chrono::microseconds>(config_.watchdog).count()));
      break;
    case workers::WorkerMode::inetd:
    case workers::WorkerMode::standalone:
      std::fprintf(stderr, "occasional: bug: service %s: mode %s is not a Service's\n",
                   config_.name.c_str(), workers::worker_mode_name(config_.mode));
      std::abort();
  }

  SpawnResult result = spawn_process(spec);
  theirs.reset();
  if (!result.ok()) {
    r.link.reset();
    start_failed(replica, result.error, result.failed_call);
    return;
  }
  const pid_t pid = result.pid;
  if (std::error_code ec =
          reaper_.watch(pid, std::move(result.pidfd),
                        [this, replica](const siginfo_t& info) { on_exit(replica, info); })) {
    // The reaper killed and reaped it: it never ran as a worker.
    r.link.reset();
    start_failed(replica, ec.value(), "register_pidfd");
    return;
  }
  r.deferrals = 0;
  r.pid = pid;
  guardian_.watch(r.pid);
  observer_.on_spawned(config_.name, replica, pid);

  switch (config_.mode) {
    case workers::WorkerMode::plain:
      set_ready(replica, true);
      break;
    case workers::WorkerMode::handoff:
      r.link->send(workers::encode_hello_coordinator());
      break;
    case workers::WorkerMode::listen_fds:
      // The watchdog starts with READY=1 (or a first WATCHDOG=1), as
      // systemd's does once start-up is complete: a slow start is not a hang.
      if (config_.readiness == Readiness::started) {
        set_ready(replica, true);
      } else if (config_.readiness == Readiness::accepting) {
        r.probe_every = kFirstProbe;
        look_for_accepting(replica);
      }
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
    r.overdue.cancel();
    handle(replica, {PolicyEventKind::exited, true, {}});
    return;
  }
  observer_.on_stopping(config_.name, replica, r.pid);
  set_ready(replica, false);
  const auto grace_ms = std::chrono::duration_cast<std::chrono::milliseconds>(config_.grace);
  // A native worker drains: it finishes what it has and exits by itself.
  if (!(r.link && !r.link->send(workers::encode_drain(grace_ms.count()))))
    signal_group(replica, SIGTERM);
  arm_timer(replica, config_.grace, PolicyEventKind::grace_elapsed);
}

void Service::set_ready(int replica, bool ready) {
  Replica& r = *replicas_[static_cast<size_t>(replica)];
  if (r.ready == ready) return;
  // Only a running replica takes connections; a stopping one has said its last.
  if (ready && policy_.state(replica) != ReplicaState::running) return;
  r.ready = ready;
  if (ready)
    observer_.on_ready(config_.name, replica, r.link.get());
  else
    observer_.on_unready(config_.name, replica);
  if (!ready) return;
  // A rolling restart's replacement serves: now the old replica drains.
  if (std::optional<std::vector<Action>> retire = rolling_.on_ready(policy_, replica)) {
    apply(*retire);
    next_replacement();
  }
}

void Service::on_message(int replica, const workers::Message& m) {
  Replica& r = *replicas_[static_cast<size_t>(replica)];
  switch (m.type) {
    case workers::MessageType::hello:
      if (!r.link) break;
      r.link->set_takes_batches(m.conn_batches);
      if (m.closed_counter)
        if (std::error_code ec = r.link->share_closed_counter())
          observer_.on_closed_counter_unavailable(config_.name, replica, ec.message());
      break;
    case workers::MessageType::pong:
      break;
    case workers::MessageType::ready:
      set_ready(replica, true);
      break;
    case workers::MessageType::closed:
      observer_.on_conn_closed(config_.name, replica, m.id);
      break;
    case workers::MessageType::exit:
      r.stated_reason =
          m.is_error ? "error: " + m.text + (m.detail.empty() ? "" : ": " + m.detail) : m.text;
      set_ready(replica, false);
      // While stopping, the grace deadline already applies.
      if (policy_.state(replica) == ReplicaState::running)
        expect_exit(replica, config_.grace, "exit_overdue");
      break;
    case workers::MessageType::status:
      r.status_text = m.text;
      observer_.on_status(config_.name, replica, m.text);
      break;
    case workers::MessageType::conn:
    case workers::MessageType::conns:
    case workers::MessageType::drain:
    case workers::MessageType::ping:
    case workers::MessageType::closed_counter:
      on_protocol_error(replica, "wrong_direction",
                        std::string("\"") + workers::message_type_name(m.type) +
                            "\" is a coordinator-to-worker message");
      break;
  }
}

void Service::on_protocol_error(int replica, const char* reason, const std::string& error) {
  Replica& r = *replicas_[static_cast<size_t>(replica)];
  observer_.on_protocol_error(config_.name, replica, reason, error);
  set_ready(replica, false);
  if (r.link) r.link->close();
  signal_group(replica, SIGKILL);
}

void Service::on_channel_closed(int replica) {
  Replica& r = *replicas_[static_cast<size_t>(replica)];
  set_ready(replica, false);
  // After `exit`, or while stopping, EOF is the expected way out and a
  // deadline is already set.
  if (r.stated_reason || policy_.state(replica) != ReplicaState::running) return;
  // A worker that exits closes its socket a moment before its pidfd becomes
  // readable (the kernel closes files before it notifies the parent), so EOF
  // alone does not tell an exit in progress from a worker that closed fd 3
  // and lives on: a short deadline does, and then waitid (WNOWAIT) checks
  // for an exit the loop has not seen yet.
  expect_exit(replica, kChannelClosedGrace, "channel_closed");
}

void Service::expect_exit(int replica, Duration within, const char* reason) {
  Replica& r = *replicas_[static_cast<size_t>(replica)];
  const pid_t pid = r.pid;
  r.overdue.expires_after(within);
  r.overdue.async_wait([this, replica, pid, within, reason](const boost::system::error_code& ec) {
    Replica& rr = *replicas_[static_cast<size_t>(replica)];
    if (ec || rr.pid != pid || pid <= 0 || reaper_.exited(pid)) return;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(within).count();
    on_protocol_error(replica, reason,
                      std::string(std::strcmp(reason, "channel_closed") == 0
                                      ? "the worker closed its control socket"
                                      : "the worker sent exit") +
                          " and was still running " + std::to_string(ms) + " ms later");
  });
}

void Service::on_notify(int replica, std::string_view assignment) {
  Replica& r = *replicas_.at(static_cast<size_t>(replica));
  if (assignment == "READY=1") {
    set_ready(replica, true);
    if (!r.watchdog.armed()) arm_watchdog(replica);
  } else if (assignment == "WATCHDOG=1") {
    arm_watchdog(replica);
  } else if (assignment == "STOPPING=1") {
    r.probe.cancel();
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
  r.probe.expires_after(r.probe_every);
  r.probe_every = std::min(r.probe_every * 2, kLongestProbe);
  const pid_t pid = r.pid;
  r.probe.async_wait([this, replica, pid](const boost::system::error_code& ec) {
    Replica& rr = *replicas_[static_cast<size_t>(replica)];
    if (ec || rr.pid != pid || pid <= 0 || rr.ready) return;
    std::error_code error;
    switch (probe_accepting(pid, listen_inode_, error)) {
      case AcceptProbe::accepting:
        set_ready(replica, true);
        return;
      case AcceptProbe::cannot_tell:
        // Without a look inside the worker, waiting for it could be waiting
        // for ever: take it as ready, as readiness `started` would.
        observer_.on_accept_probe_failed(config_.name, replica, error.message());
        set_ready(replica, true);
        return;
      case AcceptProbe::not_yet:
        // One never seen waiting (an io_uring server, one always busy) would
        // otherwise be looked at every 0.5 s for as long as it runs.
        if (std::chrono::steady_clock::now() - rr.started_mono < config_.accept_probe_for)
          return look_for_accepting(replica);
        observer_.on_accept_probe_failed(config_.name, replica,
                                         "not seen waiting to accept in time");
        set_ready(replica, true);
        return;
    }
  });
}

void Service::on_exit(int replica, const siginfo_t& info) {
  Replica& r = *replicas_[static_cast<size_t>(replica)];
  guardian_.forget(r.pid);
  ExitRecord record = process_exit_record(r.pid, info);
  // A stated reason may still sit in the control socket, sent just before exit.
  if (r.link) {
    r.link->read_remaining();
    r.link.reset();
  }
  record.stated_reason = std::move(r.stated_reason);
  r.stated_reason.reset();
  r.ready = false;
  r.pid = -1;
  r.timer.cancel();
  r.watchdog.disarm();
  r.overdue.cancel();
  r.probe.cancel();
  finish_exit(replica, std::move(record));
}

namespace {
bool coordinator_exhausted(int error, const char* call) {
  // Calls the coordinator makes for itself before the child runs; their
  // resource errors say the coordinator is short of fds, memory or
  // processes, not that the worker is broken. A failed execve (ENOENT,
  // EACCES, ...) is still the worker's own failure.
  static constexpr std::string_view kOwnCalls[] = {
      "socketpair", "pipe2", "clone", "fork", "pidfd_open", "register_link", "register_pidfd"};
  const bool own = std::find(std::begin(kOwnCalls), std::end(kOwnCalls), std::string_view(call)) !=
                   std::end(kOwnCalls);
  return own && (error == EMFILE || error == ENFILE || error == ENOMEM || error == EAGAIN ||
                 error == ENOSPC);
}

}  // namespace

void Service::start_failed(int replica, int error, const char* call) {
  if (!coordinator_exhausted(error, call)) {
    record_start_failure(replica, error, call);
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
  r.overdue.expires_after(delay);
  r.overdue.async_wait([this, replica](const boost::system::error_code& ec) {
    if (!ec && policy_.state(replica) == ReplicaState::running &&
        replicas_[static_cast<size_t>(replica)]->pid <= 0)
      spawn(replica);
  });
}

void Service::record_start_failure(int replica, int error, const char* call) {
  finish_exit(replica, start_failure_record(error, call));
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
