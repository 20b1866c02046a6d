#include "supervisor/process_run.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <system_error>
#include <vector>

#include "supervisor/child_reaper.hpp"
#include "supervisor/event_log.hpp"
#include "supervisor/exit_record.hpp"
#include "supervisor/process_hub.hpp"
#include "workers/process_control.hpp"
#include "workers/process_start.hpp"
#include "workers/protocol.hpp"
#include "workers/unique_fd.hpp"

namespace occasional {

namespace supervisor {

namespace {

std::vector<pid_t> own_children() {
  std::vector<pid_t> out;
  DIR* tasks = ::opendir("/proc/self/task");
  if (!tasks) return out;
  while (dirent* t = ::readdir(tasks)) {
    if (t->d_name[0] == '.') continue;
    std::string path = std::string("/proc/self/task/") + t->d_name + "/children";
    if (FILE* f = std::fopen(path.c_str(), "re")) {
      long pid;
      while (std::fscanf(f, "%ld", &pid) == 1) out.push_back(static_cast<pid_t>(pid));
      std::fclose(f);
    }
  }
  ::closedir(tasks);
  return out;
}

// Processes spawned but never reported, orphans come to the subreaper:
// whatever child is left is ours to end.
void kill_remaining_children() {
  for (int round = 0; round < 100; ++round) {
    std::vector<pid_t> children = own_children();
    if (children.empty()) break;
    for (pid_t pid : children) ::kill(pid, SIGKILL);
    for (pid_t pid : children) ::waitpid(pid, nullptr, 0);
  }
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

// A program a coordinator started in handoff mode: the worker control
// channel it was given (OCCASIONAL_CONTROL_FD, with OCCASIONAL_SERVICE) goes to process zero alone
// (tcp::gateway_start), moved above the fds run_child places; the variable
// is removed so that no process of this system mistakes another fd for it.
UniqueFd take_gateway_channel() {
  const char* named = std::getenv(workers::kControlFdEnv);
  // A service's worker has OCCASIONAL_SERVICE too; a port (spawn_port)
  // has only the control fd, which is its own process channel.
  if (!named || !std::getenv("OCCASIONAL_SERVICE")) return {};
  ::unsetenv(workers::kControlFdEnv);
  char* end = nullptr;
  const long fd = std::strtol(named, &end, 10);
  int type = 0;
  socklen_t len = sizeof type;
  if (*named == '\0' || *end != '\0' || fd < 0 || fd > 1'000'000 ||
      ::getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
      type != SOCK_SEQPACKET)
    return {};
  UniqueFd moved(::fcntl(static_cast<int>(fd), F_DUPFD_CLOEXEC, 10));
  if (moved) ::close(static_cast<int>(fd));
  return moved;
}

}  // namespace

Map run_for_reason(std::function<Value(Process&)> zero,
                   const std::function<void(const ProcessHub&)>& at_zero_exit) {
  process_start::require_single_thread("occasional::run");
  // A service's worker joins its coordinator's system and runs `zero`
  // itself (docs/messages.md, "Workers are processes").
  if (std::optional<Process> joined = Process::from_environment()) {
    if (UniqueFd gateway = take_gateway_channel())
      process_start::give_gateway(*joined, std::move(gateway));
    return process_start::run_body(*joined, zero);
  }
  int was_subreaper = 0;
  ::prctl(PR_GET_CHILD_SUBREAPER, &was_subreaper);
  ChildReaper::become_subreaper();
  UniqueFd gateway = take_gateway_channel();
  std::optional<Map> result;
  {
    boost::asio::io_context io;
    EventLog log(LogFormat::text, 2);
    ChildReaper reaper(io, log);
    ProcessHub hub(io, reaper, log);
    ProcessHub::Opened opened = hub.open_process();
    const Address address = opened.address;
    hub.on_exit([&](const Address& a, const Map& reason) {
      if (a == address) {
        result = reason;
        io.stop();
      }
    });
    const pid_t coordinator = ::getpid();
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0)
      process_start::run_child(opened.child_control.release(), address, coordinator, zero,
                               gateway ? gateway.get() : -1);
    if (pid < 0) throw std::system_error(errno, std::system_category(), "occasional::run: fork");
    opened.child_control.reset();
    gateway.reset();
    if (std::error_code ec = hub.started(address, pid))
      throw std::system_error(ec, "occasional::run: watching process zero");
    io.run();
    if (at_zero_exit) at_zero_exit(hub);
    hub.kill_all();
  }  // the reaper's destructor SIGKILLs and reaps what it still watches
  kill_remaining_children();
  if (!was_subreaper) ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  return result ? *result : process_control::reason_noproc();
}

int exit_code_for(const Map& reason) {
  const std::string_view kind = process_control::reason_kind(reason);
  if (kind == "normal") {
    const Value* v = reason.find("value");
    return v && v->as_int() ? static_cast<int>(*v->as_int()) : 0;
  }
  if (kind == "exit_code") {
    const Value* code = reason.find("code");
    return code && code->as_int() ? static_cast<int>(*code->as_int()) : 1;
  }
  if (kind == "linked") return 128 + SIGKILL;
  if (kind == "signal") {
    const Value* name = reason.find("signal");
    for (int sig = 1; sig < NSIG && name && name->as_string(); ++sig)
      if (signal_name(sig) == *name->as_string()) return 128 + sig;
  }
  return 1;
}

}  // namespace supervisor

int run(std::function<Value(Process&)> zero) {
  return supervisor::exit_code_for(supervisor::run_for_reason(std::move(zero)));
}

}  // namespace occasional
