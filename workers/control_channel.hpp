#pragma once

#include <sys/socket.h>

#include <array>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include "workers/protocol.hpp"
#include "workers/unique_fd.hpp"

namespace occasional::workers {

// Datagram I/O on a SOCK_SEQPACKET control socket, with fds attached
// (SCM_RIGHTS): one with a `conn`, one per connection with a `conns`. Both
// sides of the worker protocol use it.

// Sends one datagram with `fds` attached (at most kMaxConnsPerMessage).
// Non-blocking sockets give would_block (EAGAIN) as an error code; nothing
// is partially sent.
std::error_code send_datagram(int socket, std::string_view payload, std::span<const int> fds);
inline std::error_code send_datagram(int socket, std::string_view payload, int pass_fd = -1) {
  return send_datagram(socket, payload,
                       pass_fd >= 0 ? std::span<const int>(&pass_fd, 1) : std::span<const int>());
}

// The fds that came with one message, held without a heap allocation
// (receive_datagram runs once per handoff on both sides).
class FdList {
 public:
  // Room for more than any message may carry: the extra ones arrive, are
  // owned here, and are closed when the message is refused.
  static constexpr size_t kCapacity = kMaxConnsPerMessage + 8;
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  UniqueFd& operator[](size_t i) { return fds_[i]; }
  // Beyond the capacity the fd is closed at once (it cannot happen with
  // receive_datagram's control buffer).
  void push_back(UniqueFd fd) {
    if (size_ < kCapacity) fds_[size_++] = std::move(fd);
  }
  void clear() {
    for (size_t i = 0; i < size_; ++i) fds_[i].reset();
    size_ = 0;
  }

 private:
  std::array<UniqueFd, kCapacity> fds_;
  size_t size_ = 0;
};

// closed: the peer closed its end (EOF, or ECONNRESET when it left our
// messages unread).
enum class ReceiveStatus { message, would_block, closed, bad_message, error };

struct Received {
  ReceiveStatus status = ReceiveStatus::error;
  std::string_view payload;  // valid until the next receive_datagram on this thread
  FdList fds;                // the attached fds, in order
  const char* reason = "";   // bad_message/error: short label for metrics
  std::string error;         // bad_message/error: a sentence for the log
};

// Receives one datagram and checks it strictly: only SOL_SOCKET/SCM_RIGHTS
// control data, no MSG_CTRUNC or MSG_TRUNC, at most `max_fds` fds. A message
// that fails a check is bad_message, and any fds that came with it are closed.
Received receive_datagram(int socket, size_t max_fds = 1);

// The one walk over what recvmsg put in `msg`'s control data: each fd passed
// with SCM_RIGHTS goes to `take_fd` as a UniqueFd, so that none leaks
// whatever the caller then decides; every other control message goes to
// `other` (a const cmsghdr&).
template <typename TakeFd, typename Other>
void for_each_control_message(msghdr& msg, TakeFd&& take_fd, Other&& other) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
      other(static_cast<const cmsghdr&>(*c));
      continue;
    }
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      take_fd(UniqueFd(fd));
    }
  }
}

}  // namespace occasional::workers
