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

std::string signal_name(int signal) {
  const char* abbrev = ::sigabbrev_np(signal);
  return abbrev ? std::string("SIG") + abbrev : "SIG" + std::to_string(signal);
}

}  // namespace occasional::supervisor
