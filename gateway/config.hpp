#pragma once

#include <string>
#include <variant>
#include <vector>

#include "gateway/balancer.hpp"
#include "gateway/listener.hpp"
#include "gateway/route_table.hpp"
#include "gateway/router.hpp"
#include "supervisor/event_log.hpp"
#include "supervisor/service.hpp"

namespace occasional::gateway {

struct ListenerConfig {
  std::string name;
  ListenAddress address;
  std::vector<Route> routes;
  PeekLimits peek;
  // TCP_DEFER_ACCEPT: a connection is accepted once the client's first
  // bytes are in, not at the end of the handshake (for protocols where the
  // client speaks first: HTTP, TLS, a preface).
  bool defer_accept = false;
};

struct ServiceEntry {
  supervisor::ServiceConfig service;  // listen_fd is filled in at startup
  BalancerConfig balancer;            // handoff mode
  std::string listener;               // listen_fds mode: the listener it shares
  int max_processes = 64;             // inetd mode: processes alive at once
};

// The admin endpoint (docs/admin.md): on 127.0.0.1:9090 unless told otherwise.
struct AdminSettings {
  bool enabled = true;
  ListenAddress address{"127.0.0.1:9090", false, "127.0.0.1", 9090};
  std::string token;      // empty: POSTs pass a CSRF guard only (loopback)
  bool insecure = false;  // a non-loopback address without a token is allowed
};

// Everything `occasional run` needs, from a file or from quick-mode flags.
struct Config {
  std::vector<ListenerConfig> listeners;
  std::vector<ServiceEntry> services;
  supervisor::LogFormat log_format = supervisor::LogFormat::json;
  AdminSettings admin;
};

// Reads a token file: its first line, without the line end. Throws
// ConfigError when it cannot be read or is empty.
std::string read_token_file(const std::string& path);

// Checks what a parser cannot: every route names a known service, a
// listen_fds service names a listener, names are unique, a listener has at
// most one peek kind, no two listeners (or a listener and the admin
// endpoint) need the same port on the same address. Throws ConfigError.
void validate(const Config& config);

// A step of a JSON path: an object key or an array index.
using JsonStep = std::variant<std::string, size_t>;

struct ConfigError : std::runtime_error {
  explicit ConfigError(const std::string& message, std::vector<JsonStep> where = {})
      : std::runtime_error(message), path(std::move(where)) {}
  std::vector<JsonStep> path;  // where in the file, when known
};

}  // namespace occasional::gateway
