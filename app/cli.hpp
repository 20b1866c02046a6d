#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "gateway/config.hpp"

namespace occasional::gateway {

// A command line a person got wrong; main prints it and exits 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Command {
  enum class Kind { run, check, help, version };
  Kind kind = Kind::help;
  Config config;            // run
  std::string config_path;  // run --config, check
};

// Parses argv (argv[0] included). `stderr_is_tty` picks the default log
// format. `run --config FILE` and `check FILE` leave loading to the caller.
Command parse_command_line(const std::vector<std::string>& args, bool stderr_is_tty);

extern const char* const kUsage;

}  // namespace occasional::gateway
