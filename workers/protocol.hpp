#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace occasional::workers {

// The worker protocol (mode `handoff`), version 1. docs/protocol.md is the
// reference; this header is its C++ form.
inline constexpr int kProtocolVersion = 1;
// Largest datagram either side sends or accepts.
inline constexpr size_t kMaxMessageBytes = 64 * 1024;
// Most connections (and fds) in one `conns` message.
inline constexpr size_t kMaxConnsPerMessage = 16;
// The fd number of the worker's end of the control socket.
inline constexpr int kControlFd = 3;
inline constexpr const char* kControlFdEnv = "OCCASIONAL_CONTROL_FD";
// Every service worker's channel to the coordinator's process hub (after
// the mode's fds), for Process::from_environment() (docs/messages.md).
inline constexpr const char* kProcessFdEnv = "OCCASIONAL_PROCESS_FD";

enum class MessageType {
  // coordinator -> worker
  hello,  // also worker -> coordinator
  conn,
  conns,  // several connections in one message, with one fd each, in order
  drain,
  ping,
  closed_counter,  // with an fd: a shared counter that replaces `closed` messages
  // worker -> coordinator
  ready,
  closed,
  exit,
  pong,
  status,
};

const char* message_type_name(MessageType type);

// CLOCK_MONOTONIC in nanoseconds: the clock of `accepted_at_ns`, comparable
// between the coordinator and its workers on one host.
int64_t monotonic_now_ns();

// The header that rides with each handed-off connection.
struct ConnHeader {
  uint64_t id = 0;
  std::string peer;            // "127.0.0.1:50312" or "[::1]:50312"
  std::string local;           // the listener address the client connected to
  std::string listener;        // listener name
  std::string service;         // the service the connection was routed to
  std::string route;           // "default", "preface", "http", "tls_sni"
  int64_t accepted_at_ns = 0;  // CLOCK_MONOTONIC at accept
};

// One decoded message. Fields not used by `type` stay empty.
struct Message {
  MessageType type = MessageType::hello;
  int64_t version = 0;            // hello: as sent, so that no value wraps onto 1
  int64_t pid = 0;                // hello (worker)
  bool closed_counter = false;    // hello (worker): asks for a `closed_counter`
  bool conn_batches = false;      // hello (worker): takes `conns` messages
  ConnHeader conn;                // conn
  std::vector<ConnHeader> conns;  // conns
  uint64_t id = 0;                // closed
  uint64_t seq = 0;               // ping, pong
  int64_t deadline_ms = 0;        // drain
  std::string text;               // status text; exit reason or error
  bool is_error = false;          // exit: an error (with `detail`) rather than a reason
  std::string detail;             // exit error detail
};

// Encoders: one JSON object, "type" first.
std::string encode_hello_coordinator();
// closed_counter: ask the coordinator for a shared counter of finished
// connections (workers/closed_counter.hpp) instead of sending `closed`.
// conn_batches: the worker takes `conns` messages.
std::string encode_hello_worker(int64_t pid, bool closed_counter = false,
                                bool conn_batches = false);
std::string encode_conn(const ConnHeader& h);
// The same into `out`, replacing what it held: a buffer kept between
// handoffs keeps its capacity, and the hot path allocates nothing.
void encode_conn(std::string& out, const ConnHeader& h);
// Appends one more header to a `conns` message being built: start with an
// empty string, append 1 to kMaxConnsPerMessage headers, then finish_conns.
void append_conns_entry(std::string& message, const ConnHeader& h);
void finish_conns(std::string& message);
std::string encode_drain(int64_t deadline_ms);
std::string encode_ping(uint64_t seq);
std::string encode_closed_counter();
std::string encode_pong(uint64_t seq);
std::string encode_ready();
std::string encode_closed(uint64_t id);
std::string encode_exit_reason(std::string_view reason);
std::string encode_exit_error(std::string_view error, std::string_view detail);
std::string encode_status(std::string_view text);

// Decodes one datagram. On failure returns nullopt and sets `error` to a
// sentence naming what was wrong (for the log), `reason` to a short label
// (for metrics): "not_json", "type_not_first", "unknown_type", "missing_field",
// "wrong_type", "bad_version".
std::optional<Message> decode_message(std::string_view datagram, std::string& reason,
                                      std::string& error);
// The same into `out`, which is reset first: a Message kept between calls
// keeps the capacity of its `conns`. False on failure, as nullopt above.
bool decode_message(std::string_view datagram, Message& out, std::string& reason,
                    std::string& error);

}  // namespace occasional::workers
