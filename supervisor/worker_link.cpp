#include "supervisor/worker_link.hpp"

#include "workers/control_channel.hpp"

namespace occasional::supervisor {

WorkerLink::WorkerLink(boost::asio::io_context& io, UniqueFd socket, Handlers handlers)
    : socket_(io, socket.release()), handlers_(std::move(handlers)) {
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
  return workers::send_datagram(socket_.native_handle(), message, fds);
}

std::error_code WorkerLink::share_closed_counter() {
  if (closed_counter_.valid()) return {};  // asked twice: it has one
  std::error_code ec;
  UniqueFd fd;
  workers::ClosedCounter counter = workers::ClosedCounter::create(fd, ec);
  if (ec) return ec;
  if ((ec = send(workers::encode_closed_counter(), fd.get()))) return ec;
  closed_counter_ = std::move(counter);
  return {};
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
  for (;;) {
    workers::Received r = workers::receive_datagram(socket_.native_handle());
    switch (r.status) {
      case workers::ReceiveStatus::would_block:
        if (rearm) {
          batching_.found_empty();
          wait();
        }
        return;
      // The worker closed its end; its exit arrives through the pidfd.
      case workers::ReceiveStatus::closed:
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
