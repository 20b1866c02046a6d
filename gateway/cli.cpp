#include "gateway/cli.hpp"

#include <charconv>
#include <cmath>
#include <limits>

namespace occasional::gateway {

const char* const kUsage =
    R"(usage: occasional run [OPTIONS] -- COMMAND [ARGS...]

Supervises COMMAND: starts it, restarts it by policy, logs every step.

Options:
  --name NAME              service name in logs (default: the command's file name)
  --replicas N             copies of COMMAND to run (default 1)
  --restart POLICY         always | on-failure | never (default always)
  --backoff-initial SEC    delay before the 2nd restart in a row (default 0.1)
  --backoff-max SEC        longest restart delay (default 30)
  --stable-after SEC       uptime that resets the backoff (default 10)
  --max-restarts N         more restarts than this within the window fail the service (default 10)
  --restart-window SEC     the window for --max-restarts (default 60)
  --grace SEC              SIGTERM to SIGKILL when stopping (default 10)
  --log-format FORMAT      json | text (default: text on a terminal, json otherwise)
  -h, --help               this text
  --version                the version

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
  if (verb != "run") throw UsageError("unknown command '" + verb + "': expected 'run'");
  cmd.kind = Command::Kind::run;
  RunOptions& run = cmd.run;
  run.log_format = stderr_is_tty ? supervisor::LogFormat::text : supervisor::LogFormat::json;
  supervisor::RestartConfig& restart = run.service.restart;

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
    } else if (a == "--name") {
      run.service.name = need_value(args, i);
      if (run.service.name.empty()) throw UsageError("--name: must not be empty");
    } else if (a == "--replicas") {
      run.service.replicas = parse_count(a, need_value(args, i), 1);
    } else if (a == "--restart") {
      std::string v = need_value(args, i);
      if (v == "always")
        restart.mode = supervisor::RestartMode::always;
      else if (v == "on-failure")
        restart.mode = supervisor::RestartMode::on_failure;
      else if (v == "never")
        restart.mode = supervisor::RestartMode::never;
      else
        throw UsageError("--restart: expected always, on-failure or never, got '" + v + "'");
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
    } else if (a == "--grace") {
      run.service.grace = to_duration(parse_seconds(a, need_value(args, i)));
    } else if (a == "--log-format") {
      std::string v = need_value(args, i);
      if (v == "json")
        run.log_format = supervisor::LogFormat::json;
      else if (v == "text")
        run.log_format = supervisor::LogFormat::text;
      else
        throw UsageError("--log-format: expected json or text, got '" + v + "'");
    } else if (a.starts_with("-")) {
      throw UsageError("unknown option '" + a + "' (see occasional --help)");
    } else {
      // The command may follow without "--" when it does not start with '-'.
      break;
    }
  }
  if (i >= args.size())
    throw UsageError("missing command to run: occasional run [OPTIONS] -- COMMAND [ARGS...]");
  run.service.process.argv.assign(args.begin() + static_cast<long>(i), args.end());
  if (restart.backoff_max < restart.backoff_initial)
    throw UsageError("--backoff-max must be >= --backoff-initial");
  if (run.service.name.empty()) {
    const std::string& file = run.service.process.argv[0];
    auto slash = file.rfind('/');
    run.service.name = slash == std::string::npos ? file : file.substr(slash + 1);
  }
  return cmd;
}

}  // namespace occasional::gateway
