// HTTP/1.1 hello server (Boost.Beast), keep-alive. Answers every request with
// the service name and pid that served it. Runs under the coordinator
// (handoff or listen_fds) or standalone with --listen ADDR.
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <exception>
#include <set>

#include "workers/examples/worker_args.hpp"
#include "workers/worker.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using occasional::workers::Connection;
using occasional::workers::Worker;

namespace {

struct Session {
  Connection conn;
  // Between a response and the next request of a kept-alive connection: the
  // only state a drain may cut. A connection that has not sent its first
  // request yet is a request on its way (the coordinator handed it to us
  // before the drain), so it is served; the grace deadline bounds the wait.
  bool idle = false;
  beast::flat_buffer buffer{};
};

std::set<Session*> sessions;

asio::awaitable<void> serve_http(Worker& worker, Connection c, std::string name) {
  Session session{std::move(c)};
  sessions.insert(&session);
  const std::string pid = std::to_string(::getpid());
  boost::system::error_code ec;
  for (;;) {
    http::request<http::string_body> req;
    co_await http::async_read(session.conn.socket, session.buffer, req,
                              asio::redirect_error(asio::use_awaitable, ec));
    session.idle = false;
    if (ec) break;
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::server, "occasional-http-hello");
    res.set(http::field::content_type, "text/plain");
    res.set("X-Worker-Pid", pid);
    res.set("X-Service", name);
    res.body() = "hello from " + name + " pid " + pid + " path " + std::string(req.target()) + "\n";
    // A draining worker finishes this response, then closes the connection.
    res.keep_alive(req.keep_alive() && !worker.draining());
    res.prepare_payload();
    co_await http::async_write(session.conn.socket, res,
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec || !res.keep_alive()) break;
    session.idle = session.buffer.size() == 0;
  }
  session.conn.socket.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  session.conn.socket.close(ec);
  sessions.erase(&session);
  worker.closed(session.conn.header.id);
}

asio::awaitable<void> accept_loop(Worker& worker, std::string name) {
  worker.ready();
  for (;;) {
    // Not "while (auto c = co_await ...)": GCC 12 destroys such a condition
    // variable too early (a use-after-free under ASan).
    auto c = co_await worker.next();
    if (!c) break;
    std::string service = c->header.service.empty() ? name : c->header.service;
    asio::co_spawn(co_await asio::this_coro::executor, serve_http(worker, std::move(*c), service),
                   asio::detached);
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    auto args = occasional::examples::parse_worker_args(argc, argv);
    asio::io_context io(1);
    Worker worker(io, args.listen, args.defer_accept);
    std::string name = args.get("--name", worker.service().empty() ? "hello" : worker.service());
    worker.on_drain([] {
      // Idle keep-alive connections would hold the drain open: close them.
      // The others finish their request and then close (keep_alive above).
      for (Session* s : sessions) {
        boost::system::error_code ec;
        if (s->idle) s->conn.socket.cancel(ec);
      }
    });
    asio::co_spawn(io, accept_loop(worker, name), [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    });
    io.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "http_hello_worker: %s\n", e.what());
    return 1;
  }
}
