// The occasional executable: the composition root. It wires the modules
// together and does nothing else.
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <csignal>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "gateway/cli.hpp"
#include "gateway/shutdown.hpp"
#include "supervisor/event_log.hpp"
#include "supervisor/service_log.hpp"
#include "supervisor/supervisor.hpp"

namespace sv = occasional::supervisor;
namespace gw = occasional::gateway;

namespace {

int run(const gw::RunOptions& options) {
  // Writes to a closed peer (guardian pipe, sockets) must fail with EPIPE, not kill us.
  std::signal(SIGPIPE, SIG_IGN);
  boost::asio::io_context io(1);
  sv::EventLog log(options.log_format);
  sv::Supervisor supervisor(io, log);
  sv::ServiceLog service_log(log);
  supervisor.add_observer(service_log);
  gw::Shutdown shutdown(io, supervisor, log);
  supervisor.add_service(options.service);
  log.event(sv::LogLevel::info, "coordinator_start")
      .num("pid", ::getpid())
      .str("service", options.service.name)
      .num("replicas", options.service.replicas)
      .str("restart", sv::restart_mode_name(options.service.restart.mode));
  supervisor.start_all();
  io.run();
  return static_cast<int>(shutdown.status());
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  gw::Command cmd;
  try {
    cmd = gw::parse_command_line(args, ::isatty(2) == 1);
  } catch (const gw::UsageError& e) {
    std::fprintf(stderr, "occasional: %s\n", e.what());
    return static_cast<int>(gw::ExitStatus::usage);
  }
  switch (cmd.kind) {
    case gw::Command::Kind::help:
      std::fputs(gw::kUsage, stdout);
      return 0;
    case gw::Command::Kind::version:
      std::puts("occasional 0.1.0");
      return 0;
    case gw::Command::Kind::run:
      break;
  }
  try {
    return run(cmd.run);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "occasional: %s\n", e.what());
    return static_cast<int>(gw::ExitStatus::fatal);
  }
}
