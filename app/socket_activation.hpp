#pragma once

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "gateway/config.hpp"
#include "workers/unique_fd.hpp"

namespace occasional::gateway {

// What systemd (or systemd-socket-activate, or anything that speaks
// sd_listen_fds(3)) passed, found wrong: says what, where and what to do.
struct SocketActivationError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Takes the listening sockets of socket activation: fds 3 ... 3+LISTEN_FDS-1,
// meant for this process when LISTEN_PID is our pid, named by LISTEN_FDNAMES
// (colon-separated; FileDescriptorName= in the .socket unit). Each is matched
// to the listener of that name and checked to be a listening TCP socket of
// the listener's family and address (a port of 0 in the config takes any).
// With `any_name` (quick mode, `run --listen`: one listener) the one socket
// is that listener's whatever its name; otherwise a single listener and a
// single socket without LISTEN_FDNAMES also go together.
//
// Returns an empty map when LISTEN_FDS is unset (not activated): the
// listeners bind their own sockets. Otherwise every listener gets one socket
// or this throws SocketActivationError. Either way the three variables are
// removed from the environment and every passed fd is made close-on-exec,
// so that no worker inherits them.
std::map<std::string, UniqueFd> take_activated_listeners(
    const std::vector<ListenerConfig>& listeners, bool any_name);

}  // namespace occasional::gateway
