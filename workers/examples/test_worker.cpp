// A worker for tests: misbehaves on command. Options:
//   --not-ready           never says ready
//   --ready-after MS      says ready after MS milliseconds
//   --exit-at-start CODE  sends exit reason "asked to" and exits with CODE at once
// Each connection takes one command line, answers, and acts:
//   ping        -> "pong <pid> <service> <route>"
//   crash       -> abort()
//   hang        -> stops answering anything (busy loop on the event loop)
//   exit CODE   -> sends exit reason "asked to exit CODE", exits with CODE
//   anything else is echoed back with the pid
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <istream>

#include "workers/examples/worker_args.hpp"
#include "workers/worker.hpp"

namespace asio = boost::asio;
using occasional::workers::Connection;
using occasional::workers::Worker;

namespace {

asio::awaitable<void> handle(Worker& worker, Connection c) {
  asio::streambuf buf;
  boost::system::error_code ec;
  co_await asio::async_read_until(c.socket, buf, '\n',
                                  asio::redirect_error(asio::use_awaitable, ec));
  if (!ec) {
    std::istream in(&buf);
    std::string line;
    std::getline(in, line);
    const std::string pid = std::to_string(::getpid());
    std::string reply;
    if (line == "ping") {
      reply = "pong " + pid + " " + c.header.service + " " + c.header.route + "\n";
    } else if (line == "crash") {
      std::abort();
    } else if (line == "hang") {
      for (;;) ::pause();
    } else if (line.rfind("exit ", 0) == 0) {
      int code = std::atoi(line.c_str() + 5);
      worker.exit_reason("asked to exit " + std::to_string(code));
      std::_Exit(code);
    } else {
      reply = pid + " " + line + "\n";
    }
    co_await asio::async_write(c.socket, asio::buffer(reply),
                               asio::redirect_error(asio::use_awaitable, ec));
  }
  c.socket.close(ec);
  worker.closed(c.header.id);
}

asio::awaitable<void> run(Worker& worker, const occasional::examples::WorkerArgs& args) {
  if (args.has("--ready-after")) {
    asio::steady_timer t(co_await asio::this_coro::executor,
                         std::chrono::milliseconds(std::atoi(args.get("--ready-after").c_str())));
    co_await t.async_wait(asio::use_awaitable);
  }
  if (!args.has("--not-ready")) worker.ready();
  for (;;) {
    // Not "while (auto c = co_await ...)": GCC 12 destroys such a
    // condition variable too early (a use-after-free under ASan).
    auto c = co_await worker.next();
    if (!c) break;
    asio::co_spawn(co_await asio::this_coro::executor, handle(worker, std::move(*c)),
                   asio::detached);
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    auto args = occasional::examples::parse_worker_args(argc, argv);
    asio::io_context io(1);
    Worker worker(io, args.listen, args.defer_accept);
    if (args.has("--exit-at-start")) {
      int code = std::atoi(args.get("--exit-at-start").c_str());
      worker.exit_reason("asked to");
      return code;
    }
    asio::co_spawn(io, run(worker, args), [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    });
    io.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "test_worker: %s\n", e.what());
    return 1;
  }
}
