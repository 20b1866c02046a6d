// The occasional executable: the composition root. It wires the modules
// together and does nothing else.
#include <sys/resource.h>
#include <unistd.h>

#include <sys/syscall.h>
#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "app/cli.hpp"
#include "app/config_loader.hpp"
#include "app/coordinator_admin.hpp"
#include "app/ctl.hpp"
#include "app/metrics_feed.hpp"
#include "app/shutdown.hpp"
#include "app/socket_activation.hpp"
#include "app/systemd_notifier.hpp"
#include "app/systemd_reporter.hpp"
#include "app/upgrade_state.hpp"
#include "app/upgrader.hpp"
#include "gateway/gateway.hpp"
#include "metrics/admin_server.hpp"
#include "metrics/event_stream.hpp"
#include "metrics/metrics.hpp"
#include "supervisor/event_log.hpp"
#include "supervisor/service_log.hpp"
#include "supervisor/spawner.hpp"
#include "supervisor/supervisor.hpp"
#include "workers/protocol.hpp"

namespace sv = occasional::supervisor;
namespace gw = occasional::gateway;
namespace mx = occasional::metrics;

namespace {

// Each connection being routed or queued holds an fd: the soft limit (1024
// by default) would be reached long before memory runs short. The hard
// limit is what the operator allowed; Go's runtime raises to it the same
// way, and systemd's default (1024 soft, 524288 hard) expects programs that
// need many fds to do so. Workers start with the soft limit we had
// (set_worker_fd_limit). Returns the soft limit now in force (2^20 when
// unknown or unlimited).
uint64_t raise_fd_limit(const sv::EventLog& log) {
  constexpr uint64_t kUnknown = 1u << 20;
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return kUnknown;
  const rlim_t before = r.rlim_cur;
  sv::set_worker_fd_limit(before);
  if (r.rlim_cur != r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &r) != 0) r.rlim_cur = before;
  }
  auto value = [](rlim_t v) { return v == RLIM_INFINITY ? -1 : static_cast<int64_t>(v); };
  log.event(sv::LogLevel::info, "fd_limit")
      .num("soft_before", value(before))
      .num("soft", value(r.rlim_cur))
      .num("hard", value(r.rlim_max));
  return r.rlim_cur == RLIM_INFINITY ? kUnknown : static_cast<uint64_t>(r.rlim_cur);
}

mx::AdminConfig admin_config(const gw::AdminSettings& admin) {
  mx::AdminConfig ac;
  ac.endpoint = {boost::asio::ip::make_address(admin.address.host), admin.address.port};
  ac.token = admin.token;
  ac.insecure = admin.insecure;
  return ac;
}

// What systemd gave the coordinator itself, taken from the environment
// before anything else opens an fd (socket activation's fds start at 3).
struct FromSystemd {
  std::map<std::string, occasional::UniqueFd> listeners;
  gw::SystemdNotifier notifier;
  std::optional<std::chrono::microseconds> watchdog;
};

// The services READY=1 waits for: those a listener routes to or shares its socket with.
std::set<std::string> services_with_listener(const gw::Config& config) {
  std::set<std::string> out;
  for (const gw::ListenerConfig& l : config.listeners)
    for (const gw::Route& r : l.routes) out.insert(r.service);
  for (const gw::ServiceEntry& s : config.services)
    if (!s.listener.empty()) out.insert(s.service.name);
  return out;
}

// A failed send to NOTIFY_SOCKET is counted; the log says so once a minute at most.
gw::SystemdNotifier::OnError notify_error_handler(mx::Metrics& metrics, const sv::EventLog& log,
                                                  std::string address) {
  return [&metrics, &log, address = std::move(address),
          last = std::optional<std::chrono::steady_clock::time_point>()](const char* reason,
                                                                         int err) mutable {
    metrics.systemd_notify_error(reason);
    const auto now = std::chrono::steady_clock::now();
    if (last && now - *last < std::chrono::minutes(1)) return;
    last = now;
    log.event(sv::LogLevel::warn, "systemd_notify_failed")
        .str("notify_socket", address)
        .str("reason", reason)
        .str("error", std::strerror(err));
  };
}

// Workers carried over an upgrade whose service the configuration no longer
// has: nobody would supervise them. They are our children: SIGCHLD reaps them.
void end_unclaimed(const gw::UpgradeState::CarriedService& s, const sv::EventLog& log) {
  for (const sv::Service::CarriedWorker& w : s.workers) {
    ::syscall(SYS_pidfd_send_signal, w.pidfd, SIGKILL, nullptr, 0);
    ::kill(-w.pid, SIGKILL);
    for (int fd : {w.pidfd, w.control, w.counter, w.process_fd})
      if (fd >= 0) ::close(fd);
    log.event(sv::LogLevel::warn, "upgrade_worker_unclaimed")
        .str("service", s.name)
        .num("replica", w.replica)
        .num("pid", w.pid)
        .str("action", "SIGKILL: the configuration has no such service any more");
  }
}

int run(const gw::Config& config, FromSystemd systemd, const std::vector<std::string>& argv,
        std::optional<gw::UpgradeState> carried, std::vector<gw::Upgrader::InheritedFd> inherited) {
  // Writes to a closed peer (guardian pipe, sockets) must fail with EPIPE, not kill us.
  std::signal(SIGPIPE, SIG_IGN);
  // A coordinator that is itself another coordinator's worker runs a system
  // of its own: the outer channel's variable must not reach its ports.
  ::unsetenv(occasional::workers::kProcessFdEnv);
  // One thread runs everything here, so Asio's scheduler and reactor need
  // no locks (a few lock/unlock pairs saved per handoff). Nothing may touch
  // `io` from another thread.
  boost::asio::io_context io(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE);
  // Every line from the first, for GET /v1/events' backlog; outlives the log.
  mx::EventStream events;
  sv::EventLog log(config.log_format);
  log.set_tap([&events](std::string_view line) { events.publish(line); });
  const uint64_t fd_limit = raise_fd_limit(log);
  std::optional<sv::Guardian::Carried> guardian;
  if (carried && carried->guardian.pid > 0)
    guardian = sv::Guardian::Carried{
        carried->guardian.pid, occasional::UniqueFd(carried->guardian.pipe),
        occasional::UniqueFd(carried->guardian.pidfd), carried->guardian.groups};
  sv::Supervisor supervisor(io, log, std::move(guardian));
  sv::ServiceLog service_log(log);
  supervisor.add_observer(service_log);
  if (carried)
    for (const auto& [name, fd] : carried->listeners)
      systemd.listeners[name] = occasional::UniqueFd(fd);
  gw::Gateway gateway(io, config, gw::read_cpu_budget(), fd_limit, log,
                      std::move(systemd.listeners));
  for (sv::ServiceObserver* observer : gateway.observers()) supervisor.add_observer(*observer);
  gw::SystemdReporter* reporter_ptr = nullptr;
  gw::Shutdown shutdown(io, supervisor, log, [&gateway, &reporter_ptr] {
    reporter_ptr->stopping();
    gateway.stop();
  });
  gw::CoordinatorAdmin* backend_ptr = nullptr;
  mx::Metrics metrics(gateway.stats(), [&backend_ptr] { return backend_ptr->status(); });
  if (carried) {
    // Workers matter more than counters: text this binary cannot read costs
    // the counts, not the upgrade.
    try {
      metrics.carry_counters(carried->counters);
    } catch (const std::exception& e) {
      log.event(sv::LogLevel::error, "upgrade_counters_lost").str("error", e.what());
    }
    for (const auto& [name, c] : carried->listener_counts)
      if (auto it = gateway.stats().listeners.find(name); it != gateway.stats().listeners.end()) {
        it->second.accepted += c.accepted;
        it->second.handed_off += c.handed_off;
        it->second.rejected += c.rejected;
      }
  }
  gw::MetricsFeed feed(metrics);
  supervisor.add_observer(feed);
  gw::CoordinatorAdmin backend(
      supervisor, gateway.dispatcher(), gateway.stats(), feed, log,
      [&shutdown](bool stopped) { shutdown.set_operator_stopped(stopped); });
  backend_ptr = &backend;
  gw::SystemdNotifier& notifier = systemd.notifier;
  notifier.on_error(notify_error_handler(metrics, log, notifier.address()));
  if (notifier.active())
    log.event(sv::LogLevel::info, "systemd_notify_socket").str("notify_socket", notifier.address());
  else if (!notifier.address().empty())
    log.event(sv::LogLevel::error, "systemd_notify_socket")
        .str("notify_socket", notifier.address())
        .str("error", "socket(AF_UNIX) failed: reports to systemd are not sent");
  gw::SystemdReporter reporter(
      io, notifier, [&backend] { return backend.status(); }, services_with_listener(config),
      systemd.watchdog, log);
  reporter_ptr = &reporter;
  supervisor.add_observer(reporter);
  gw::Upgrader upgrader(io, {supervisor, gateway, metrics, log, notifier}, argv);
  upgrader.set_inherited(std::move(inherited));
  upgrader.set_watchdog(systemd.watchdog);
  backend.on_upgrade([&upgrader](const std::string& binary, mx::AdminBackend::UpgradeDone done) {
    upgrader.begin(binary, std::move(done));
  });
  std::unique_ptr<mx::AdminServer> admin;
  if (carried && carried->admin >= 0 && !config.admin.enabled) ::close(carried->admin);
  if (config.admin.enabled) {
    mx::AdminConfig ac = admin_config(config.admin);
    if (carried) ac.adopted_fd = carried->admin;
    admin = std::make_unique<mx::AdminServer>(io, ac, backend, metrics, &events);
    log.event(sv::LogLevel::info, "admin_listening")
        .str("address", config.admin.address.text)
        .num("port", admin->port())
        .flag("token", !ac.token.empty())
        .flag("insecure", ac.insecure);
    admin->start();
    upgrader.set_admin(admin.get());
    shutdown.hold_when_failed(true);
  }
  if (carried && carried->processes) supervisor.hub().adopt(*carried->processes);
  std::set<std::string> adopted;
  for (const gw::ServiceEntry& entry : config.services) {
    sv::ServiceConfig service = entry.service;
    if (service.mode == occasional::workers::WorkerMode::inetd) {
      sv::InetdService& inetd = supervisor.add_inetd(
          sv::InetdConfig{service.name, service.process, entry.max_processes, service.grace});
      gateway.dispatcher().add_inetd(
          io, inetd, gw::QueueConfig{entry.balancer.queue_max, entry.balancer.queue_timeout});
    } else {
      if (service.mode == occasional::workers::WorkerMode::listen_fds) {
        service.listen_fd = gateway.listener_fd(entry.listener);
        service.listener_name = entry.listener;
      }
      sv::Service& added = supervisor.add_service(std::move(service));
      if (carried)
        for (const gw::UpgradeState::CarriedService& c : carried->services)
          if (c.name == added.name()) {
            added.adopt(c.workers);
            if (gw::Balancer* b = gateway.dispatcher().find(c.name))
              for (const auto& [replica, balance] : c.balance) b->restore(replica, balance);
            adopted.insert(c.name);
          }
    }
    metrics.declare_service(entry.service.name);
    log.event(sv::LogLevel::info, "service")
        .str("service", entry.service.name)
        .str("mode", occasional::workers::worker_mode_name(entry.service.mode))
        .num("replicas", entry.service.replicas)
        .str("restart", sv::restart_mode_name(entry.service.restart.mode));
  }
  log.event(sv::LogLevel::info, "coordinator_start").num("pid", ::getpid());
  if (carried) {
    for (const gw::UpgradeState::CarriedService& c : carried->services)
      if (!adopted.contains(c.name)) end_unclaimed(c, log);
    metrics.upgrade_done();
    log.event(sv::LogLevel::info, "upgraded")
        .str("message", "upgraded from " + carried->from_version + " to " + gw::kProgramVersion)
        .str("from", carried->from_version)
        .str("to", gw::kProgramVersion)
        .num("workers_carried", [&carried] {
          int64_t n = 0;
          for (const auto& c : carried->services) n += static_cast<int64_t>(c.workers.size());
          return n;
        }());
  }
  gateway.start();
  // Every signal handler is in place: what an upgrade held back comes now.
  gw::release_upgrade_signals();
  for (const auto& s : supervisor.services())
    if (!adopted.contains(s->name())) s->start();
  for (const auto& s : supervisor.inetd_services()) s->start();
  reporter.start();
  io.run();
  // Every worker finished without a stop signal: the manager learns it too.
  reporter.stopping();
  return static_cast<int>(shutdown.status());
}

// The coordinator's command line, with its configuration file read.
// Throws UsageError or ConfigError.
gw::Command parse_coordinator(const std::vector<std::string>& args) {
  gw::Command cmd = gw::parse_command_line(args, ::isatty(2) == 1);
  if (!cmd.config_path.empty()) {
    const gw::Config flags = cmd.config;
    // Flags on the command line win over the file.
    auto given = [&args](const char* flag) {
      return std::find(args.begin(), args.end(), flag) != args.end();
    };
    // --admin goes in before validation (it may make a token unnecessary).
    cmd.config = gw::load_config_file(cmd.config_path, given("--admin") ? &flags.admin : nullptr);
    if (given("--log-format")) cmd.config.log_format = flags.log_format;
    if (given("--token") || given("--token-file")) cmd.config.admin.token = flags.admin.token;
    if (given("--admin-insecure")) cmd.config.admin.insecure = true;
  }
  return cmd;
}

// `occasional --self-test STATE_VERSION ARGS...`, run by an upgrade in the
// new binary before anything is handed over (docs/supervision.md): 0 when
// ARGS are a coordinator command line this binary runs (its configuration
// file read and checked) and it reads upgrade state STATE_VERSION.
int self_test(const std::vector<std::string>& args) {
  if (args.size() < 3) {
    std::fputs("occasional: --self-test needs STATE_VERSION and a command line\n", stderr);
    return 1;
  }
  int version = 0;
  const std::string& v = args[2];
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), version);
  if (ec != std::errc{} || end != v.data() + v.size() || version < gw::kOldestUpgradeStateVersion ||
      version > gw::kUpgradeStateVersion) {
    std::fprintf(stderr,
                 "occasional: self-test: the running coordinator writes upgrade state version "
                 "%s, this binary (%s) reads versions %d to %d\n",
                 v.c_str(), gw::kProgramVersion, gw::kOldestUpgradeStateVersion,
                 gw::kUpgradeStateVersion);
    return 1;
  }
  std::vector<std::string> rest{args[0]};
  rest.insert(rest.end(), args.begin() + 3, args.end());
  try {
    const gw::Command cmd = parse_coordinator(rest);
    if (cmd.kind != gw::Command::Kind::run) {
      std::fputs("occasional: self-test: the command line is not `run`\n", stderr);
      return 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "occasional: self-test: %s\n", e.what());
    return 1;
  }
  std::printf("occasional %s: self-test passed (upgrade state version %d)\n", gw::kProgramVersion,
              gw::kUpgradeStateVersion);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Before anything here opens an fd.
  std::vector<gw::Upgrader::InheritedFd> inherited = gw::Upgrader::inherited_fds();
  std::vector<std::string> args(argv, argv + argc);
  if (args.size() >= 2 && args[1] == "ctl") return gw::run_ctl(args);
  if (args.size() >= 2 && args[1] == "--self-test") return self_test(args);
  gw::Command cmd;
  try {
    cmd = parse_coordinator(args);
  } catch (const gw::UsageError& e) {
    std::fprintf(stderr, "occasional: %s\n", e.what());
    return static_cast<int>(gw::ExitStatus::usage);
  } catch (const gw::ConfigError& e) {
    std::fprintf(stderr, "occasional: %s\n", e.what());
    return static_cast<int>(gw::ExitStatus::usage);
  }
  switch (cmd.kind) {
    case gw::Command::Kind::help:
      std::fputs(gw::kUsage, stdout);
      return 0;
    case gw::Command::Kind::version:
      std::printf("occasional %s\n", gw::kProgramVersion);
      return 0;
    case gw::Command::Kind::check:
      // `run` refuses this at start unless its command line adds a token
      // (the shipped manifests do: --token-file from a Secret).
      if (cmd.config.admin.enabled)
        if (auto problem = mx::exposure_problem(admin_config(cmd.config.admin)))
          std::fprintf(stderr,
                       "occasional: %s: warning: %s (run refuses to start unless its command line "
                       "adds one of these)\n",
                       cmd.config_path.c_str(), problem->c_str());
      std::printf("%s: ok (%zu listeners, %zu services)\n", cmd.config_path.c_str(),
                  cmd.config.listeners.size(), cmd.config.services.size());
      return 0;
    case gw::Command::Kind::run:
      break;
  }
  FromSystemd systemd;
  std::optional<gw::UpgradeState> carried;
  try {
    // After an upgrade the listeners come from the coordinator this one replaced.
    int memfd = -1;
    carried = gw::take_upgrade_state(memfd);
    if (carried) {
      std::vector<int> taken = carried->fds();
      taken.push_back(memfd);
      inherited = gw::Upgrader::minus(std::move(inherited), taken);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "occasional: %s\n", e.what());
    return static_cast<int>(gw::ExitStatus::fatal);
  }
  try {
    if (!carried)
      systemd.listeners =
          gw::take_activated_listeners(cmd.config.listeners, cmd.config_path.empty());
    systemd.notifier = gw::SystemdNotifier::from_environment();
    systemd.watchdog = gw::watchdog_from_environment();
  } catch (const std::exception& e) {
    // SocketActivationError, or a NOTIFY_SOCKET / WATCHDOG_USEC that cannot be used.
    std::fprintf(stderr, "occasional: %s\n", e.what());
    return static_cast<int>(gw::ExitStatus::usage);
  }
  try {
    return run(cmd.config, std::move(systemd), args, std::move(carried), std::move(inherited));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "occasional: %s\n", e.what());
    return static_cast<int>(gw::ExitStatus::fatal);
  }
}
