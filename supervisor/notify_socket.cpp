#include "supervisor/notify_socket.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "workers/control_channel.hpp"
#include "workers/unique_fd.hpp"

namespace occasional::supervisor {

namespace {

int open_socket(std::string& address) {
  static std::atomic<int> counter{0};
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd)
    throw std::runtime_error(std::string("socket(AF_UNIX) for NOTIFY_SOCKET failed: ") +
                             std::strerror(errno));
  address = "@occasional-notify-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, address.data(), address.size());
  addr.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0)
    throw std::runtime_error("bind() of NOTIFY_SOCKET " + address +
                             " failed: " + std::strerror(errno));
  int one = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0)
    throw std::runtime_error(std::string("setsockopt(SO_PASSCRED) on NOTIFY_SOCKET failed: ") +
                             std::strerror(errno));
  return fd.release();
}

}  // namespace

NotifySocket::NotifySocket(boost::asio::io_context& io, Handler handler, Rejected rejected)
    : socket_(io), handler_(std::move(handler)), rejected_(std::move(rejected)) {
  socket_.assign(open_socket(address_));
  wait();
}

void NotifySocket::wait() {
  socket_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                     [this](const boost::system::error_code& ec) {
                       if (!ec) read_all();
                     });
}

void NotifySocket::read_all() {
  for (;;) {
    char buf[4096];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int) * 8)];
    iovec iov{buf, sizeof buf};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(socket_.native_handle(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;  // EAGAIN: all read
    }
    const ucred* cred = nullptr;
    // Nobody passes fds here (FDSTORE is not supported): they close at once.
    workers::for_each_control_message(
        msg, [](UniqueFd) {},
        [&cred](const cmsghdr& c) {
          if (c.cmsg_level == SOL_SOCKET && c.cmsg_type == SCM_CREDENTIALS &&
              c.cmsg_len >= CMSG_LEN(sizeof(ucred)))
            cred = reinterpret_cast<const ucred*>(CMSG_DATA(&c));
        });
    if (!cred) {
      rejected_("no_credentials");
      continue;
    }
    if (msg.msg_flags & MSG_TRUNC) {
      rejected_("too_large");
      continue;
    }
    std::string_view text(buf, static_cast<size_t>(n));
    while (!text.empty()) {
      auto nl = text.find('\n');
      std::string_view line = text.substr(0, nl);
      if (!line.empty()) handler_(cred->pid, line);
      if (nl == std::string_view::npos) break;
      text.remove_prefix(nl + 1);
    }
  }
  wait();
}

}  // namespace occasional::supervisor
