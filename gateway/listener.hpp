#pragma once

#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <string>

#include "gateway/loop_failures.hpp"
#include "metrics/connection_stats.hpp"
#include "supervisor/event_log.hpp"
#include "workers/protocol.hpp"
#include "workers/read_batching.hpp"
#include "workers/unique_fd.hpp"

namespace occasional::gateway {

// "127.0.0.1:8080", "[::1]:8080", ":8080" (all IPv4 addresses), "[::]:8080".
struct ListenAddress {
  std::string text;
  bool v6 = false;
  std::string host;  // numeric
  uint16_t port = 0;
};
// Throws std::invalid_argument with a message for a person.
ListenAddress parse_listen_address(const std::string& text);

// An accepted peer or local address as the `conn` header carries it:
// "127.0.0.1:50312", "[::1]:50312".
std::string sockaddr_text(const sockaddr_storage& address);
// Fills `out` for bind or connect; returns its length.
socklen_t to_sockaddr(const ListenAddress& address, sockaddr_storage& out);

// One listening socket. Binds at construction (startup: throws on failure).
// The accept loop only accepts and hands each connection on: one accept4
// per wake-up while connections come one at a time, else accept4 until
// EAGAIN, then one yield of the CPU and one more sweep before it waits
// (docs/gateway.md, "Batches"); out of fds (EMFILE/ENFILE) or memory pauses
// accepting with a growing delay instead of spinning, counted by reason.
class Listener {
 public:
  using Accepted = std::function<void(UniqueFd fd, workers::ConnHeader header)>;
  // Whether a connection accepted now has somewhere to go.
  using Admit = std::function<bool()>;
  // Around a wake-up that takes several waiting connections (begin true,
  // then false once it is over, whichever way it ends).
  using Burst = std::function<void(bool begin)>;

  // defer_accept: set TCP_DEFER_ACCEPT (docs/configuration.md, `defer_accept`).
  // `activated`: a listening socket passed by systemd socket activation
  // (app/socket_activation.hpp), already checked against `address`; it is
  // used instead of binding one, and only our copy closes at close().
  Listener(boost::asio::io_context& io, std::string name, const ListenAddress& address,
           bool defer_accept, metrics::ConnectionStats& stats, const supervisor::EventLog& log,
           UniqueFd activated = UniqueFd());

  const std::string& name() const { return name_; }
  int fd() { return socket_.native_handle(); }
  // The bound port (the configured one, or the kernel's pick for port 0).
  uint16_t port() const { return port_; }
  // While `admit` says no, the listener holds: it accepts nothing, and new
  // clients wait in the kernel's backlog instead of being accepted only to
  // be closed; resume() looks again.
  void start(Accepted on_accepted, Admit admit = {}, Burst burst = {});
  void resume();
  // Stops accepting; the socket stays open (listen_fds workers may share it).
  void stop();
  // Accepts again after stop() (an upgrade that did not go ahead).
  void restart();
  // Stops accepting and closes the socket: new clients are refused, not left
  // waiting in a backlog nobody will accept from.
  void close();

 private:
  void wait();
  void accept_ready();
  // Between two sweeps of one wake-up: sends what the first staged, lets
  // whatever else is runnable on this CPU go first, and counts whether any
  // did (occasional_accept_yields_total).
  void yield_between_sweeps();
  void pause(int err);  // err: the errno accept4 failed with
  // The accepted connection's handler threw: counted, logged at most once a second.
  void handler_failed(const std::exception& e);
  void hold();
  void release_hold();

  boost::asio::io_context& io_;
  std::string name_;
  boost::asio::posix::stream_descriptor socket_;
  boost::asio::steady_timer pause_timer_;
  std::chrono::milliseconds pause_{0};
  workers::ReadBatching batching_;
  metrics::ConnectionStats& stats_;
  metrics::ListenerCounts& counts_;  // this listener's, in stats_
  const supervisor::EventLog& log_;
  Accepted on_accepted_;
  Admit admit_;
  Burst burst_;
  bool held_ = false;
  LoopFailures failures_;
  std::string local_text_;  // empty when bound to a wildcard address
  uint16_t port_ = 0;
  bool stopped_ = false;
};

}  // namespace occasional::gateway
