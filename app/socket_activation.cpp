#include "app/socket_activation.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>

#include "gateway/listener.hpp"

namespace occasional::gateway {

namespace {

// sd_listen_fds(3): the first passed fd is always 3.
constexpr int kFirstFd = 3;
// More than any unit passes; keeps a garbage LISTEN_FDS from touching
// thousands of fds.
constexpr int kMaxFds = 256;

std::string take_variable(const char* name) {
  const char* value = std::getenv(name);
  std::string out = value ? value : "";
  ::unsetenv(name);
  return out;
}

bool parse_int(const std::string& text, long& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return !text.empty() && ec == std::errc{} && end == text.data() + text.size();
}

std::vector<std::string> split_names(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t colon = text.find(':', start);
    out.push_back(text.substr(start, colon - start));
    if (colon == std::string::npos) return out;
    start = colon + 1;
  }
}

std::string listener_names(const std::vector<ListenerConfig>& listeners) {
  std::string out;
  for (const ListenerConfig& l : listeners) out += (out.empty() ? "" : ", ") + l.name;
  return out;
}

// What is wrong with `fd` as the socket of `listener`; empty when nothing.
std::string check_socket(int fd, const std::string& what, const ListenerConfig& listener) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return what + " cannot be examined: fstat: " + std::strerror(errno);
  if (!S_ISSOCK(st.st_mode)) return what + " is not a socket";
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM)
    return what + " is not a stream (TCP) socket: use ListenStream=, not ListenDatagram=";
  int accepting = 0;
  len = sizeof accepting;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 || !accepting)
    return what + " is not listening (Accept=yes passes connections, not a listening socket: " +
           "use Accept=no)";
  sockaddr_storage bound{};
  len = sizeof bound;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) != 0)
    return what + " has no address: getsockname: " + std::strerror(errno);
  const int want_family = listener.address.v6 ? AF_INET6 : AF_INET;
  const std::string expected = "the listener's address " + listener.address.text;
  if (bound.ss_family != AF_INET && bound.ss_family != AF_INET6)
    return what + " is not an IPv4 or IPv6 socket (family " + std::to_string(bound.ss_family) +
           "), but " + expected + " is";
  const std::string actual = sockaddr_text(bound);
  if (bound.ss_family != want_family)
    return what + " is bound to " + actual + ", not to " + expected +
           (want_family == AF_INET ? " (systemd binds ListenStream=8080 to [::]:8080: write "
                                     "ListenStream=0.0.0.0:8080, "
                                     "or [::]:8080 in the config)"
                                   : "");
  sockaddr_storage want{};
  to_sockaddr(listener.address, want);
  bool same = false;
  if (want_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&bound);
    const auto* b = reinterpret_cast<const sockaddr_in*>(&want);
    same = a->sin_addr.s_addr == b->sin_addr.s_addr &&
           (b->sin_port == 0 || a->sin_port == b->sin_port);
  } else {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&bound);
    const auto* b = reinterpret_cast<const sockaddr_in6*>(&want);
    same = std::memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) == 0 &&
           (b->sin6_port == 0 || a->sin6_port == b->sin6_port);
  }
  if (!same)
    return what + " is bound to " + actual + ", not to " + expected +
           ": make ListenStream= in the .socket unit and the listener's address the same";
  return {};
}

}  // namespace

std::map<std::string, UniqueFd> take_activated_listeners(
    const std::vector<ListenerConfig>& listeners, bool any_name) {
  const std::string fds_text = take_variable("LISTEN_FDS");
  const std::string pid_text = take_variable("LISTEN_PID");
  const std::string names_text = take_variable("LISTEN_FDNAMES");
  ::unsetenv("LISTEN_PIDFDID");
  std::map<std::string, UniqueFd> out;
  if (fds_text.empty()) return out;

  const std::string fix =
      ": start occasional from a .socket unit (or systemd-socket-activate), "
      "or unset LISTEN_FDS to let it bind its listeners itself";
  long count = 0;
  if (!parse_int(fds_text, count) || count < 1 || count > kMaxFds)
    throw SocketActivationError("socket activation: LISTEN_FDS='" + fds_text +
                                "' is not a number of sockets from 1 to " +
                                std::to_string(kMaxFds) + fix);
  // The fds are ours from here on: none may reach a worker, whatever else is wrong.
  std::vector<UniqueFd> fds;
  for (int fd = kFirstFd; fd < kFirstFd + count; ++fd) {
    const int flags = ::fcntl(fd, F_GETFD);
    if (flags < 0)
      throw SocketActivationError("socket activation: LISTEN_FDS=" + fds_text + " but fd " +
                                  std::to_string(fd) + " is not open" + fix);
    ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    fds.emplace_back(fd);
  }
  long pid = 0;
  if (pid_text.empty())
    throw SocketActivationError("socket activation: LISTEN_FDS is set but LISTEN_PID is not" + fix);
  if (!parse_int(pid_text, pid))
    throw SocketActivationError("socket activation: LISTEN_PID='" + pid_text +
                                "' is not a process id" + fix);
  if (pid != ::getpid())
    throw SocketActivationError(
        "socket activation: LISTEN_PID=" + pid_text + " but this process is " +
        std::to_string(::getpid()) +
        ": the sockets were meant for another process (a wrapper script that forks "
        "instead of exec'ing occasional?): start occasional directly, or with exec");
  std::vector<std::string> names;
  if (!names_text.empty()) {
    names = split_names(names_text);
    if (static_cast<long>(names.size()) != count)
      throw SocketActivationError("socket activation: LISTEN_FDNAMES='" + names_text + "' has " +
                                  std::to_string(names.size()) + " names for LISTEN_FDS=" +
                                  fds_text + " sockets: give each socket one name");
  }
  if (listeners.empty())
    throw SocketActivationError("socket activation: LISTEN_FDS=" + fds_text +
                                " but there is no listener to take the sockets: give occasional "
                                "--listen ADDR or listeners in its configuration, or start it "
                                "without the .socket unit");
  if (any_name || (names.empty() && listeners.size() == 1)) {
    if (listeners.size() != 1 || count != 1)
      throw SocketActivationError(
          "socket activation: " + std::to_string(count) + " sockets were passed (LISTEN_FDS=" +
          fds_text + ") for " + std::to_string(listeners.size()) +
          " listeners: with one listener, pass one socket (one ListenStream= in the .socket "
          "unit), or describe the listeners with --config and name each socket after its "
          "listener (FileDescriptorName=)");
    names = {listeners.front().name};
  }
  if (names.empty())
    throw SocketActivationError(
        "socket activation: " + std::to_string(count) +
        " sockets were passed without names (LISTEN_FDNAMES is unset) for the listeners " +
        listener_names(listeners) +
        ": name each socket after its listener with FileDescriptorName= in the .socket unit");
  for (long i = 0; i < count; ++i) {
    const std::string& name = names[static_cast<size_t>(i)];
    const std::string what = "socket activation: fd " + std::to_string(kFirstFd + i) + " ('" +
                             name + "' in LISTEN_FDNAMES)";
    const ListenerConfig* listener = nullptr;
    for (const ListenerConfig& l : listeners)
      if (l.name == name) listener = &l;
    if (!listener)
      throw SocketActivationError(
          what + " matches no listener (the listeners are " + listener_names(listeners) +
          "): set FileDescriptorName= in the .socket unit to a listener's name");
    if (out.contains(name))
      throw SocketActivationError(what + ": listener '" + name +
                                  "' already has a socket: pass one socket per listener");
    const std::string problem = check_socket(fds[static_cast<size_t>(i)].get(), what, *listener);
    if (!problem.empty()) throw SocketActivationError(problem);
    out.emplace(name, std::move(fds[static_cast<size_t>(i)]));
  }
  for (const ListenerConfig& l : listeners)
    if (!out.contains(l.name))
      throw SocketActivationError("socket activation: listener '" + l.name + "' (" +
                                  l.address.text + ") got no socket (LISTEN_FDNAMES='" +
                                  names_text + "'): add a ListenStream= with FileDescriptorName=" +
                                  l.name + " to the .socket unit, or remove the listener");
  return out;
}

}  // namespace occasional::gateway
