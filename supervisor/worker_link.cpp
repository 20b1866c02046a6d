#include "supervisor/worker_link.hpp"

#include "workers/control_channel.hpp"

namespace occasional::supervisor {

WorkerLink::WorkerLink(boost::asio::io_context& io, UniqueFd socket, Handlers handlers)
    : socket_(io), handlers_(std::move(handlers)) {
  // Throws when the loop cannot register the socket; `socket` then still
  // owns (and closes) the fd.
  socket_.assign(socket.get());
  socket.release();
  wait();
}

WorkerLink::~WorkerLink() {
  close();
}

void WorkerLink::close() {
  closed_ = true;
  boost::system::error_code ec;
  socket_.close(ec);
}

std::error_code WorkerLink::send(std::string_view message, int fd) {
  return send(message, fd >= 0 ? std::span<const int>(&fd, 1) : std::span<const int>());
}

std::error_code WorkerLink::send(std::string_view message, std::span<const int> fds) {
  if (closed_) return std::make_error_code(std::errc::not_connected);
  std::error_code ec = workers::send_datagram(socket_.native_handle(), message, fds);
  // Every fd sent through here is a connection (`conn`, `conns`).
  if (!ec) handed_ += fds.size();
  return ec;
}

uint64_t WorkerLink::counted_closed() const {
  if (!closed_counter_.valid()) return 0;
  const uint64_t read = closed_counter_.value();
  const char* reason = nullptr;
  uint64_t used = read;
  if (read < counted_) {
    reason = "backwards";
    used = counted_;
  } else if (read > handed_) {
    reason = "beyond_handed";
    used = handed_;
  }
  counted_ = used;
  if (reason && !clamping_ && handlers_.on_counter_clamped)
    handlers_.on_counter_clamped(reason, read, used);
  clamping_ = reason != nullptr;
  return used;
}

std::error_code WorkerLink::share_closed_counter() {
  if (closed_counter_.valid()) return {};  // asked twice: it has one
  std::error_code ec;
  UniqueFd fd;
  workers::ClosedCounter counter = workers::ClosedCounter::create(fd, ec);
  if (ec) return ec;
  // Not through send(): this fd is not a connection.
  const int fds[1] = {fd.get()};
  if (closed_) return std::make_error_code(std::errc::not_connected);
  if ((ec = workers::send_datagram(socket_.native_handle(), workers::encode_closed_counter(), fds)))
    return ec;
  closed_counter_ = std::move(counter);
  counter_fd_ = std::move(fd);
  return {};
}

bool WorkerLink::restore(UniqueFd counter, bool takes_batches, uint64_t handed, uint64_t counted,
                         std::error_code& ec) {
  takes_batches_ = takes_batches;
  handed_ = handed;
  counted_ = counted;
  if (!counter) return true;
  closed_counter_ = workers::ClosedCounter::map(counter.get(), ec);
  if (ec) return false;
  counter_fd_ = std::move(counter);
  return true;
}

void WorkerLink::wait() {
  socket_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                     [this](const boost::system::error_code& ec) {
                       if (ec || closed_) return;
                       read_all();
                     });
}

void WorkerLink::read_all(bool rearm) {
  // While rearm, one message per wake-up when they come one at a time
  // (workers/read_batching.hpp): the recvmsg that finds the socket empty
  // would come after the handoff's `closed` and before we sleep.
  // At most kMaxMessagesPerWakeup, then the loop serves others first: a
  // worker sending without pause cannot keep it to itself (epoll reports
  // the socket again at once while messages remain).
  for (int taken = 0;; ++taken) {
    if (rearm && taken == kMaxMessagesPerWakeup) return wait();
    workers::Received r = workers::receive_datagram(socket_.native_handle());
    switch (r.status) {
      case workers::ReceiveStatus::would_block:
        if (rearm) {
          batching_.found_empty();
          wait();
        }
        return;
      // The worker closed its end. Whether it is exiting is the service's to
      // find out; the socket stays readable at EOF, so it is not waited on again.
      case workers::ReceiveStatus::closed:
        if (rearm && handlers_.on_channel_closed) handlers_.on_channel_closed();
        return;
      case workers::ReceiveStatus::bad_message:
      case workers::ReceiveStatus::error:
        handlers_.on_protocol_error(r.reason, r.error);
        return;
      case workers::ReceiveStatus::message:
        break;
    }
    std::string reason, error;
    auto message = workers::decode_message(r.payload, reason, error);
    if (!message) {
      handlers_.on_protocol_error(reason.c_str(), error);
      return;
    }
    if (!r.fds.empty()) {
      handlers_.on_protocol_error("unexpected_fd", "a worker sent an fd, which no message carries");
      return;
    }
    handlers_.on_message(*message);
    // A handler may have closed the link (an exit, a protocol error).
    if (closed_) return;
    if (rearm && batching_.wait_after_item()) return wait();
  }
}

}  // namespace occasional::supervisor
