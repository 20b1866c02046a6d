#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "workers/unique_fd.hpp"

namespace occasional::gateway {

// What the coordinator tells its own service manager (systemd Type=notify,
// sd_notify(3)): one datagram of "KEY=VALUE\n" lines to the AF_UNIX socket
// named by NOTIFY_SOCKET, a path ("/run/...") or an abstract name ("@...").
// Not the NOTIFY_SOCKET occasional offers its own listen_fds workers
// (supervisor/notify_socket.hpp): this one is the coordinator's parent's.
//
// A send never blocks the loop and never throws: a full receive queue, a
// missing peer or any other failure is reported to `on_error` with a reason
// (`again`, `no_listener`, `other`) for occasional_systemd_notify_errors_total.
class SystemdNotifier {
 public:
  using OnError = std::function<void(const char* reason, int err)>;

  // Inactive: every send does nothing (no NOTIFY_SOCKET was given).
  SystemdNotifier() = default;
  // Throws std::invalid_argument, for a person, when `address` is neither
  // "/path" nor "@abstract" or is too long for sockaddr_un.
  explicit SystemdNotifier(const std::string& address);

  // Reads NOTIFY_SOCKET and removes it from the environment (so that no
  // worker inherits it: listen_fds workers get occasional's own socket).
  // Throws std::invalid_argument as above; inactive when it is unset or empty.
  static SystemdNotifier from_environment();

  bool active() const { return fd_.valid(); }
  const std::string& address() const { return address_; }
  void on_error(OnError handler) { on_error_ = std::move(handler); }

  // Every service with a listener has a ready worker.
  bool ready() { return send("READY=1\n"); }
  // One line for `systemctl status`; line breaks are replaced by spaces.
  bool status(std::string_view text);
  bool stopping() { return send("STOPPING=1\n"); }
  bool watchdog() { return send("WATCHDOG=1\n"); }
  // For `occasional ctl upgrade` (issue 23 part 1, not built yet): the old
  // coordinator says RELOADING=1 (with MONOTONIC_USEC, which Type=notify-reload
  // requires) while it starts its successor, then MAINPID=<the successor> so
  // that systemd watches the new process; the successor says READY=1.
  bool reloading();
  bool main_pid(pid_t pid) { return send("MAINPID=" + std::to_string(pid) + "\n"); }

  // Sends `message` as one datagram; false (and on_error) when it failed.
  bool send(std::string_view message);

 private:
  std::string address_;
  UniqueFd fd_;
  OnError on_error_;
};

// The watchdog interval systemd asks for (WATCHDOG_USEC), when it is meant
// for this process: WATCHDOG_PID unset or our pid (sd_watchdog_enabled(3)).
// Removes both variables from the environment. Throws std::invalid_argument
// when WATCHDOG_USEC is not a positive number.
std::optional<std::chrono::microseconds> watchdog_from_environment();

}  // namespace occasional::gateway
