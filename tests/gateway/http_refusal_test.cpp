#include "gateway/http_refusal.hpp"

#include <sys/socket.h>

#include <gtest/gtest.h>
#include <string>

#include "workers/unique_fd.hpp"

namespace occasional::gateway {
namespace {

// What the client reads after the gateway answered `reason` and closed.
std::string answer(const std::string& reason, const std::string& client_sent) {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd client(sv[0]);
  {
    UniqueFd gateway_end(sv[1]);
    if (!client_sent.empty()) {
      EXPECT_EQ(::send(client.get(), client_sent.data(), client_sent.size(), 0),
                static_cast<ssize_t>(client_sent.size()));
    }
    send_http_refusal(gateway_end.get(), reason);
  }
  std::string out;
  char buf[1024];
  ssize_t n;
  while ((n = ::recv(client.get(), buf, sizeof buf, 0)) > 0)
    out.append(buf, static_cast<size_t>(n));
  return out;
}

TEST(HttpRefusalTest, EachHttpRejectionHasItsStatusAndAConsistentCloseResponse) {
  const std::pair<const char*, int> cases[] = {
      {"malformed", 400}, {"bad_host", 400},      {"no_route", 404},   {"peek_timeout", 408},
      {"too_large", 431}, {"queue_timeout", 503}, {"queue_full", 503}, {"routing_cap", 503},
  };
  for (auto [reason, status] : cases) {
    EXPECT_EQ(http_refusal_status(reason), status) << reason;
    const std::string r = answer(reason, "GET / HTTP/1.1\r\n");
    ASSERT_TRUE(r.starts_with("HTTP/1.1 " + std::to_string(status) + " ")) << r;
    EXPECT_NE(r.find("\r\nConnection: close\r\n"), std::string::npos) << r;
    const auto head_end = r.find("\r\n\r\n");
    ASSERT_NE(head_end, std::string::npos);
    const auto cl = r.find("Content-Length: ");
    ASSERT_NE(cl, std::string::npos);
    EXPECT_EQ(std::stoul(r.substr(cl + 16)), r.size() - head_end - 4) << reason;
  }
}

// RFC 9110 §9.3.2: the answer to HEAD has the head GET would get, no body.
TEST(HttpRefusalTest, AHeadRequestGetsTheHeadWithoutTheBody) {
  for (const char* reason : {"malformed", "no_route", "queue_timeout"}) {
    const std::string get = answer(reason, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    const std::string head = answer(reason, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_NE(get.find("\r\n\r\n"), std::string::npos) << get;
    EXPECT_EQ(head, get.substr(0, get.find("\r\n\r\n") + 4)) << reason;
    EXPECT_NE(head.find("Content-Length: "), std::string::npos) << head;
  }
}

TEST(HttpRefusalTest, OtherReasonsGetNoAnswer) {
  for (const char* reason : {"closed_before_route", "peek_error", "shutdown", "internal_error"}) {
    EXPECT_EQ(http_refusal_status(reason), 0) << reason;
    EXPECT_EQ(answer(reason, ""), "") << reason;
  }
}

}  // namespace
}  // namespace occasional::gateway
