#include "app/systemd_notifier.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace occasional::gateway {

namespace {

// The peer's address; `len` counts no trailing NUL for an abstract name
// (its bytes are the whole name, NULs included).
socklen_t unix_address(const std::string& text, sockaddr_un& out) {
  out = {};
  out.sun_family = AF_UNIX;
  if (text.size() < 2 || (text[0] != '/' && text[0] != '@'))
    throw std::invalid_argument("NOTIFY_SOCKET='" + text +
                                "' is neither a socket path (/run/...) nor an abstract name "
                                "(@name): occasional cannot report to its service manager; unset "
                                "NOTIFY_SOCKET or fix the unit that sets it");
  if (text.size() >= sizeof out.sun_path)
    throw std::invalid_argument("NOTIFY_SOCKET='" + text + "' is longer than an AF_UNIX address (" +
                                std::to_string(sizeof out.sun_path - 1) +
                                " bytes): use a shorter path");
  std::memcpy(out.sun_path, text.data(), text.size());
  if (text[0] == '@') out.sun_path[0] = '\0';
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + text.size() +
                                (text[0] == '@' ? 0 : 1));
}

const char* error_reason(int err) {
  switch (err) {
    case EAGAIN:
#if EAGAIN != EWOULDBLOCK
    case EWOULDBLOCK:
#endif
      return "again";  // the manager's receive queue is full
    case ENOENT:
    case ECONNREFUSED:
      return "no_listener";  // nobody has that address (any more)
    default:
      return "other";
  }
}

}  // namespace

SystemdNotifier::SystemdNotifier(const std::string& address) : address_(address) {
  sockaddr_un checked{};
  unix_address(address_, checked);
  // Non-blocking: a manager that does not read must not stall the loop. A
  // socket that cannot be made now leaves the notifier inactive; the
  // caller logs that (active() is false with a non-empty address()).
  fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
}

SystemdNotifier SystemdNotifier::from_environment() {
  const char* value = std::getenv("NOTIFY_SOCKET");
  const std::string address = value ? value : "";
  ::unsetenv("NOTIFY_SOCKET");
  if (address.empty()) return SystemdNotifier();
  return SystemdNotifier(address);
}

bool SystemdNotifier::status(std::string_view text) {
  std::string message = "STATUS=";
  for (char c : text) message += (c == '\n' || c == '\r') ? ' ' : c;
  message += '\n';
  return send(message);
}

bool SystemdNotifier::reloading() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const long long usec = static_cast<long long>(now.tv_sec) * 1'000'000 + now.tv_nsec / 1000;
  return send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec) + "\n");
}

bool SystemdNotifier::send(std::string_view message) {
  if (address_.empty()) return true;
  if (!fd_) {
    if (on_error_) on_error_("other", EBADF);
    return false;
  }
  sockaddr_un addr{};
  const socklen_t len = unix_address(address_, addr);
  for (;;) {
    const ssize_t n =
        ::sendto(fd_.get(), message.data(), message.size(), MSG_NOSIGNAL | MSG_DONTWAIT,
                 reinterpret_cast<sockaddr*>(&addr), len);
    if (n >= 0) return true;
    if (errno == EINTR) continue;
    const int err = errno;
    if (on_error_) on_error_(error_reason(err), err);
    return false;
  }
}

std::optional<std::chrono::microseconds> watchdog_from_environment() {
  const char* usec_text = std::getenv("WATCHDOG_USEC");
  const char* pid_text = std::getenv("WATCHDOG_PID");
  const std::string usec = usec_text ? usec_text : "";
  const std::string pid = pid_text ? pid_text : "";
  ::unsetenv("WATCHDOG_USEC");
  ::unsetenv("WATCHDOG_PID");
  if (usec.empty()) return std::nullopt;
  if (!pid.empty() && pid != std::to_string(::getpid())) return std::nullopt;
  unsigned long long value = 0;
  auto [end, ec] = std::from_chars(usec.data(), usec.data() + usec.size(), value);
  if (ec != std::errc{} || end != usec.data() + usec.size() || value == 0)
    throw std::invalid_argument("WATCHDOG_USEC='" + usec +
                                "' is not a positive number of microseconds: fix WatchdogSec= in "
                                "the unit, or unset WATCHDOG_USEC");
  return std::chrono::microseconds(value);
}

}  // namespace occasional::gateway
