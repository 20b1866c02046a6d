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
#include "gateway/config_loader.hpp"
#include "gateway/gateway.hpp"
#include "gateway/shutdown.hpp"
#include "supervisor/event_log.hpp"
#include "supervisor/service_log.hpp"
#include "supervisor/supervisor.hpp"

namespace sv = occasional::supervisor;
namespace gw = occasional::gateway;

namespace {

int run(const gw::Config& config) {
  // Writes to a closed peer (guardian pipe, sockets) must fail with EPIPE, not kill us.
  std::signal(SIGPIPE, SIG_IGN);
  boost::asio::io_context io(1);
  sv::EventLog log(config.log_format);
  sv::Supervisor supervisor(io, log);
  sv::ServiceLog service_log(log);
  supervisor.add_observer(service_log);
  gw::Gateway gateway(io, config, log);
  supervisor.add_observer(gateway.dispatcher());
  gw::Shutdown shutdown(io, supervisor, log, [&gateway] { gateway.stop(); });
  for (const gw::ServiceEntry& entry : config.services) {
    sv::ServiceConfig service = entry.service;
    if (service.mode == sv::WorkerMode::inetd) {
      sv::InetdService& inetd = supervisor.add_inetd(
          sv::InetdConfig{service.name, service.process, entry.max_processes, service.grace});
      gateway.dispatcher().add_inetd(
          io, inetd, gw::QueueConfig{entry.balancer.queue_max, entry.balancer.queue_timeout});
    } else {
      if (service.mode == sv::WorkerMode::listen_fds) {
        service.listen_fd = gateway.listener_fd(entry.listener);
        service.listener_name = entry.listener;
      }
      supervisor.add_service(std::move(service));
    }
    log.event(sv::LogLevel::info, "service")
        .str("service", entry.service.name)
        .str("mode", sv::worker_mode_name(entry.service.mode))
        .num("replicas", entry.service.replicas)
        .str("restart", sv::restart_mode_name(entry.service.restart.mode));
  }
  log.event(sv::LogLevel::info, "coordinator_start").num("pid", ::getpid());
  gateway.start();
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
    if (!cmd.config_path.empty()) {
      auto format = cmd.config.log_format;
      cmd.config = gw::load_config_file(cmd.config_path);
      // --log-format on the command line wins over the file.
      if (std::find(args.begin(), args.end(), "--log-format") != args.end())
        cmd.config.log_format = format;
    }
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
      std::puts("occasional 0.1.0");
      return 0;
    case gw::Command::Kind::check:
      std::printf("%s: ok (%zu listeners, %zu services)\n", cmd.config_path.c_str(),
                  cmd.config.listeners.size(), cmd.config.services.size());
      return 0;
    case gw::Command::Kind::run:
      break;
  }
  try {
    return run(cmd.config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "occasional: %s\n", e.what());
    return static_cast<int>(gw::ExitStatus::fatal);
  }
}
