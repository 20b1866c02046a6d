#include "supervisor/worker_launch.hpp"

#include <fcntl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <string_view>

#include "workers/protocol.hpp"

namespace occasional::supervisor {
namespace {
SpawnResult failed(int error, const char* call) {
  SpawnResult result;
  result.error = error;
  result.failed_call = call;
  return result;
}
}  // namespace

SpawnResult launch_worker(const ServiceConfig& config, int replica,
                          const std::string& notify_socket, const AdoptControl& adopt_control,
                          int process_channel) {
  ProcessSpec spec = config.process;
  spec.env.push_back("OCCASIONAL_SERVICE=" + config.name);
  spec.env.push_back("OCCASIONAL_REPLICA=" + std::to_string(replica));
  UniqueFd theirs;
  switch (config.mode) {
    case workers::WorkerMode::plain:
      break;
    case workers::WorkerMode::handoff: {
      int pair[2];
      if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) != 0)
        return failed(errno, "socketpair");
      UniqueFd ours(pair[0]);
      theirs.reset(pair[1]);
      // The worker's end blocks, as a simple worker expects.
      int flags = ::fcntl(theirs.get(), F_GETFL);
      ::fcntl(theirs.get(), F_SETFL, flags & ~O_NONBLOCK);
      spec.pass_fds = {theirs.get()};
      if (std::error_code ec = adopt_control(std::move(ours)))
        return failed(ec.value(), "register_link");
      spec.env.push_back(std::string(workers::kControlFdEnv) + "=" +
                         std::to_string(workers::kControlFd));
      break;
    }
    case workers::WorkerMode::listen_fds:
      spec.pass_fds = {config.listen_fd};
      spec.env.push_back("LISTEN_FDS=1");
      spec.env.push_back("LISTEN_FDNAMES=" + config.listener_name);
      spec.set_listen_pid = true;
      if (!notify_socket.empty()) spec.env.push_back("NOTIFY_SOCKET=" + notify_socket);
      if (config.watchdog > Duration::zero())
        spec.env.push_back(
            "WATCHDOG_USEC=" +
            std::to_string(
                std::chrono::duration_cast<std::chrono::microseconds>(config.watchdog).count()));
      break;
    case workers::WorkerMode::inetd:
    case workers::WorkerMode::standalone:
      std::fprintf(stderr, "occasional: bug: service %s: mode %s is not a Service's\n",
                   config.name.c_str(), workers::worker_mode_name(config.mode));
      std::abort();
  }

  if (process_channel >= 0) {
    spec.pass_fds.push_back(process_channel);
    spec.env.push_back(std::string(workers::kProcessFdEnv) + "=" +
                       std::to_string(3 + spec.pass_fds.size() - 1));
  }
  return spawn_process(spec);
}

bool coordinator_exhausted(int error, const char* call) {
  // Calls the coordinator makes for itself before the child runs; their
  // resource errors say the coordinator is short of fds, memory or
  // processes, not that the worker is broken.
  static constexpr std::string_view kOwnCalls[] = {
      "socketpair", "pipe2", "clone", "fork", "pidfd_open", "register_link", "register_pidfd"};
  const bool own = std::find(std::begin(kOwnCalls), std::end(kOwnCalls), std::string_view(call)) !=
                   std::end(kOwnCalls);
  return own && (error == EMFILE || error == ENFILE || error == ENOMEM || error == EAGAIN ||
                 error == ENOSPC);
}

}  // namespace occasional::supervisor
