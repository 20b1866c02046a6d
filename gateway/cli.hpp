#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "supervisor/event_log.hpp"
#include "supervisor/service.hpp"

namespace occasional::gateway {

// A command line a person got wrong; main prints it and exits 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct RunOptions {
  supervisor::ServiceConfig service;
  supervisor::LogFormat log_format = supervisor::LogFormat::json;
};

struct Command {
  enum class Kind { run, help, version };
  Kind kind = Kind::help;
  RunOptions run;
};

// Parses argv (argv[0] included). `stderr_is_tty` picks the default log format.
Command parse_command_line(const std::vector<std::string>& args, bool stderr_is_tty);

extern const char* const kUsage;

}  // namespace occasional::gateway
