// A handoff worker for the benchmark: for each connection it records how
// long ago the coordinator accepted it (the `conn` header's accepted_at_ns,
// CLOCK_MONOTONIC) at two points: when recvmsg gave this process the fd
// (Connection::received_at_ns), and when the application's coroutine holds
// it as an Asio socket. Then it closes it. On drain it writes every sample
// to --report PATH.PID, one line per connection: "HELD_NS APP_NS".
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <fstream>
#include <vector>

#include "workers/examples/worker_args.hpp"
#include "workers/protocol.hpp"
#include "workers/worker.hpp"

namespace asio = boost::asio;
using occasional::workers::Worker;

namespace {

struct Sample {
  int64_t held_ns;
  int64_t app_ns;
};

asio::awaitable<void> serve(Worker& worker, std::vector<Sample>& samples) {
  worker.ready();
  for (;;) {
    auto c = co_await worker.next();
    if (!c) break;
    const int64_t now = occasional::workers::monotonic_now_ns();
    samples.push_back(
        {c->received_at_ns - c->header.accepted_at_ns, now - c->header.accepted_at_ns});
    boost::system::error_code ec;
    c->socket.close(ec);
    worker.closed(c->header.id);
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    auto args = occasional::examples::parse_worker_args(argc, argv);
    asio::io_context io(1);
    Worker worker(io, args.listen);
    std::vector<Sample> samples;
    samples.reserve(1 << 20);
    asio::co_spawn(io, serve(worker, samples), [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    });
    io.run();
    const std::string report = args.get("--report");
    if (!report.empty()) {
      std::ofstream out(report + "." + std::to_string(::getpid()));
      for (const Sample& s : samples) out << s.held_ns << " " << s.app_ns << "\n";
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "handoff_latency_worker: %s\n", e.what());
    return 1;
  }
}
