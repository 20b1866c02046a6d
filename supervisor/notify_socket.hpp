#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <functional>
#include <string>
#include <string_view>

namespace occasional::supervisor {

// The coordinator's NOTIFY_SOCKET, as systemd's Type=notify: a datagram
// socket in the abstract namespace that listen_fds workers send
// "READY=1\nSTATUS=...\n" to. The sender's pid comes from SCM_CREDENTIALS,
// checked by the kernel, never from the message.
class NotifySocket {
 public:
  // Called once per "KEY=VALUE" line, with the sender's pid.
  using Handler = std::function<void(pid_t pid, std::string_view assignment)>;
  // Called for datagrams without credentials or too large (a counted reason).
  using Rejected = std::function<void(const char* reason)>;

  NotifySocket(boost::asio::io_context& io, Handler handler, Rejected rejected);
  // The NOTIFY_SOCKET value: "@occasional-notify-<pid>-<n>".
  const std::string& address() const { return address_; }

 private:
  void wait();
  void read_all();

  boost::asio::posix::stream_descriptor socket_;
  std::string address_;
  Handler handler_;
  Rejected rejected_;
};

}  // namespace occasional::supervisor
