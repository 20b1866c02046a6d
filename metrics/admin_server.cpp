#include "metrics/admin_server.hpp"

#include "metrics/status_page.hpp"
#include "workers/json.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <list>

namespace occasional::metrics {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

namespace {

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::string_view kCsrfHeader = "X-Occasional-Admin";

std::string json_string(std::string_view s) {
  std::string out;
  workers::append_json_string(out, s);
  return out;
}

std::string json_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6f", v);
  return buf;
}

std::string status_json(const Status& st) {
  std::string o = "{\"services\":[";
  bool first_service = true;
  for (const ServiceStatus& s : st.services) {
    if (!first_service) o += ',';
    first_service = false;
    o += "{\"name\":" + json_string(s.name) + ",\"mode\":" + json_string(s.mode) +
         ",\"replicas\":" + std::to_string(s.replicas) +
         ",\"failed\":" + (s.failed ? "true" : "false") +
         (s.failed && s.retry_in_seconds >= 0
              ? ",\"retry_in_seconds\":" + json_number(s.retry_in_seconds)
              : std::string()) +
         ",\"stopped\":" + (s.stopped ? "true" : "false") +
         ",\"ready_workers\":" + std::to_string(s.ready_workers) +
         ",\"rolling_restart\":" + (s.rolling_restart ? "true" : "false") + ",\"workers\":[";
    for (size_t i = 0; i < s.workers.size(); ++i) {
      const WorkerStatus& w = s.workers[i];
      if (i) o += ',';
      o += "{\"replica\":" + std::to_string(w.replica) + ",\"pid\":" + std::to_string(w.pid) +
           ",\"state\":" + json_string(w.state) + ",\"ready\":" + (w.ready ? "true" : "false") +
           ",\"uptime_seconds\":" + json_number(w.uptime_seconds) +
           ",\"open_connections\":" + std::to_string(w.open_connections) +
           ",\"status_text\":" + json_string(w.status_text) +
           ",\"restart_in_seconds\":" + json_number(w.restart_in_seconds) + "}";
    }
    o += "],\"recent_exits\":[";
    for (size_t i = 0; i < s.recent_exits.size(); ++i) {
      const ExitSummary& e = s.recent_exits[i];
      if (i) o += ',';
      o += "{\"replica\":" + std::to_string(e.replica) + ",\"pid\":" + std::to_string(e.pid) +
           ",\"started_at\":" + json_string(e.started_at) +
           ",\"exited_at\":" + json_string(e.exited_at) +
           ",\"uptime_seconds\":" + json_number(e.uptime_seconds) +
           ",\"outcome\":" + json_string(e.outcome) + ",\"code\":" + std::to_string(e.code) +
           ",\"signal\":" + json_string(e.signal) +
           ",\"core_dumped\":" + (e.core_dumped ? "true" : "false") +
           ",\"description\":" + json_string(e.description) +
           ",\"stated_reason\":" + json_string(e.stated_reason) + "}";
    }
    o += "],\"restarts_per_minute\":[";
    for (size_t i = 0; i < s.restarts_per_minute.size(); ++i)
      o += (i ? "," : "") + std::to_string(s.restarts_per_minute[i]);
    o += "]}";
  }
  o += "],\"listeners\":[";
  for (size_t i = 0; i < st.listeners.size(); ++i) {
    const ListenerStatus& l = st.listeners[i];
    o += std::string(i ? "," : "") + "{\"name\":" + json_string(l.name) +
         ",\"address\":" + json_string(l.address) + ",\"accepted\":" + std::to_string(l.accepted) +
         ",\"handed_off\":" + std::to_string(l.handed_off) +
         ",\"rejected\":" + std::to_string(l.rejected) + "}";
  }
  o += "]}\n";
  return o;
}

std::string pad(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s + "  ";
}

std::string fixed1(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fs", v);
  return buf;
}

// The status as a table for a person (`occasional ctl status`).
std::string status_text(const Status& st) {
  std::string o = pad("SERVICE", 20) + pad("MODE", 10) + pad("STATE", 9) + pad("READY", 7) +
                  pad("REPLICAS", 8) + "LAST EXIT\n";
  for (const ServiceStatus& s : st.services) {
    const char* state = s.failed            ? "failed"
                        : s.stopped         ? "stopped"
                        : s.rolling_restart ? "rolling"
                                            : "running";
    const std::string last = s.recent_exits.empty() ? "-"
                                                    : s.recent_exits.back().description + " at " +
                                                          s.recent_exits.back().exited_at;
    o += pad(s.name, 20) + pad(s.mode, 10) + pad(state, 9) +
         pad(std::to_string(s.ready_workers), 7) + pad(std::to_string(s.replicas), 8) + last + "\n";
    if (s.failed && s.retry_in_seconds >= 0)
      o += "  started again in " + fixed1(s.retry_in_seconds) + "\n";
    for (const WorkerStatus& w : s.workers)
      // A replica in backoff has no process: what matters is when it gets one.
      o += w.state == "backoff"
               ? "  replica " + pad(std::to_string(w.replica), 4) + std::string(14, ' ') +
                     pad(w.state, 9) + "restarting in " + fixed1(w.restart_in_seconds) + "\n"
               : "  replica " + pad(std::to_string(w.replica), 4) + "pid " +
                     pad(std::to_string(w.pid), 8) + pad(w.state, 9) +
                     pad(w.ready ? "ready" : "-", 6) + "up " + pad(fixed1(w.uptime_seconds), 9) +
                     "connections " + std::to_string(w.open_connections) +
                     (w.status_text.empty() ? "" : "  \"" + w.status_text + "\"") + "\n";
  }
  return o;
}

// Why the coordinator is not ready; empty when it is.
std::vector<std::string> unready_reasons(const Status& st) {
  std::vector<std::string> reasons;
  for (const ServiceStatus& s : st.services) {
    if (s.failed)
      reasons.push_back("service " + s.name + " is failed (restart intensity exceeded)" +
                        (s.retry_in_seconds >= 0
                             ? "; started again in " + fixed1(s.retry_in_seconds)
                             : std::string("; stays failed until started")));
    else if (s.stopped)
      reasons.push_back("service " + s.name + " is stopped");
    else if (s.ready_workers == 0)
      reasons.push_back("service " + s.name + " has no ready worker");
  }
  return reasons;
}

Response make_response(const Request& req, http::status code, std::string body,
                       const char* type = "application/json") {
  Response res{code, req.version()};
  res.set(http::field::server, "occasional");
  res.set(http::field::content_type, type);
  res.set(http::field::cache_control, "no-store");
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  // HEAD: the GET's Content-Length, no body (RFC 9110 §9.3.2).
  if (req.method() == http::verb::head) res.body().clear();
  return res;
}

std::string error_json(const std::string& message) {
  return "{\"error\":" + json_string(message) + "}\n";
}

// The value of `key` in a query string ("a=1&b=2"); nullopt when absent.
std::optional<std::string_view> query_value(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    if (pair.starts_with(key) && (pair.size() == key.size() || pair[key.size()] == '='))
      return pair.size() == key.size() ? "" : pair.substr(key.size() + 1);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

// Accept: text/event-stream asks for SSE framing (what EventSource sends).
bool wants_sse(const Request& req) {
  const auto accept = req.find(http::field::accept);
  return accept != req.end() && accept->value().find("text/event-stream") != std::string_view::npos;
}

// One event as the client gets it: a JSON line, or an SSE `data:` event.
void append_framed(std::string& out, std::string_view line, bool sse) {
  if (sse) out += "data: ";
  out += line;
  out += sse ? "\n\n" : "\n";
}

constexpr const char* kJsonLines = "application/x-ndjson";
constexpr const char* kSse = "text/event-stream";

}  // namespace

std::optional<std::string> exposure_problem(const AdminConfig& config) {
  const tcp::endpoint& ep = config.endpoint;
  if (ep.address().is_loopback() || !config.token.empty() || config.insecure) return std::nullopt;
  return "admin endpoint " + ep.address().to_string() + ":" + std::to_string(ep.port()) +
         " is not on loopback and has no token: anyone who reaches it could stop, scale or "
         "restart services. Give a token (--token-file FILE, or admin.token_file in the "
         "configuration), keep the endpoint on loopback (--admin 127.0.0.1:9090), or, on a "
         "network only trusted clients reach, say so with --admin-insecure (admin.insecure: true)";
}

std::optional<std::string_view> bearer_credentials(std::string_view authorization) {
  constexpr std::string_view kScheme = "bearer";
  if (authorization.size() <= kScheme.size() || authorization[kScheme.size()] != ' ')
    return std::nullopt;
  for (size_t i = 0; i < kScheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != kScheme[i])
      return std::nullopt;
  const std::string_view rest = authorization.substr(kScheme.size());
  const auto start = rest.find_first_not_of(' ');
  if (start == std::string_view::npos) return std::nullopt;
  return rest.substr(start);
}

bool token_matches(const std::string& presented, const std::string& expected) {
  // Time depends only on the expected token's length, not on where they differ.
  unsigned char diff = presented.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    const unsigned char p = i < presented.size() ? static_cast<unsigned char>(presented[i])
                                                 : static_cast<unsigned char>(0);
    diff |= static_cast<unsigned char>(p ^ static_cast<unsigned char>(expected[i]));
  }
  return diff == 0;
}

struct AdminServer::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io, AdminConfig c, AdminBackend& b, Metrics& m, EventStream* e)
      : io(io), config(std::move(c)), backend(b), metrics(m), events(e), acceptor(io) {}

  asio::io_context& io;
  AdminConfig config;
  AdminBackend& backend;
  Metrics& metrics;
  EventStream* events;
  tcp::acceptor acceptor;
  // A GET /v1/events stream: lines wait in `pending` until the socket takes
  // them; `pending` plus the write in flight stays within event_buffer.
  struct EventClient {
    EventClient(tcp::socket s, bool sse)
        : socket(std::move(s)),
          wake(socket.get_executor()),
          stall(socket.get_executor()),
          sse(sse) {}
    tcp::socket socket;
    asio::steady_timer wake;   // waits for lines; cancelled when one comes
    asio::steady_timer stall;  // the deadline of the write in flight
    bool sse;
    bool done = false;  // the client left, was dropped, or the server stops
    std::string pending;
    size_t in_flight = 0;
    size_t limit = 0;  // on pending + in_flight
    uint64_t writes = 0;
    EventStream::Handle handle{};
    bool subscribed = false;
    char sink[512];
  };
  std::list<std::shared_ptr<EventClient>> event_clients;
  size_t active = 0;  // connections within max_connections
  // A connection beyond max_connections: probes only.
  struct ProbeSlot {
    beast::tcp_stream* stream;
    bool reading = true;  // no request yet: may be closed to make room
  };
  std::list<std::shared_ptr<ProbeSlot>> probe_slots;  // oldest first
  bool stopped = false;

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> session(tcp::socket socket);
  asio::awaitable<void> probe_session(tcp::socket socket);
  bool make_probe_room();
  Response handle(const Request& req);
  // GET /v1/events without ?follow=0.
  bool wants_stream(const Request& req) const;
  // GET /v1/events (without ?follow=0): refused with an answer, or nullopt
  // when the connection becomes a stream.
  std::optional<Response> refuse_stream(const Request& req);
  std::optional<Response> refuse_events(const Request& req);
  asio::awaitable<void> event_session(std::shared_ptr<EventClient> c, std::string head);
  void read_until_closed(std::shared_ptr<EventClient> c);
  void offer(EventClient& c, std::string_view line);
  void end_stream(EventClient& c);
  bool require_token(const Request& req, Response& refusal);
  Response post(const Request& req, std::string_view path, std::string_view query);
  // POST /v1/upgrade: the answer, once the backend has one; `after` is what
  // to run once it is written.
  asio::awaitable<Response> upgrade(const Request& req, std::function<void()>& after);
  std::optional<Response> refuse_post(const Request& req);
  Response respond(const Request& req, http::status code, std::string body,
                   const char* type = "application/json") {
    metrics.admin_request(static_cast<int>(code));
    return make_response(req, code, std::move(body), type);
  }
};

asio::awaitable<void> AdminServer::Impl::accept_loop() {
  auto self = shared_from_this();
  asio::steady_timer pause(io);
  while (!stopped) {
    auto [ec, socket] = co_await acceptor.async_accept(kUseTuple);
    if (stopped) break;
    if (ec) {
      // Out of fds or memory: wait rather than spin; the gateway counts the same.
      metrics.admin_request(0);
      pause.expires_after(std::chrono::milliseconds(100));
      co_await pause.async_wait(kUseTuple);
      continue;
    }
    if (active < config.max_connections) {
      asio::co_spawn(io, session(std::move(socket)), asio::detached);
    } else if (make_probe_room()) {
      asio::co_spawn(io, probe_session(std::move(socket)), asio::detached);
    } else {
      metrics.admin_refused("connection_cap");  // closes it
    }
  }
}

// A kubelet's probe sends its request as soon as it connects; a connection
// that has sent nothing for longer than a newer one is the likelier idler.
bool AdminServer::Impl::make_probe_room() {
  if (probe_slots.size() < config.probe_connections) return true;
  for (auto it = probe_slots.begin(); it != probe_slots.end(); ++it) {
    if (!(*it)->reading) continue;
    beast::error_code ignored;
    (*it)->stream->socket().close(ignored);  // its read ends with operation_aborted
    probe_slots.erase(it);
    metrics.admin_refused("connection_cap");
    return true;
  }
  return false;
}

asio::awaitable<void> AdminServer::Impl::probe_session(tcp::socket socket) {
  auto self = shared_from_this();
  beast::tcp_stream stream(std::move(socket));
  auto slot = std::make_shared<ProbeSlot>(ProbeSlot{&stream});
  probe_slots.push_back(slot);
  beast::flat_buffer buffer;
  http::request_parser<http::string_body> parser;
  parser.header_limit(static_cast<uint32_t>(config.header_limit));
  parser.body_limit(0);
  stream.expires_after(config.probe_timeout);
  auto [ec, n] = co_await http::async_read(stream, buffer, parser, kUseTuple);
  slot->reading = false;
  if (!ec) {
    const Request& req = parser.get();
    const std::string_view path = req.target().substr(0, req.target().find('?'));
    Response res;
    if (path == "/healthz" || path == "/readyz") {
      res = handle(req);
    } else {
      metrics.admin_refused("probes_only");
      res = respond(req, http::status::service_unavailable,
                    error_json("the admin endpoint has " + std::to_string(config.max_connections) +
                               " connections open: only /healthz and /readyz are answered "
                               "until some close"));
    }
    res.keep_alive(false);
    co_await http::async_write(stream, res, kUseTuple);
  } else if (ec == beast::error::timeout) {
    metrics.admin_refused("timeout");
  }
  probe_slots.remove(slot);
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> AdminServer::Impl::session(tcp::socket socket) {
  auto self = shared_from_this();
  ++active;
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  int served = 0;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<uint32_t>(config.header_limit));
    parser.body_limit(config.body_limit);
    stream.expires_after(config.timeout);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, kUseTuple);
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::connection_reset)
      break;
    if (ec == beast::error::timeout) {
      // Between requests on a kept-alive connection the timeout is a client
      // (Prometheus, scraping less often than the timeout) that keeps the
      // connection for later: close it quietly, nothing was refused.
      if (served > 0 && !parser.got_some() && buffer.size() == 0) break;
      metrics.admin_request(408);
      metrics.admin_refused("timeout");
      break;
    }
    if (ec) {
      // Answer what was wrong, then close: the rest of the stream cannot be trusted.
      Request bare;
      bare.version(11);
      bare.keep_alive(false);
      http::status code = http::status::bad_request;
      std::string why = "malformed request: " + ec.message();
      const char* reason = "malformed";
      if (ec == http::error::body_limit) {
        code = http::status::payload_too_large;
        why = "request body over " + std::to_string(config.body_limit) + " bytes";
        reason = "body_too_large";
      } else if (ec == http::error::header_limit) {
        code = http::status::request_header_fields_too_large;
        why = "request header over " + std::to_string(config.header_limit) + " bytes";
        reason = "header_too_large";
      }
      metrics.admin_refused(reason);
      Response res = respond(bare, code, error_json(why));
      res.keep_alive(false);
      stream.expires_after(std::chrono::seconds(2));
      co_await http::async_write(stream, res, kUseTuple);
      // Read what the client is still sending before closing, so that the
      // close is a FIN and not an RST that could destroy the answer in flight.
      beast::error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
      char sink[16384];
      for (size_t discarded = 0; discarded < 4 * 1024 * 1024;) {
        auto [rec, got] = co_await stream.async_read_some(asio::buffer(sink), kUseTuple);
        if (rec) break;
        discarded += got;
      }
      break;
    }
    const Request& req = parser.get();
    if (wants_stream(req)) {
      std::optional<Response> refusal = refuse_stream(req);
      if (!refusal) {
        // The connection leaves max_connections for the streams' own cap:
        // a page left open never takes a slot /healthz may need.
        const std::string head = std::string(req.version() == 10 ? "HTTP/1.0" : "HTTP/1.1") +
                                 " 200 OK\r\nServer: occasional\r\nContent-Type: " +
                                 (wants_sse(req) ? kSse : kJsonLines) +
                                 "\r\nCache-Control: no-store\r\nX-Accel-Buffering: "
                                 "no\r\nConnection: close\r\n\r\n";
        auto client = std::make_shared<EventClient>(stream.release_socket(), wants_sse(req));
        // Counted now, not when the coroutine first runs: the cap holds for
        // streams asked for in the same turn of the loop.
        event_clients.push_back(client);
        metrics.event_streams(event_clients.size());
        asio::co_spawn(io, event_session(std::move(client), head), asio::detached);
        break;
      }
      refusal->keep_alive(false);
      stream.expires_after(config.timeout);
      co_await http::async_write(stream, *refusal, kUseTuple);
      break;
    }
    if (req.method() == http::verb::post && req.target() == "/v1/upgrade") {
      std::function<void()> after;
      Response res = co_await upgrade(req, after);
      res.keep_alive(false);
      stream.expires_after(config.timeout);
      auto [wec, written] = co_await http::async_write(stream, res, kUseTuple);
      // The coordinator is replaced here (execve), unless the write failed
      // and with it the client's chance to learn that it was.
      if (!wec && after) after();
      break;
    }
    Response res = handle(req);
    const bool keep = res.keep_alive() && !stopped;
    res.keep_alive(keep);
    // A client that does not read its answer holds the connection no longer
    // than one that does not send its request.
    stream.expires_after(config.timeout);
    auto [wec, written] = co_await http::async_write(stream, res, kUseTuple);
    if (wec || !keep) break;
    ++served;
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  --active;
}

bool AdminServer::Impl::wants_stream(const Request& req) const {
  if (!events || req.method() != http::verb::get) return false;
  const std::string_view target = req.target();
  const auto q = target.find('?');
  if (target.substr(0, q) != "/v1/events") return false;
  return q == std::string_view::npos || query_value(target.substr(q + 1), "follow") != "0";
}

Response AdminServer::Impl::handle(const Request& req) {
  const std::string_view target = req.target();
  const auto q = target.find('?');
  const std::string_view path = target.substr(0, q);
  const std::string_view query = q == std::string_view::npos ? "" : target.substr(q + 1);
  const bool get = req.method() == http::verb::get || req.method() == http::verb::head;

  if (path == "/" || (path == "/v1/events" && events)) {
    if (!get) {
      Response res = respond(req, http::status::method_not_allowed,
                             error_json(std::string(path) + " takes GET"));
      res.set(http::field::allow, "GET, HEAD");
      return res;
    }
    if (path == "/") {
      Response res = respond(req, http::status::ok, std::string(status_page_html()),
                             "text/html; charset=utf-8");
      // Everything the page needs is in it; it talks to this endpoint only.
      res.set("Content-Security-Policy",
              "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
              "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'");
      res.set("X-Content-Type-Options", "nosniff");
      res.set("X-Frame-Options", "DENY");
      res.set("Referrer-Policy", "no-referrer");
      return res;
    }
    // The backlog only (?follow=0, or HEAD): an ordinary answer.
    if (auto refused = refuse_events(req)) return std::move(*refused);
    std::string body;
    for (const std::string& line : events->backlog()) append_framed(body, line, wants_sse(req));
    return respond(req, http::status::ok, std::move(body), wants_sse(req) ? kSse : kJsonLines);
  }
  if (path == "/healthz" || path == "/readyz" || path == "/metrics" || path == "/v1/status") {
    if (!get) {
      Response res = respond(req, http::status::method_not_allowed,
                             error_json(std::string(path) + " takes GET"));
      res.set(http::field::allow, "GET, HEAD");
      return res;
    }
    if (path == "/healthz") return respond(req, http::status::ok, "ok\n", "text/plain");
    if (path == "/metrics")
      return respond(req, http::status::ok, metrics.exposition(),
                     "text/plain; version=0.0.4; charset=utf-8");
    const Status st = backend.status();
    if (path == "/v1/status")
      return query == "format=text"
                 ? respond(req, http::status::ok, status_text(st), "text/plain; charset=utf-8")
                 : respond(req, http::status::ok, status_json(st));
    const auto reasons = unready_reasons(st);
    if (reasons.empty()) return respond(req, http::status::ok, "{\"ready\":true}\n");
    std::string body = "{\"ready\":false,\"reasons\":[";
    for (size_t i = 0; i < reasons.size(); ++i) body += (i ? "," : "") + json_string(reasons[i]);
    return respond(req, http::status::service_unavailable, body + "]}\n");
  }
  if (path.starts_with("/v1/services/")) {
    if (req.method() != http::verb::post) {
      Response res = respond(req, http::status::method_not_allowed,
                             error_json("service operations take POST"));
      res.set(http::field::allow, "POST");
      return res;
    }
    return post(req, path, query);
  }
  return respond(req, http::status::not_found,
                 error_json("no such endpoint: try /, /healthz, /readyz, /metrics, /v1/status, "
                            "/v1/events"));
}

// A browser sends Origin with every cross-origin POST (and with same-origin
// ones, but this endpoint serves no page, so there are none; after DNS
// rebinding the attacker's page is "same-origin" and still sends it). Our
// own clients never send it. A page cannot add X-Occasional-Admin or
// Authorization to a cross-origin request without a CORS preflight, which
// this endpoint never approves.
std::optional<Response> AdminServer::Impl::refuse_post(const Request& req) {
  if (req.find(http::field::origin) != req.end()) {
    metrics.admin_refused("cross_origin");
    return respond(req, http::status::forbidden,
                   error_json("cross-origin request refused: the admin API takes no POSTs from "
                              "web pages (the request has an Origin header)"));
  }
  if (!config.token.empty()) {
    Response refusal;
    if (!require_token(req, refusal)) return refusal;
    return std::nullopt;
  }
  if (req.find(kCsrfHeader) == req.end()) {
    metrics.admin_refused("no_csrf_header");
    return respond(
        req, http::status::forbidden,
        error_json(std::string("without a token, a POST needs the header ") +
                   std::string(kCsrfHeader) + ": 1 (occasional ctl sends it; a web page cannot)"));
  }
  return std::nullopt;
}

// With a token set, false (and the 401 in `refusal`) unless the request
// carries it.
bool AdminServer::Impl::require_token(const Request& req, Response& refusal) {
  if (config.token.empty()) return true;
  const auto auth = req.find(http::field::authorization);
  const auto presented = auth == req.end() ? std::nullopt : bearer_credentials(auth->value());
  if (presented && token_matches(std::string(*presented), config.token)) return true;
  metrics.admin_refused(auth == req.end() ? "no_token" : "wrong_token");
  refusal = respond(req, http::status::unauthorized,
                    error_json("missing or wrong bearer token (Authorization: Bearer "
                               "TOKEN; see --token or admin.token)"));
  refusal.set(http::field::www_authenticate, "Bearer");
  return false;
}

// The event log says more than /v1/status (arguments, stated reasons) and a
// stream holds a slot: with a token set it needs the token. A page on
// another origin may not read it either (its request has a foreign Origin;
// the page served here sends none, or its own).
std::optional<Response> AdminServer::Impl::refuse_events(const Request& req) {
  if (const auto origin = req.find(http::field::origin); origin != req.end()) {
    const auto host = req.find(http::field::host);
    const std::string own = host == req.end() ? "" : "http://" + std::string(host->value());
    if (origin->value() != own) {
      metrics.admin_refused("cross_origin");
      return respond(req, http::status::forbidden,
                     error_json("cross-origin request refused: /v1/events is read by the page "
                                "this endpoint serves, and by ctl and curl"));
    }
  }
  Response refusal;
  if (!require_token(req, refusal)) return refusal;
  return std::nullopt;
}

std::optional<Response> AdminServer::Impl::refuse_stream(const Request& req) {
  if (auto refused = refuse_events(req)) return refused;
  if (event_clients.size() >= config.max_event_streams) {
    metrics.admin_refused("stream_cap");
    return respond(req, http::status::service_unavailable,
                   error_json(std::to_string(config.max_event_streams) +
                              " event streams are open already: close one, or read the "
                              "backlog only (/v1/events?follow=0)"));
  }
  metrics.admin_request(200);
  return std::nullopt;
}

asio::awaitable<void> AdminServer::Impl::event_session(std::shared_ptr<EventClient> c,
                                                       std::string head) {
  auto self = shared_from_this();
  c->pending = std::move(head);
  for (const std::string& line : events->backlog()) append_framed(c->pending, line, c->sse);
  // The backlog (bounded by its line count) comes on top of the buffer.
  c->limit = config.event_buffer + c->pending.size();
  c->handle =
      events->subscribe([this, raw = c.get()](std::string_view line) { offer(*raw, line); });
  c->subscribed = true;
  read_until_closed(c);
  while (!c->done && !stopped) {
    if (c->pending.empty()) {
      c->wake.expires_after(config.event_heartbeat);
      auto [ec] = co_await c->wake.async_wait(kUseTuple);
      if (!ec && c->sse && c->pending.empty()) c->pending = ": keep-alive\n\n";
      continue;
    }
    std::string out;
    out.swap(c->pending);
    c->in_flight = out.size();
    const uint64_t write = ++c->writes;
    c->stall.expires_after(config.event_stall);
    c->stall.async_wait([this, c, write](const boost::system::error_code& ec) {
      if (ec || c->done || c->writes != write || c->in_flight == 0) return;
      metrics.event_stream_dropped();
      end_stream(*c);
    });
    auto [ec, n] = co_await asio::async_write(c->socket, asio::buffer(out), kUseTuple);
    c->in_flight = 0;
    c->stall.cancel();
    if (ec) break;
  }
  if (c->subscribed) events->unsubscribe(c->handle);
  c->subscribed = false;
  end_stream(*c);
  event_clients.remove(c);
  metrics.event_streams(event_clients.size());
}

// Discards what the client sends; its EOF or reset ends the stream.
void AdminServer::Impl::read_until_closed(std::shared_ptr<EventClient> c) {
  auto self = shared_from_this();
  c->socket.async_read_some(asio::buffer(c->sink),
                            [this, self, c](const boost::system::error_code& ec, size_t) {
                              if (!ec && !c->done) return read_until_closed(c);
                              end_stream(*c);
                            });
}

// Called by the EventStream for each new line: queues it, or drops a client
// that has too much not yet taken (it never blocks the loop).
void AdminServer::Impl::offer(EventClient& c, std::string_view line) {
  if (c.done) return;
  const size_t framed = line.size() + (c.sse ? 8 : 1);
  if (c.pending.size() + c.in_flight + framed > c.limit) {
    metrics.event_stream_dropped();
    return end_stream(c);
  }
  append_framed(c.pending, line, c.sse);
  c.wake.cancel();
}

void AdminServer::Impl::end_stream(EventClient& c) {
  if (c.done) return;
  c.done = true;
  c.wake.cancel();
  c.stall.cancel();
  c.pending.clear();
  c.pending.shrink_to_fit();
  beast::error_code ignored;
  c.socket.shutdown(tcp::socket::shutdown_both, ignored);
  c.socket.close(ignored);  // the write and the read in flight end with operation_aborted
}

Response AdminServer::Impl::post(const Request& req, std::string_view path,
                                 std::string_view query) {
  if (auto refused = refuse_post(req)) return std::move(*refused);
  // /v1/services/NAME/ACTION
  std::string_view rest = path.substr(std::string_view("/v1/services/").size());
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0)
    return respond(req, http::status::not_found,
                   error_json("expected /v1/services/NAME/restart|scale|stop|start"));
  const std::string service(rest.substr(0, slash));
  const std::string action(rest.substr(slash + 1));
  if (action != "restart" && action != "scale" && action != "stop" && action != "start")
    return respond(
        req, http::status::not_found,
        error_json("unknown action '" + action + "': expected restart, scale, " + "stop or start"));
  int replicas = 0;
  if (action == "scale") {
    constexpr std::string_view kKey = "replicas=";
    const auto at = query.find(kKey);
    std::string_view v = at == std::string_view::npos ? "" : query.substr(at + kKey.size());
    v = v.substr(0, v.find('&'));
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), replicas);
    if (v.empty() || ec != std::errc{} || end != v.data() + v.size() || replicas < 0 ||
        replicas > 4096)
      return respond(req, http::status::bad_request,
                     error_json("scale needs ?replicas=N with N from 0 to 4096"));
  }
  const ActionResult r = backend.act(service, action, replicas);
  return respond(req, static_cast<http::status>(r.status),
                 (r.status < 300 ? "{\"ok\":true,\"message\":" : "{\"error\":") +
                     json_string(r.message) + "}\n");
}

asio::awaitable<Response> AdminServer::Impl::upgrade(const Request& req,
                                                     std::function<void()>& after) {
  if (auto refused = refuse_post(req)) co_return std::move(*refused);
  struct Answer {
    explicit Answer(asio::io_context& io) : wake(io) {}
    asio::steady_timer wake;
    std::optional<ActionResult> result;
    std::function<void()> after;
  };
  auto answer = std::make_shared<Answer>(io);
  answer->wake.expires_at(asio::steady_timer::time_point::max());
  backend.upgrade(req.body(), [answer](ActionResult r, std::function<void()> then) {
    answer->result = std::move(r);
    answer->after = std::move(then);
    answer->wake.cancel();
  });
  if (!answer->result) co_await answer->wake.async_wait(kUseTuple);
  if (!answer->result)
    co_return respond(req, http::status::internal_server_error,
                      error_json("the upgrade gave no answer"));
  after = std::move(answer->after);
  const ActionResult& r = *answer->result;
  co_return respond(req, static_cast<http::status>(r.status),
                    (r.status < 300 ? "{\"ok\":true,\"message\":" : "{\"error\":") +
                        json_string(r.message) + "}\n");
}

AdminServer::AdminServer(asio::io_context& io, AdminConfig config, AdminBackend& backend,
                         Metrics& metrics, EventStream* events)
    : impl_(std::make_shared<Impl>(io, std::move(config), backend, metrics, events)) {
  tcp::acceptor& a = impl_->acceptor;
  const tcp::endpoint& ep = impl_->config.endpoint;
  const std::string where = ep.address().to_string() + ":" + std::to_string(ep.port());
  if (auto problem = exposure_problem(impl_->config)) throw std::runtime_error(*problem);
  boost::system::error_code ec;
  if (impl_->config.adopted_fd >= 0) {
    a.assign(ep.protocol(), impl_->config.adopted_fd, ec);
    if (ec)
      throw std::runtime_error("admin endpoint " + where +
                               " (carried over an upgrade): " + ec.message());
    return;
  }
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error("admin endpoint " + where + ": " + ec.message() +
                             " (choose another with --admin ADDR or admin.address)");
}

AdminServer::~AdminServer() {
  stop();
}

int AdminServer::native_handle() {
  return impl_->acceptor.native_handle();
}

uint16_t AdminServer::port() const {
  boost::system::error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

void AdminServer::start() {
  asio::co_spawn(impl_->io, impl_->accept_loop(), asio::detached);
}

void AdminServer::stop() {
  impl_->stopped = true;
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
  for (const auto& c : impl_->event_clients) {
    // The loop may not run again (the coordinator exits): the last lines,
    // its stop among them, go out now if the socket takes them at once.
    if (!c->done && c->in_flight == 0 && !c->pending.empty()) {
      boost::system::error_code ec;
      c->socket.non_blocking(true, ec);
      if (!ec) c->socket.write_some(asio::buffer(c->pending), ec);
    }
    impl_->end_stream(*c);
    // The loop may never resume the stream's coroutine: the EventStream
    // must not call into it any more.
    if (c->subscribed) impl_->events->unsubscribe(c->handle);
    c->subscribed = false;
  }
}

}  // namespace occasional::metrics
