#include "gateway/http_refusal.hpp"

#include <sys/socket.h>

#include <string>

namespace occasional::gateway {

namespace {

struct Refusal {
  std::string_view reason;
  int status;
  std::string_view response;
};

// Bodies and their lengths, spelled out so that each answer is one constant.
constexpr Refusal kRefusals[] = {
    {"malformed", 400,
     "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
     "Connection: close\r\n\r\nbad request\n"},
    {"bad_host", 400,
     "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n"
     "Connection: close\r\n\r\nbad Host\n"},
    {"no_route", 404,
     "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n"
     "Connection: close\r\n\r\nno route\n"},
    {"peek_timeout", 408,
     "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n"
     "Connection: close\r\n\r\nrequest timeout\n"},
    {"too_large", 431,
     "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n"
     "Content-Length: 17\r\nConnection: close\r\n\r\nheader too large\n"},
    {"queue_timeout", 503,
     "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n"
     "Connection: close\r\n\r\nno worker available\n"},
    {"queue_full", 503,
     "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n"
     "Connection: close\r\n\r\nno worker available\n"},
    {"routing_cap", 503,
     "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n"
     "Connection: close\r\n\r\nover capacity\n"},
};

const Refusal* find(std::string_view reason) {
  for (const Refusal& r : kRefusals)
    if (r.reason == reason) return &r;
  return nullptr;
}

}  // namespace

int http_refusal_status(std::string_view reason) {
  const Refusal* r = find(reason);
  return r ? r->status : 0;
}

void send_http_refusal(int fd, std::string_view reason) {
  const Refusal* r = find(reason);
  if (!r) return;
  char scratch[4096];
  bool head_request = false;  // answered without the body (RFC 9110 §9.3.2)
  for (size_t total = 0; total < 64 * 1024;) {
    const ssize_t n = ::recv(fd, scratch, sizeof scratch, MSG_DONTWAIT);
    if (n <= 0) break;
    if (total == 0) head_request = std::string_view(scratch, static_cast<size_t>(n)).starts_with("HEAD ");
    total += static_cast<size_t>(n);
  }
  std::string_view response = r->response;
  if (head_request) response = response.substr(0, response.find("\r\n\r\n") + 4);
  // Errors do not matter: the connection is closed next either way.
  (void)::send(fd, response.data(), response.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

}  // namespace occasional::gateway
