#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "workers/value.hpp"

namespace occasional {

class Process;

// TCP sockets owned by a process, as Erlang's gen_tcp (docs/messages.md,
// "Sockets"). A socket belongs to one process, its owner: only the owner
// uses it, and in active mode its data arrives in the owner's inbox as
// messages, multiplexed with every other message:
//
//   ("tcp", socket, binary)        data, in order, each at most 64 KiB
//   ("tcp_closed", socket)         the peer closed (EOF), or after tcp_error
//   ("tcp_error", socket, reason)  e.g. "econnreset", then tcp_closed
//
// where `socket` is the socket's identity, a reference (Socket::value()).
// controlling_process hands a socket to another process with the messages
// of it not yet received. A socket closes when its owner exits, whatever
// the reason (its fd closes with the process).
namespace tcp {

// gen_tcp's {active, false | once | true}.
enum class Active {
  off,   // passive: read with recv()
  once,  // one message, then off again: a slow owner is never flooded
  on,    // every read becomes a message as it arrives
};

// A socket's identity: a reference made by the process that opened it,
// unique in the system's run. It travels in messages like any value.
struct Socket {
  Reference id;

  Value value() const { return Value(id); }
  operator Value() const { return value(); }  // tuple("take", sock)
  // A socket in a received message; nullopt for any other value.
  static std::optional<Socket> from(const Value& v);

  friend bool operator==(const Socket&, const Socket&) = default;
};

struct Options {
  Active active = Active::off;
  bool nodelay = false;  // TCP_NODELAY
};

struct ListenOptions {
  std::string host;  // the address to bind; empty: every interface
  int backlog = 128;
  Options accepted;  // what accept() gives each connection
};

// connect, listen and accept failed: `reason` is Erlang's word for it
// ("econnrefused", "timeout", "nxdomain", "not_owner", ...).
class Error : public std::runtime_error {
 public:
  Error(std::string reason, const std::string& what)
      : std::runtime_error(what), reason_(std::move(reason)) {}
  const std::string& reason() const { return reason_; }

 private:
  std::string reason_;
};

// The result of the calls that may fail in a running conversation: an
// empty `error` is success, otherwise Erlang's reason ("closed", "timeout",
// "not_owner", "einval", "econnreset", ...). recv() puts its data in `bytes`.
struct Result {
  std::string error;
  std::string bytes;

  bool ok() const { return error.empty(); }
  explicit operator bool() const { return ok(); }
};

// The calling process becomes the owner. Throws tcp::Error.
Socket connect(Process& p, const std::string& host, uint16_t port, const Options& options = {},
               std::chrono::milliseconds timeout = std::chrono::seconds(30));
// A listening socket, owned by the caller; port 0 picks a free one (port()).
Socket listen(Process& p, uint16_t port, const ListenOptions& options = {});
// A connection from `listener`'s queue, owned by the caller, with
// options.accepted; nullopt once `timeout` has passed. It blocks the
// process (its inbox waits), as gen_tcp:accept does.
std::optional<Socket> accept(Process& p, const Socket& listener, std::chrono::milliseconds timeout);
Socket accept(Process& p, const Socket& listener);
// The local port.
uint16_t port(Process& p, const Socket& socket);

// Writes all of `bytes`, waiting while the socket's buffer is full (reading
// this process's own messages meanwhile). "closed" once the peer is gone.
Result send(Process& p, const Socket& socket, std::string_view bytes);
// Passive mode only ("einval" otherwise). length 0: whatever has arrived
// (at most 64 KiB), waiting for something; length n: exactly n bytes.
// "timeout" leaves what was read for the next call; "closed" at EOF.
Result recv(Process& p, const Socket& socket, size_t length,
            std::optional<std::chrono::milliseconds> timeout = std::nullopt);
Result set_active(Process& p, const Socket& socket, Active active);
// Hands the socket to `new_owner`, which must be a C++ process of this
// system: the fd moves with SCM_RIGHTS on the channel between the two,
// after the socket's messages still in the caller's inbox (moved there, in
// order), so nothing is lost or duplicated; its mode and any bytes a
// passive recv() buffered go with it. The new owner may use the socket once
// a message the caller sent after this call has arrived.
Result controlling_process(Process& p, const Socket& socket, const Address& new_owner);
// Half-close: no more sending; the peer reads EOF, this side may still read.
Result shutdown_write(Process& p, const Socket& socket);
// Closes it; its messages already in the inbox stay. Not the owner: no-op.
void close(Process& p, const Socket& socket);

// Connections from the gateway (docs/messages.md, "Connections from the
// gateway"). In a program a coordinator starts in handoff mode, process zero
// of occasional::run holds the worker's control channel: gateway_start says
// hello and ready on it, and from then on each connection the gateway hands
// to this worker becomes a socket owned by process zero, in `options`' mode,
// announced by a message before any of its data:
//
//   ("gateway_conn", socket, {"id", "peer", "local", "listener", "route"})
//   ("gateway_drain", deadline_ms)   finish the connections, then return
//   ("gateway_lost", why)            no more connections: "closed" (the
//                                    coordinator closed the channel), or
//                                    "protocol_error: ..." (it broke the protocol)
//
// The sockets are like any other: controlling_process hands one to a process
// of its own. Throws tcp::Error "not_a_worker" in any other process.
void gateway_start(Process& p, const Options& options = {});
// Tells the gateway that connection `id` (from "gateway_conn") is finished:
// its least-connections count and a drain wait on it. Say it when the
// connection's process is DOWN, whatever its reason. False when the channel
// is gone or gateway_start was not called.
bool gateway_finished(Process& p, uint64_t id);

struct GatewayConn {
  Socket socket;
  uint64_t id = 0;
  std::string peer;   // "127.0.0.1:50312"
  std::string local;  // the listener address the client connected to
};
// nullopt for any message that is not a "gateway_conn".
std::optional<GatewayConn> gateway_conn(const Value& message);

// A socket's message, read from a received value.
struct Event {
  enum class Kind { data, closed, error };
  Kind kind = Kind::data;
  Socket socket;
  std::string_view bytes;   // data: the bytes, a view into the message
  std::string_view reason;  // error
};
// nullopt for a value that is not a socket message. Views into `message`.
std::optional<Event> event(const Value& message);
std::optional<Event> event(Value&&) = delete;
// For receive(match, timeout): any message of `socket`.
std::function<bool(const Value&)> messages_of(const Socket& socket);

}  // namespace tcp
}  // namespace occasional
