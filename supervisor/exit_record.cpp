#include "supervisor/exit_record.hpp"

#include <string.h>

#include <cstring>

namespace occasional::supervisor {

const char* ExitRecord::kind_name() const {
  switch (kind) {
    case ExitKind::exited:
      return "exited";
    case ExitKind::killed:
      return "killed";
    case ExitKind::start_failed:
      return "start_failed";
  }
  return "?";
}

std::string ExitRecord::describe() const {
  switch (kind) {
    case ExitKind::exited:
      return "exited with code " + std::to_string(code);
    case ExitKind::killed:
      return "killed by " + signal_name(signal) + (core_dumped ? " (core dumped)" : "");
    case ExitKind::start_failed:
      return "failed to start: " + failed_call + ": " + std::strerror(error);
  }
  return "?";
}

void set_exit_status(ExitRecord& record, const siginfo_t& info) {
  switch (info.si_code) {
    case CLD_EXITED:
      record.kind = ExitKind::exited;
      record.code = info.si_status;
      break;
    case CLD_DUMPED:
      record.core_dumped = true;
      [[fallthrough]];
    default:
      record.kind = ExitKind::killed;
      record.signal = info.si_status;
  }
}

ExitRecord process_exit_record(pid_t pid, const siginfo_t& info) {
  ExitRecord record;
  record.pid = pid;
  set_exit_status(record, info);
  return record;
}

ExitRecord start_failure_record(int error, const char* call) {
  ExitRecord record;
  record.kind = ExitKind::start_failed;
  record.error = error;
  record.failed_call = call;
  return record;
}

void finish_exit_record(ExitRecord& record, const std::string& service, int replica,
                        WallTime started_wall, MonoTime started_mono) {
  record.service = service;
  record.replica = replica;
  record.started_at = started_wall;
  record.exited_at = std::chrono::system_clock::now();
  record.uptime = std::chrono::steady_clock::now() - started_mono;
}

std::string signal_name(int signal) {
  const char* abbrev = ::sigabbrev_np(signal);
  return abbrev ? std::string("SIG") + abbrev : "SIG" + std::to_string(signal);
}

}  // namespace occasional::supervisor
