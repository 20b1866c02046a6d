#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>

namespace occasional::supervisor {

using WallTime = std::chrono::system_clock::time_point;
using MonoTime = std::chrono::steady_clock::time_point;
using Duration = std::chrono::steady_clock::duration;

// How a worker ended: exactly one of these.
enum class ExitKind {
  exited,        // exit(code)
  killed,        // terminated by `signal`, maybe with a core dump
  start_failed,  // never ran: `error` is the errno of `failed_call`
};

struct ExitRecord {
  std::string service;
  int replica = 0;
  pid_t pid = -1;
  WallTime started_at{};
  WallTime exited_at{};
  Duration uptime{};
  ExitKind kind = ExitKind::exited;
  int code = 0;    // exited
  int signal = 0;  // killed
  bool core_dumped = false;
  int error = 0;  // start_failed
  std::string failed_call;
  std::optional<std::string> stated_reason;  // the worker's own `exit` message

  // A clean exit is exit code 0; anything else is a failure for on-failure.
  bool clean() const { return kind == ExitKind::exited && code == 0; }
  // Short stable label for logs and metrics: "exited", "killed", "start_failed".
  const char* kind_name() const;
  // One line for a person: "exited with code 3", "killed by SIGKILL (core dumped)".
  std::string describe() const;
};

// Sets kind, code, signal and core_dumped from a waitid() result.
void set_exit_status(ExitRecord& record, const siginfo_t& info);

// A process that ran: its pid and how waitid() says it ended.
ExitRecord process_exit_record(pid_t pid, const siginfo_t& info);
// A spawn that failed: errno `error` from `call`.
ExitRecord start_failure_record(int error, const char* call);
// Fills in what every record carries, whoever made it: the service, the
// replica (an inetd service's slot), when the process started, and now.
void finish_exit_record(ExitRecord& record, const std::string& service, int replica,
                        WallTime started_wall, MonoTime started_mono);

// "SIGKILL" for 9; "SIG42" for a signal without a name.
std::string signal_name(int signal);

}  // namespace occasional::supervisor
