#include "tests/integration/http_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>

#include "workers/unique_fd.hpp"

namespace occasional::testing {

namespace {

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

}  // namespace

std::string raw_exchange(int port, const std::string& bytes, std::chrono::milliseconds timeout,
                         bool half_close) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a = loopback(port);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return {};
  size_t sent = 0;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string out;
  char buf[16384];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd.get(), static_cast<short>(POLLIN | (sent < bytes.size() ? POLLOUT : 0)), 0};
    if (::poll(&p, 1, 10) <= 0) continue;
    if (p.revents & POLLIN) {
      ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    } else if (p.revents & POLLOUT) {
      ssize_t n = ::send(fd.get(), bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
      if (sent == bytes.size() && half_close) ::shutdown(fd.get(), SHUT_WR);
    } else {
      break;
    }
  }
  return out;
}

HttpReply http_request(int port, const std::string& method, const std::string& target,
                       const std::string& extra_headers, const std::string& body,
                       std::chrono::milliseconds timeout) {
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n" +
                    extra_headers + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
                    body;
  const std::string in = raw_exchange(port, req, timeout, false);
  HttpReply r;
  if (in.size() < 12 || !in.starts_with("HTTP/1.")) return r;
  r.status = std::atoi(in.c_str() + 9);
  const auto end = in.find("\r\n\r\n");
  r.head = in.substr(0, end);
  if (end != std::string::npos) r.body = in.substr(end + 4);
  return r;
}

UniqueFd connect_loopback(int port, bool rst_on_close) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return {};
  if (rst_on_close) {
    linger l{1, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  sockaddr_in a = loopback(port);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return {};
  return fd;
}

ClosedPort::ClosedPort() : fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
  sockaddr_in a = loopback(0);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return;
  socklen_t len = sizeof a;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
}

}  // namespace occasional::testing
