#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>

#include "gateway/dispatcher.hpp"
#include "gateway/gateway_stats.hpp"
#include "gateway/route_table.hpp"
#include "workers/protocol.hpp"
#include "workers/unique_fd.hpp"

namespace occasional::gateway {

struct PeekLimits {
  size_t max_bytes = 4096;
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
         GatewayStats& stats);

  void route(UniqueFd fd, workers::ConnHeader header);
  size_t peeking() const { return peeking_.size(); }
  const RouteTable& table() const { return table_; }
  // Closes every connection still being routed (counted as `shutdown`).
  void close_all();

 private:
  struct Peek {
    Peek(boost::asio::io_context& io, int fd) : socket(io, fd), timer(io) {}
    boost::asio::posix::stream_descriptor socket;
    boost::asio::steady_timer timer;
    workers::ConnHeader header;
    size_t seen = 0;
  };

  void try_peek(uint64_t id);
  void wait(uint64_t id);
  void finish(uint64_t id, const RouteDecision& decision);
  void reject(uint64_t id, const char* reason);

  boost::asio::io_context& io_;
  RouteTable table_;
  PeekLimits limits_;
  Dispatcher& dispatcher_;
  GatewayStats& stats_;
  std::string buffer_;
  std::unordered_map<uint64_t, std::unique_ptr<Peek>> peeking_;
};

}  // namespace occasional::gateway
