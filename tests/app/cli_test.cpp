#include "app/cli.hpp"

#include <gtest/gtest.h>

namespace occasional::gateway {
namespace {

using namespace std::chrono_literals;

Command parse(std::vector<std::string> args) {
  args.insert(args.begin(), "occasional");
  return parse_command_line(args, false);
}

TEST(CliTest, RunWithOptionsAndCommand) {
  Command c = parse({"run", "--replicas", "4", "--restart", "on-failure", "--grace", "1.5",
                     "--backoff-initial", "0", "--", "./worker", "--port", "1"});
  ASSERT_EQ(c.kind, Command::Kind::run);
  EXPECT_EQ(c.config.services.at(0).service.replicas, 4);
  EXPECT_EQ(c.config.services.at(0).service.restart.mode, supervisor::RestartMode::on_failure);
  EXPECT_EQ(c.config.services.at(0).service.grace, 1500ms);
  EXPECT_EQ(c.config.services.at(0).service.restart.backoff_initial, 0ms);
  EXPECT_EQ(c.config.services.at(0).service.process.argv,
            (std::vector<std::string>{"./worker", "--port", "1"}));
  EXPECT_EQ(c.config.services.at(0).service.name, "worker");
  EXPECT_EQ(c.config.log_format, supervisor::LogFormat::json);
}

TEST(CliTest, TerminalDefaultsToText) {
  Command c = parse_command_line({"occasional", "run", "true"}, true);
  EXPECT_EQ(c.config.log_format, supervisor::LogFormat::text);
  EXPECT_EQ(c.config.services.at(0).service.process.argv, (std::vector<std::string>{"true"}));
}

TEST(CliTest, ErrorsNameTheOptionAndTheValue) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  for (const Case& k : std::vector<Case>{
           {{"run", "--replicas", "0", "--", "x"},
            "--replicas: expected a whole number >= 1, got '0'"},
           {{"run", "--replicas"}, "--replicas needs a value"},
           {{"run", "--restart", "sometimes", "x"},
            "--restart: expected always, on-failure or never, got 'sometimes'"},
           {{"run", "--grace", "-1", "x"}, "--grace: expected a number of seconds >= 0, got '-1'"},
           {{"run", "--bogus", "x"}, "unknown option '--bogus' (see occasional --help)"},
           {{"run", "--"}, "missing command to run: occasional run [OPTIONS] -- COMMAND [ARGS...]"},
           {{"jump"}, "unknown command 'jump': expected run, check or ctl"},
           {{"run", "--mode", "handoff", "x"}, "--mode handoff needs --listen ADDR"},
           {{"run", "--listen", "8080", "x"},
            "--listen: listen address '8080' has no port: write it as 127.0.0.1:8080, [::1]:8080 "
            "or :8080"},
           {{"run", "--listen", "localhost:80", "x"},
            "--listen: listen address 'localhost:80': 'localhost' is not a numeric IPv4 address "
            "(IPv6 goes in brackets: [::1]:8080)"},
           {{"run", "--backoff-initial", "5", "--backoff-max", "1", "x"},
            "--backoff-max must be >= --backoff-initial"},
           {{"run", "--log-format", "xml", "x"}, "--log-format: expected json or text, got 'xml'"},
           {{"run", "--defer-accept", "x"}, "--defer-accept needs --listen ADDR"},
           {{"run", "--burst", "pack", "x"}, "--burst: expected auto, spread or runs, got 'pack'"},
           {{"run", "--listen", "127.0.0.1:9090", "x"},
            "--listen: listener 'main' (127.0.0.1:9090) and the admin endpoint (127.0.0.1:9090) "
            "cannot both listen: the same port on the same address, or on a wildcard address "
            "beside it"},
           {{"run", "--readiness", "soon", "x"},
            "--readiness: expected notify, started or accepting, got 'soon'"},
           {{"run", "--listen", ":0", "--readiness", "notify", "x"},
            "--readiness applies to --mode listen_fds only"},
           {{"run", "--cooloff", "-1", "x"},
            "--cooloff: expected a number of seconds >= 0, got '-1'"},
       }) {
    try {
      parse(k.args);
      ADD_FAILURE() << "no error for " << k.message;
    } catch (const UsageError& e) {
      EXPECT_EQ(std::string(e.what()), k.message);
    }
  }
}

TEST(CliTest, HelpAndVersion) {
  EXPECT_EQ(parse({"--help"}).kind, Command::Kind::help);
  EXPECT_EQ(parse({"run", "-h"}).kind, Command::Kind::help);
  EXPECT_EQ(parse({"--version"}).kind, Command::Kind::version);
}

}  // namespace
}  // namespace occasional::gateway

namespace occasional::gateway {
namespace {

TEST(CliTest, ListenMakesAHandoffServiceBehindADefaultRoute) {
  Command c = parse({"run", "--listen", "127.0.0.1:0", "--replicas", "2", "--", "./w"});
  ASSERT_EQ(c.config.listeners.size(), 1u);
  EXPECT_EQ(c.config.listeners[0].address.host, "127.0.0.1");
  EXPECT_EQ(c.config.listeners[0].address.port, 0);
  ASSERT_EQ(c.config.listeners[0].routes.size(), 1u);
  EXPECT_EQ(c.config.listeners[0].routes[0].kind, RouteKind::default_route);
  EXPECT_EQ(c.config.listeners[0].routes[0].service, "w");
  EXPECT_EQ(c.config.services.at(0).service.mode, workers::WorkerMode::handoff);
  EXPECT_FALSE(c.config.listeners[0].defer_accept);
  EXPECT_TRUE(
      parse({"run", "--listen", ":0", "--defer-accept", "./w"}).config.listeners[0].defer_accept);
  EXPECT_TRUE(c.config.services.at(0).service.process_channel);
  EXPECT_FALSE(parse({"run", "--no-process", "./w"}).config.services.at(0).service.process_channel);
  EXPECT_EQ(c.config.services.at(0).balancer.burst, BurstMode::automatic);
  EXPECT_EQ(parse({"run", "--listen", ":0", "--burst", "spread", "./w"})
                .config.services.at(0)
                .balancer.burst,
            BurstMode::spread);
  EXPECT_EQ(parse({"run", "--listen", ":0", "--burst", "runs", "./w"})
                .config.services.at(0)
                .balancer.burst,
            BurstMode::runs);
}

TEST(CliTest, ListenFdsSharesTheListenerWithoutRoutes) {
  Command c = parse({"run", "--listen", "[::1]:9000", "--mode", "listen_fds", "--", "./w"});
  EXPECT_TRUE(c.config.listeners[0].address.v6);
  EXPECT_TRUE(c.config.listeners[0].routes.empty());
  EXPECT_EQ(c.config.services.at(0).listener, "main");
}

TEST(CliTest, ReadinessAndCooloff) {
  const Command c = parse({"run", "--listen", ":0", "--mode", "listen_fds", "--readiness",
                           "started", "--cooloff", "0", "--", "./w"});
  EXPECT_EQ(c.config.services.at(0).service.readiness, supervisor::Readiness::started);
  EXPECT_EQ(c.config.services.at(0).service.restart.cooloff, 0ms);
  EXPECT_EQ(parse({"run", "--listen", ":0", "--mode", "listen_fds", "./w"})
                .config.services.at(0)
                .service.readiness,
            supervisor::Readiness::accepting);
}

TEST(CliTest, NoListenIsPlain) {
  Command c = parse({"run", "--", "sleep", "1"});
  EXPECT_TRUE(c.config.listeners.empty());
  EXPECT_EQ(c.config.services.at(0).service.mode, workers::WorkerMode::plain);
}

}  // namespace
}  // namespace occasional::gateway
