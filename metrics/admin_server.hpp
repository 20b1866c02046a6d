#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "metrics/event_stream.hpp"
#include "metrics/metrics.hpp"
#include "metrics/status.hpp"

namespace occasional::metrics {

struct ActionResult {
  int status = 200;     // HTTP status: 200, 404 (no such service), 409 (not now), 400
  std::string message;  // one sentence for a person
};

// What the admin API reads and operates on; the composition root implements
// it over the supervisor and gateway, tests with a fake.
class AdminBackend {
 public:
  virtual ~AdminBackend() = default;
  virtual Status status() = 0;
  // `action`: restart (rolling), scale (to `replicas`), stop, start.
  virtual ActionResult act(const std::string& service, const std::string& action, int replicas) = 0;
  // POST /v1/upgrade (docs/admin.md): replace the coordinator by the binary
  // at `binary` (empty: the one it runs, as it is on disk now). `done` is
  // called once, now or later, with the answer and with what to run once
  // the answer is written (the execve; empty when nothing is).
  using UpgradeDone = std::function<void(ActionResult, std::function<void()> after_reply)>;
  virtual void upgrade(const std::string& binary, UpgradeDone done) {
    (void)binary;
    done({404, "this coordinator does not upgrade"}, {});
  }
};

struct AdminConfig {
  boost::asio::ip::tcp::endpoint endpoint{boost::asio::ip::make_address("127.0.0.1"), 9090};
  std::string token;  // empty: POSTs pass the CSRF guard only (docs/admin.md)
  // Allows a non-loopback endpoint without a token (--admin-insecure).
  bool insecure = false;
  size_t header_limit = 8 * 1024;
  size_t body_limit = 64 * 1024;
  std::chrono::milliseconds timeout{10000};  // to read one request, and to write its answer
  size_t max_connections = 64;
  // A listening socket to use instead of binding `endpoint` (carried over a
  // coordinator upgrade); -1: bind.
  int adopted_fd = -1;
  // Beyond max_connections, connections that may only ask /healthz or
  // /readyz, each for one request read within probe_timeout; when these are
  // taken too, the one waiting longest for its request is closed to make room.
  size_t probe_connections = 16;
  std::chrono::milliseconds probe_timeout{2000};
  // GET /v1/events streams, apart from max_connections and the probes: at
  // most this many at once (more get 503), each with at most
  // event_buffer bytes written and not yet taken by the client (beyond it,
  // or when one write takes longer than event_stall, it is dropped).
  size_t max_event_streams = 16;
  size_t event_buffer = 256 * 1024;
  std::chrono::milliseconds event_stall{30000};
  // SSE comment lines that keep idle streams (and proxies) alive.
  std::chrono::milliseconds event_heartbeat{15000};
};

// The admin HTTP endpoint (Boost.Beast, coroutines): the status page (/),
// /healthz, /readyz, /metrics, /v1/status, /v1/events (the event log, from
// `events`; 404 without one) and the POST /v1/services/NAME/ACTION
// operations (docs/admin.md). Binds at construction (startup: throws with a
// message). Every response is counted by code in
// occasional_admin_requests_total.
class AdminServer {
 public:
  AdminServer(boost::asio::io_context& io, AdminConfig config, AdminBackend& backend,
              Metrics& metrics, EventStream* events = nullptr);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  uint16_t port() const;
  // The listening socket (a coordinator upgrade carries it).
  int native_handle();
  void start();
  // Stops accepting and ends the event streams; open admin connections
  // finish their current request.
  void stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// Why `config` must not start: a non-loopback endpoint without a token or
// `insecure`. AdminServer throws it; `occasional check` reports it.
std::optional<std::string> exposure_problem(const AdminConfig& config);

// The token of an `Authorization: Bearer TOKEN` header value; nullopt for
// another scheme or no token. The scheme is case-insensitive (RFC 9110 §11.1).
std::optional<std::string_view> bearer_credentials(std::string_view authorization);

// Constant-time comparison of a presented token with the configured one.
bool token_matches(const std::string& presented, const std::string& expected);

}  // namespace occasional::metrics
