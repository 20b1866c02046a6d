#include "app/cli.hpp"

#include <charconv>
#include <cmath>
#include <limits>

namespace occasional::gateway {

const char* const kUsage =
    R"(usage: occasional run [OPTIONS] -- COMMAND [ARGS...]
       occasional run --config FILE [--log-format json|text]
       occasional check FILE
       occasional ctl [--admin ADDR] [--token T] status|events|restart|scale|stop|start|upgrade ...
       occasional --self-test STATE_VERSION run ...   (run by an upgrade in the new binary)

Supervises COMMAND: starts it, restarts it by policy, logs every step. With
--listen, owns that port and hands each connection to a ready worker.

Options:
  --listen ADDR            listen on ADDR (127.0.0.1:8080, [::1]:8080, :8080)
  --mode MODE              handoff | listen_fds | inetd | plain (default:
                           handoff with --listen, plain without)
  --max-processes N        inetd mode: processes alive at once (default 64)
  --readiness WHEN         listen_fds mode: when a worker is ready: notify (on
                           READY=1), started (once it runs) or accepting (on
                           READY=1, or once seen waiting to accept; default)
  --max-connections N      per worker, handoff mode (default 0: no cap)
  --burst auto|spread|runs handoff mode: how a burst of connections is dealt out;
                           runs (up to 8 to one worker before the next) when
                           the service has one CPU, spread otherwise (default auto)
  --queue-max N            connections waiting for a ready worker (default 1024);
                           while full, new clients wait in the kernel's backlog
  --queue-timeout SEC      how long one may wait (default 5)
  --defer-accept           accept a connection once the client has sent its first
                           bytes (TCP_DEFER_ACCEPT); for HTTP, TLS and other
                           protocols where the client speaks first
  --no-process             give workers no channel to the process system (no
                           OCCASIONAL_PROCESS_FD, no service/replica name)
  --config FILE            listeners, routes and services from a JSON file
  --name NAME              service name (default: the command's file name)
  --replicas N             copies of COMMAND to run (default 1)
  --restart POLICY         always | on-failure | never (default always)
  --backoff-initial SEC    delay before the 2nd restart in a row (default 0.1)
  --backoff-max SEC        longest restart delay (default 30)
  --stable-after SEC       uptime that resets the backoff (default 10)
  --max-restarts N         a replica restarting more often than this within the
                           window fails the service (default 10)
  --restart-window SEC     the window for --max-restarts (default 60)
  --cooloff SEC            a failed service is started again after SEC, doubled for
                           each failure in a row up to 300 or SEC if larger
                           (default 10); 0: it stays failed until `occasional ctl start`
  --grace SEC              SIGTERM to SIGKILL when stopping (default 10)
  --admin ADDR|off         the admin endpoint: /healthz, /readyz, /metrics,
                           /v1/status, POST /v1/services/... (default 127.0.0.1:9090;
                           overrides the file's admin.address)
  --token TOKEN            bearer token that guards the admin POSTs; without
                           one, POSTs need X-Occasional-Admin and no Origin
                           (a CSRF guard; docs/admin.md)
  --token-file FILE        the same, read from the first line of FILE
  --admin-insecure         allow an admin address that is not loopback without
                           a token (refused at start otherwise)
  --log-format FORMAT      json | text (default: text on a terminal, json otherwise)
  -h, --help               this text
  --version                the version

Signals: SIGTERM/SIGINT stop (a second one kills), SIGUSR2 upgrades in place to the
binary on disk (as `ctl upgrade`: docs/supervision.md).

Exit status: 0 stopped cleanly (or every worker finished with code 0), 1 a service
was failed at stop (or a worker finished with a failure), 2 bad command line,
3 fatal error, 4 stopped by a second signal (workers SIGKILLed).
)";

namespace {

std::string need_value(const std::vector<std::string>& args, size_t& i) {
  if (i + 1 >= args.size()) throw UsageError(args[i] + " needs a value");
  return args[++i];
}

double parse_seconds(const std::string& flag, const std::string& text) {
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || !std::isfinite(value) || value < 0)
    throw UsageError(flag + ": expected a number of seconds >= 0, got '" + text + "'");
  return value;
}

supervisor::Duration to_duration(double seconds) {
  return std::chrono::duration_cast<supervisor::Duration>(std::chrono::duration<double>(seconds));
}

int parse_count(const std::string& flag, const std::string& text, int min) {
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value < min)
    throw UsageError(flag + ": expected a whole number >= " + std::to_string(min) + ", got '" +
                     text + "'");
  return value;
}

}  // namespace

Command parse_command_line(const std::vector<std::string>& args, bool stderr_is_tty) {
  Command cmd;
  if (args.size() < 2) throw UsageError("missing command: try 'occasional run -- COMMAND'");
  const std::string& verb = args[1];
  if (verb == "-h" || verb == "--help" || verb == "help") return cmd;
  if (verb == "--version") {
    cmd.kind = Command::Kind::version;
    return cmd;
  }
  if (verb == "check") {
    if (args.size() != 3) throw UsageError("usage: occasional check FILE");
    cmd.kind = Command::Kind::check;
    cmd.config_path = args[2];
    return cmd;
  }
  if (verb != "run") throw UsageError("unknown command '" + verb + "': expected run, check or ctl");
  cmd.kind = Command::Kind::run;
  cmd.config.log_format = stderr_is_tty ? supervisor::LogFormat::text : supervisor::LogFormat::json;
  ServiceEntry entry;
  supervisor::ServiceConfig& service = entry.service;
  supervisor::RestartConfig& restart = service.restart;
  std::string listen, mode, admin, readiness;
  bool defer_accept = false;

  size_t i = 2;
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "-h" || a == "--help") {
      cmd.kind = Command::Kind::help;
      return cmd;
    } else if (a == "--config") {
      cmd.config_path = need_value(args, i);
    } else if (a == "--listen") {
      listen = need_value(args, i);
    } else if (a == "--mode") {
      mode = need_value(args, i);
      if (!workers::parse_service_mode(mode))
        throw UsageError("--mode: expected handoff, listen_fds, inetd or plain, got '" + mode +
                         "'");
    } else if (a == "--readiness") {
      readiness = need_value(args, i);
      const std::optional<supervisor::Readiness> r = supervisor::parse_readiness(readiness);
      if (!r)
        throw UsageError("--readiness: expected notify, started or accepting, got '" + readiness +
                         "'");
      service.readiness = *r;
    } else if (a == "--max-processes") {
      entry.max_processes = parse_count(a, need_value(args, i), 1);
    } else if (a == "--max-connections") {
      entry.balancer.max_connections =
          static_cast<uint32_t>(parse_count(a, need_value(args, i), 0));
    } else if (a == "--burst") {
      const std::string v = need_value(args, i);
      const std::optional<BurstMode> mode = parse_burst_mode(v);
      if (!mode) throw UsageError("--burst: expected auto, spread or runs, got '" + v + "'");
      entry.balancer.burst = *mode;
    } else if (a == "--queue-max") {
      entry.balancer.queue_max = static_cast<size_t>(parse_count(a, need_value(args, i), 0));
    } else if (a == "--queue-timeout") {
      entry.balancer.queue_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
          to_duration(parse_seconds(a, need_value(args, i))));
    } else if (a == "--defer-accept") {
      defer_accept = true;
    } else if (a == "--no-process") {
      service.process_channel = false;
    } else if (a == "--name") {
      service.name = need_value(args, i);
      if (service.name.empty()) throw UsageError("--name: must not be empty");
    } else if (a == "--replicas") {
      service.replicas = parse_count(a, need_value(args, i), 1);
    } else if (a == "--restart") {
      const std::string v = need_value(args, i);
      const std::optional<supervisor::RestartMode> m = supervisor::parse_restart_mode(v);
      if (!m) throw UsageError("--restart: expected always, on-failure or never, got '" + v + "'");
      restart.mode = *m;
    } else if (a == "--backoff-initial") {
      restart.backoff_initial = to_duration(parse_seconds(a, need_value(args, i)));
    } else if (a == "--backoff-max") {
      restart.backoff_max = to_duration(parse_seconds(a, need_value(args, i)));
    } else if (a == "--stable-after") {
      restart.stable_after = to_duration(parse_seconds(a, need_value(args, i)));
    } else if (a == "--max-restarts") {
      restart.max_restarts = parse_count(a, need_value(args, i), 0);
    } else if (a == "--restart-window") {
      restart.window = to_duration(parse_seconds(a, need_value(args, i)));
    } else if (a == "--cooloff") {
      restart.cooloff = to_duration(parse_seconds(a, need_value(args, i)));
    } else if (a == "--grace") {
      service.grace = to_duration(parse_seconds(a, need_value(args, i)));
    } else if (a == "--admin") {
      admin = need_value(args, i);
      if (admin != "off") {
        try {
          cmd.config.admin.address = parse_listen_address(admin);
        } catch (const std::invalid_argument& e) {
          throw UsageError(std::string("--admin: ") + e.what() + ", or off");
        }
      }
      cmd.config.admin.enabled = admin != "off";
    } else if (a == "--admin-insecure") {
      cmd.config.admin.insecure = true;
    } else if (a == "--token") {
      cmd.config.admin.token = need_value(args, i);
      if (cmd.config.admin.token.empty()) throw UsageError("--token: must not be empty");
    } else if (a == "--token-file") {
      try {
        cmd.config.admin.token = read_token_file(need_value(args, i));
      } catch (const ConfigError& e) {
        throw UsageError(std::string("--token-file: ") + e.what());
      }
    } else if (a == "--log-format") {
      std::string v = need_value(args, i);
      if (v == "json")
        cmd.config.log_format = supervisor::LogFormat::json;
      else if (v == "text")
        cmd.config.log_format = supervisor::LogFormat::text;
      else
        throw UsageError("--log-format: expected json or text, got '" + v + "'");
    } else if (a.starts_with("-")) {
      throw UsageError("unknown option '" + a + "' (see occasional --help)");
    } else {
      // The command may follow without "--" when it does not start with '-'.
      break;
    }
  }
  if (!cmd.config_path.empty()) {
    if (i < args.size() || !listen.empty())
      throw UsageError("--config FILE describes everything: give no command or --listen with it");
    return cmd;
  }
  if (i >= args.size())
    throw UsageError("missing command to run: occasional run [OPTIONS] -- COMMAND [ARGS...]");
  service.process.argv.assign(args.begin() + static_cast<long>(i), args.end());
  if (restart.backoff_max < restart.backoff_initial)
    throw UsageError("--backoff-max must be >= --backoff-initial");
  if (service.name.empty()) {
    const std::string& file = service.process.argv[0];
    auto slash = file.rfind('/');
    service.name = slash == std::string::npos ? file : file.substr(slash + 1);
  }
  if (mode.empty()) mode = listen.empty() ? "plain" : "handoff";
  service.mode = *workers::parse_service_mode(mode);
  if (mode != "plain" && listen.empty())
    throw UsageError("--mode " + mode + " needs --listen ADDR");
  if (defer_accept && listen.empty()) throw UsageError("--defer-accept needs --listen ADDR");
  if (!readiness.empty() && mode != "listen_fds")
    throw UsageError("--readiness applies to --mode listen_fds only");
  if (mode == "plain" && !listen.empty())
    throw UsageError("--mode plain takes no connections: drop --listen or pick another mode");
  if (!listen.empty()) {
    ListenerConfig l;
    l.name = "main";
    l.defer_accept = defer_accept;
    try {
      l.address = parse_listen_address(listen);
    } catch (const std::invalid_argument& e) {
      throw UsageError(std::string("--listen: ") + e.what());
    }
    if (service.mode == workers::WorkerMode::handoff || service.mode == workers::WorkerMode::inetd)
      l.routes.push_back(Route{RouteKind::default_route, service.name, "", "", "", ""});
    else
      entry.listener = l.name;
    cmd.config.listeners.push_back(std::move(l));
  }
  cmd.config.services.push_back(std::move(entry));
  try {
    validate(cmd.config);
  } catch (const ConfigError& e) {
    throw UsageError(std::string("--listen: ") + e.what());
  }
  return cmd;
}

}  // namespace occasional::gateway
