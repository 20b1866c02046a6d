#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include "workers/closed_counter.hpp"
#include "workers/protocol.hpp"
#include "workers/read_batching.hpp"
#include "workers/unique_fd.hpp"

namespace occasional::supervisor {

// The coordinator's end of one handoff-mode worker's control socket: reads
// and checks every message the worker sends, and sends it messages (a `conn`
// with the connection's fd). Lives exactly as long as the worker process.
class WorkerLink {
 public:
  struct Handlers {
    std::function<void(const workers::Message&)> on_message;
    // A message failed a check: `reason` is a metric label, `error` a sentence.
    std::function<void(const char* reason, const std::string& error)> on_protocol_error;
    // The shared closed counter read `read`, which cannot be true (`reason`:
    // backwards, beyond_handed); `used` was taken instead. Once per run of
    // bad reads, not per read.
    std::function<void(const char* reason, uint64_t read, uint64_t used)> on_counter_clamped;
    // The worker closed its end (end of file), whether or not it is exiting.
    std::function<void()> on_channel_closed;
  };

  // Messages read from one worker in one wake-up of the loop.
  static constexpr int kMaxMessagesPerWakeup = 64;

  // Throws boost::system::system_error when the loop cannot register the
  // socket (EMFILE, ENOMEM from epoll).
  WorkerLink(boost::asio::io_context& io, UniqueFd socket, Handlers handlers);
  ~WorkerLink();
  WorkerLink(const WorkerLink&) = delete;
  WorkerLink& operator=(const WorkerLink&) = delete;

  // Never blocks: a full socket buffer comes back as would_block.
  std::error_code send(std::string_view message, int fd = -1);
  std::error_code send(std::string_view message, std::span<const int> fds);
  // The worker said in its hello that it takes `conns` messages.
  bool takes_batches() const { return takes_batches_; }
  void set_takes_batches(bool yes) { takes_batches_ = yes; }
  void close();
  // The worker asked for a shared counter of finished connections: create
  // one and send it. On failure the worker goes on sending `closed`.
  std::error_code share_closed_counter();
  // Connections the worker has counted as finished in the shared counter
  // (0 without one); `closed` messages are not included. The worker writes
  // that page, so what is read is clamped: never below the last value
  // used, never above the connections sent to this worker.
  uint64_t counted_closed() const;
  // Reads what is already queued (an `exit` sent just before the worker
  // exited), synchronously, before the link goes away.
  void read_remaining() {
    if (!closed_) read_all(false);
  }

  // What a coordinator upgrade carries (docs/supervision.md, "Upgrade"):
  // the socket, the shared counter's memfd (-1 without one) and the counts.
  int fd() { return socket_.native_handle(); }
  int counter_fd() const { return counter_fd_.get(); }
  uint64_t handed() const { return handed_; }
  uint64_t counted() const { return counted_; }
  // The new coordinator takes them back; false (with `ec`) when the
  // counter cannot be mapped.
  bool restore(UniqueFd counter, bool takes_batches, uint64_t handed, uint64_t counted,
               std::error_code& ec);

 private:
  void wait();
  void read_all(bool rearm = true);

  boost::asio::posix::stream_descriptor socket_;
  Handlers handlers_;
  workers::ReadBatching batching_;
  workers::ClosedCounter closed_counter_;
  // Kept open (not only mapped) so that an upgrade can carry the counter.
  UniqueFd counter_fd_;
  // Connections (fds) sent to the worker, and the last counter value used.
  uint64_t handed_ = 0;
  mutable uint64_t counted_ = 0;
  mutable bool clamping_ = false;
  bool takes_batches_ = false;
  bool closed_ = false;
};

}  // namespace occasional::supervisor
