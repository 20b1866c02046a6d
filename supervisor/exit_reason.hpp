#pragma once

#include <signal.h>

#include <optional>
#include <string>

#include "workers/value.hpp"

namespace occasional::supervisor {

// What the coordinator knows when a process has exited, beyond the kernel's status.
struct ExitEvidence {
  std::optional<Map> stated;  // the process's own report ("exit" message), if it sent one
  // Set when the coordinator killed it because a linked process exited abnormally.
  std::optional<Address> linked_from;
  std::optional<Map> linked_reason;
  // Set when the coordinator killed it for breaking the protocol (a control
  // message or a channel frame that does not decode).
  std::optional<std::string> protocol_error;
  // Set when it never ran (an executable whose exec failed).
  std::optional<std::string> start_error;
};

// The exit reason (docs/messages.md "Exit reasons"): the kernel's status
// from waitid reconciled with what the process said. The kernel decides how
// it ended; the report only explains an ending the kernel confirms:
// - exited 0 after reporting a value: normal, with the value;
// - exited 1 after reporting an uncaught exception: error, type and what;
// - any other exit code (exit(n), _exit(n), or a report contradicted): exit_code;
// - killed by a signal: signal with its name and core flag, and the
//   reported value or error kept as detail ("value" / "type", "what");
// - SIGKILLed by the coordinator for a link: linked, with the cause;
// - SIGKILLed by the coordinator for a protocol error: protocol_error.
Map reconcile_exit(const siginfo_t& info, const ExitEvidence& evidence);

// Whether an exit with this reason kills linked processes: anything but
// normal, and but exit code 0.
bool abnormal_exit(const Map& reason);

}  // namespace occasional::supervisor
