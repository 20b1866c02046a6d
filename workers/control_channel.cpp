#include "workers/control_channel.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "workers/protocol.hpp"

namespace occasional::workers {

std::error_code send_datagram(int socket, std::string_view payload, std::span<const int> fds) {
  if (payload.size() > kMaxMessageBytes) return std::make_error_code(std::errc::message_size);
  if (fds.size() > kMaxConnsPerMessage)
    return std::make_error_code(std::errc::argument_out_of_domain);
  iovec iov{const_cast<char*>(payload.data()), payload.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxConnsPerMessage)];
  if (!fds.empty()) {
    const size_t bytes = sizeof(int) * fds.size();
    std::memset(control, 0, CMSG_SPACE(bytes));
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(bytes);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(bytes);
    std::memcpy(CMSG_DATA(c), fds.data(), bytes);
  }
  ssize_t n;
  do {
    n = ::sendmsg(socket, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return {errno, std::system_category()};
  return {};
}

Received receive_datagram(int socket, size_t max_fds) {
  thread_local std::vector<char> buffer(kMaxMessageBytes);
  // Room for more fds than allowed, so that extra ones arrive (and are
  // closed here) instead of being cut off with MSG_CTRUNC.
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * FdList::kCapacity)];
  iovec iov{buffer.data(), buffer.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  Received r;
  ssize_t n;
  do {
    n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      r.status = ReceiveStatus::would_block;
    } else if (errno == ECONNRESET) {
      // The peer closed its end with messages of ours still unread (a
      // worker killed with handoffs in flight): an end, like EOF, not a
      // broken message.
      r.status = ReceiveStatus::closed;
    } else {
      r.status = ReceiveStatus::error;
      r.reason = "recvmsg";
      r.error = std::string("recvmsg() failed: ") + std::strerror(errno);
    }
    return r;
  }
  // Take ownership of every fd that arrived before judging the message.
  FdList& fds = r.fds;
  bool foreign_control = false;
  for_each_control_message(
      msg, [&fds](UniqueFd fd) { fds.push_back(std::move(fd)); },
      [&foreign_control](const cmsghdr&) { foreign_control = true; });
  auto bad = [&](const char* reason, std::string error) {
    fds.clear();  // refused: its fds close now
    r.status = ReceiveStatus::bad_message;
    r.reason = reason;
    r.error = std::move(error);
    return std::move(r);
  };
  if (n == 0 && fds.empty()) {
    r.status = ReceiveStatus::closed;
    return r;
  }
  if (msg.msg_flags & MSG_CTRUNC) return bad("ctrunc", "control data was truncated (MSG_CTRUNC)");
  if (msg.msg_flags & MSG_TRUNC)
    return bad("too_large", "message larger than " + std::to_string(kMaxMessageBytes) + " bytes");
  if (foreign_control) return bad("foreign_cmsg", "unexpected control message (not SCM_RIGHTS)");
  if (fds.size() > max_fds)
    return bad("too_many_fds", std::to_string(fds.size()) + " fds attached; at most " +
                                   std::to_string(max_fds) + " allowed");
  if (n == 0) return bad("empty", "empty message");
  r.status = ReceiveStatus::message;
  r.payload = std::string_view(buffer.data(), static_cast<size_t>(n));
  return r;
}

}  // namespace occasional::workers
