// TCP echo: every byte a client sends comes back. Runs under the coordinator
// (handoff or listen_fds) or standalone with --listen ADDR.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstdio>
#include <exception>

#include "workers/examples/worker_args.hpp"
#include "workers/worker.hpp"

namespace asio = boost::asio;
using occasional::workers::Connection;
using occasional::workers::Worker;

asio::awaitable<void> echo(Worker& worker, Connection c) {
  char buf[16384];
  boost::system::error_code ec;
  for (;;) {
    size_t n = co_await c.socket.async_read_some(asio::buffer(buf),
                                                 asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    co_await asio::async_write(c.socket, asio::buffer(buf, n),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
  }
  worker.closed(c.header.id);
}

asio::awaitable<void> serve(Worker& worker) {
  worker.ready();
  for (;;) {
    // Not "while (auto c = co_await ...)": GCC 12 destroys such a
    // condition variable too early (a use-after-free under ASan).
    auto c = co_await worker.next();
    if (!c) break;
    asio::co_spawn(co_await asio::this_coro::executor, echo(worker, std::move(*c)), asio::detached);
  }
}

int main(int argc, char** argv) {
  try {
    auto args = occasional::examples::parse_worker_args(argc, argv);
    asio::io_context io(1);
    Worker worker(io, args.listen, args.defer_accept);
    asio::co_spawn(io, serve(worker), [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    });
    io.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_worker: %s\n", e.what());
    return 1;
  }
}
