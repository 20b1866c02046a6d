#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "workers/closed_counter.hpp"
#include "workers/protocol.hpp"
#include "workers/read_batching.hpp"
#include "workers/unique_fd.hpp"
#include "workers/worker_mode.hpp"

namespace occasional::workers {

struct Connection {
  boost::asio::ip::tcp::socket socket;
  ConnHeader header;  // in listen modes: id, peer, local, accepted_at_ns filled locally
  // CLOCK_MONOTONIC when this process got the fd: recvmsg returned it
  // (handoff) or accept did (listen modes). received_at_ns -
  // header.accepted_at_ns is the handoff's own latency.
  int64_t received_at_ns = 0;
};

// The C++ side of a worker. The same binary runs under the coordinator in
// `handoff` or `listen_fds` mode, or on its own:
//
//   Worker w(io, "0.0.0.0:8080");  // the address is used only standalone
//   w.ready();
//   while (auto c = co_await w.next()) { serve(std::move(*c)); }
//
// SIGTERM, or a `drain` message, makes next() return nullopt once every
// connection already handed to this worker has been returned.
class Worker {
 public:
  // Throws std::runtime_error with a message for a person when the
  // environment is inconsistent (LISTEN_PID for another process, a bad
  // control fd, a standalone address missing or unusable).
  // standalone_defer_accept: set TCP_DEFER_ACCEPT on the standalone listener
  // (the coordinator's `defer_accept` does it for the other modes).
  Worker(boost::asio::io_context& io, std::string standalone_listen = {},
         bool standalone_defer_accept = false);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  WorkerMode mode() const { return mode_; }
  // The service name given by the coordinator (OCCASIONAL_SERVICE), or "".
  const std::string& service() const { return service_; }
  // Says ready: `ready` message, or READY=1 on NOTIFY_SOCKET (and starts the
  // watchdog pings when WATCHDOG_USEC is set).
  void ready();
  boost::asio::awaitable<std::optional<Connection>> next();
  // A connection finished (feeds the coordinator's least-connections balancing).
  void closed(uint64_t id);
  void status(std::string_view text);
  // The worker's own exit reason, recorded in its exit record; send just before exiting.
  void exit_reason(std::string_view reason);
  void exit_error(std::string_view error, std::string_view detail);
  bool draining() const { return draining_; }
  // Runs once when draining starts (close idle keep-alive connections there).
  void on_drain(std::function<void()> callback) { on_drain_ = std::move(callback); }
  // Runs once draining has started and every connection next() returned has
  // been closed(). The default sends exit reason "drained" and stops the
  // io_context, so that main returns.
  void on_drained(std::function<void()> callback) { on_drained_ = std::move(callback); }
  // Connections returned by next() and not yet closed().
  uint64_t open_connections() const { return open_; }

 private:
  void start_drain();
  void check_drained();
  void send_control(const std::string& message);
  void notify(std::string_view state);
  boost::asio::awaitable<void> watchdog(std::chrono::microseconds interval);
  boost::asio::awaitable<std::optional<Connection>> next_handoff();
  Connection adopt(UniqueFd fd, ConnHeader header, int64_t received_at);
  boost::asio::awaitable<std::optional<Connection>> next_accept();

  boost::asio::io_context& io_;
  WorkerMode mode_;
  std::string service_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> control_;
  ReadBatching control_batching_;
  // From the coordinator's `closed_counter` message; until it comes (or if
  // it never does) closed() sends `closed` messages.
  ClosedCounter closed_counter_;
  // The connections of a `conns` message; next() returns them from
  // batch_next_ on. Kept (cleared) between batches: no allocation per batch.
  std::vector<Connection> batch_;
  size_t batch_next_ = 0;
  // The last message decoded; kept so that decoding a `conns` allocates no
  // list.
  Message decoded_;
  bool control_wait_first_ = false;  // the last wake-up's message was taken: wait before reading
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
  std::string notify_path_;
  UniqueFd notify_socket_;
  boost::asio::signal_set signals_;
  bool draining_ = false;
  uint64_t next_local_id_ = 1;
  uint64_t open_ = 0;
  bool drained_reported_ = false;
  std::function<void()> on_drain_;
  std::function<void()> on_drained_;
};

}  // namespace occasional::workers
