#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "gateway/dispatcher.hpp"
#include "gateway/loop_failures.hpp"
#include "gateway/route_table.hpp"
#include "metrics/connection_stats.hpp"
#include "supervisor/event_log.hpp"
#include "workers/protocol.hpp"
#include "workers/unique_fd.hpp"

namespace occasional::gateway {

struct PeekLimits {
  // What nginx (large_client_header_buffers 8k) and HAProxy (tune.bufsize
  // 16k) take as a request head: HTTP routing needs only the request line
  // and Host within it.
  size_t max_bytes = 16384;
  std::chrono::milliseconds timeout{3000};
};

// Decides each accepted connection's service from its first bytes (MSG_PEEK,
// nothing consumed but a preface line) and passes it to the Dispatcher.
// Listeners with only a default route skip all of this: no extra syscall.
//
// Waiting for more bytes uses SO_RCVLOWAT: with peeked bytes still unread the
// socket stays readable, so a plain wait would spin; a low-water mark one
// byte above what was seen makes epoll wait for new data. It is reset before
// the handoff (the worker inherits the socket's options).
class Router {
 public:
  Router(boost::asio::io_context& io, RouteTable table, PeekLimits limits, Dispatcher& dispatcher,
         metrics::ConnectionStats& stats, const supervisor::EventLog& log);

  // Never throws: a connection that cannot be routed (the reactor refuses
  // its fd, memory runs out) is closed and counted, and the loop goes on.
  void route(UniqueFd fd, workers::ConnHeader header);
  size_t peeking() const { return peeking_.size(); }
  const RouteTable& table() const { return table_; }
  // Closes every connection still being routed (counted as `shutdown`).
  void close_all();

 private:
  struct Peek {
    explicit Peek(boost::asio::io_context& io) : socket(io), timer(io) {}
    boost::asio::posix::stream_descriptor socket;
    boost::asio::steady_timer timer;
    workers::ConnHeader header;
    size_t seen = 0;
  };

  void try_peek(uint64_t id);
  void wait(uint64_t id);
  void finish(uint64_t id, const RouteDecision& decision);
  void reject(uint64_t id, const char* reason);
  // Runs `step` for connection `id` from an Asio handler: whatever it throws
  // closes that connection (counted as `internal_error`), not the coordinator.
  template <typename Step>
  void guarded(uint64_t id, Step step);

  boost::asio::io_context& io_;
  RouteTable table_;
  PeekLimits limits_;
  Dispatcher& dispatcher_;
  metrics::ConnectionStats& stats_;
  LoopFailures failures_;
  std::string buffer_;
  // By connection id, which grows with each accept: the first is the oldest.
  std::map<uint64_t, std::unique_ptr<Peek>> peeking_;
};

}  // namespace occasional::gateway
