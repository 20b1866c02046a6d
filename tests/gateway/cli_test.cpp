#include "gateway/cli.hpp"

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
  EXPECT_EQ(c.run.service.replicas, 4);
  EXPECT_EQ(c.run.service.restart.mode, supervisor::RestartMode::on_failure);
  EXPECT_EQ(c.run.service.grace, 1500ms);
  EXPECT_EQ(c.run.service.restart.backoff_initial, 0ms);
  EXPECT_EQ(c.run.service.process.argv, (std::vector<std::string>{"./worker", "--port", "1"}));
  EXPECT_EQ(c.run.service.name, "worker");
  EXPECT_EQ(c.run.log_format, supervisor::LogFormat::json);
}

TEST(CliTest, TerminalDefaultsToText) {
  Command c = parse_command_line({"occasional", "run", "true"}, true);
  EXPECT_EQ(c.run.log_format, supervisor::LogFormat::text);
  EXPECT_EQ(c.run.service.process.argv, (std::vector<std::string>{"true"}));
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
           {{"jump"}, "unknown command 'jump': expected 'run'"},
           {{"run", "--backoff-initial", "5", "--backoff-max", "1", "x"},
            "--backoff-max must be >= --backoff-initial"},
           {{"run", "--log-format", "xml", "x"}, "--log-format: expected json or text, got 'xml'"},
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
