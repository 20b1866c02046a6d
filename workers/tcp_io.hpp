#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "workers/tcp.hpp"
#include "workers/unique_fd.hpp"

// The system calls behind workers/tcp.hpp that need no process: making
// non-blocking, close-on-exec TCP fds, and naming errors the Erlang way.
namespace occasional::tcp::io {

// A socket's reference has 4 words, the first this tag: the coordinator's
// references have 3, so neither is ever taken for the other.
inline constexpr uint32_t kSocketTag = 0x736f636b;  // "sock"

// Erlang's posix atom for an errno: "econnreset", "etimedout", ...
std::string errno_reason(int error_number);

// Connected, or throws tcp::Error (every address getaddrinfo gives is tried).
UniqueFd open_connection(const std::string& host, uint16_t port, const Options& options,
                         std::chrono::milliseconds timeout);
// Bound and listening, or throws tcp::Error.
UniqueFd open_listener(uint16_t port, const ListenOptions& options);
// A connection from the queue; invalid once `timeout_ms` has passed (-1
// waits for ever). Throws tcp::Error when the listener fails.
UniqueFd accept_connection(int listener, int timeout_ms, const Options& accepted);
uint16_t local_port(int fd);

}  // namespace occasional::tcp::io
