// A handoff worker for the benchmark: for each connection it records how
// long ago the coordinator accepted it (the `conn` header's accepted_at_ns,
// CLOCK_MONOTONIC, against the clock when the worker holds the fd), then
// closes it. On drain it writes every sample (nanoseconds, one per line) to
// --report PATH.PID.
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

asio::awaitable<void> serve(Worker& worker, std::vector<int64_t>& samples) {
  worker.ready();
  for (;;) {
    auto c = co_await worker.next();
    if (!c) break;
    samples.push_back(occasional::workers::monotonic_now_ns() - c->header.accepted_at_ns);
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
    std::vector<int64_t> samples;
    samples.reserve(1 << 20);
    asio::co_spawn(io, serve(worker, samples), [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    });
    io.run();
    const std::string report = args.get("--report");
    if (!report.empty()) {
      std::ofstream out(report + "." + std::to_string(::getpid()));
      for (int64_t s : samples) out << s << "\n";
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "handoff_latency_worker: %s\n", e.what());
    return 1;
  }
}
