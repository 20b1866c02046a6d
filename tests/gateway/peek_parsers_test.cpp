#include "gateway/peek_parsers.hpp"

#include <gtest/gtest.h>

namespace occasional::gateway {
namespace {

TEST(PeekParsersTest, PrefaceLine) {
  Preface p = parse_preface("echo\r\nrest");
  ASSERT_EQ(p.status, PeekStatus::complete);
  EXPECT_EQ(p.name, "echo");
  EXPECT_EQ(p.consume, 6u);
  EXPECT_EQ(parse_preface("ech").status, PeekStatus::need_more);
  EXPECT_EQ(parse_preface("echo\r").status, PeekStatus::need_more);
  EXPECT_EQ(parse_preface("ec ho\n").status, PeekStatus::invalid);
  EXPECT_EQ(parse_preface("\n").status, PeekStatus::invalid);
  EXPECT_EQ(parse_preface(std::string(65, 'a')).status, PeekStatus::invalid);
}

TEST(PeekParsersTest, HttpHostAndPath) {
  HttpHead h = parse_http_head("GET /a/b?q=1 HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n");
  ASSERT_EQ(h.status, PeekStatus::complete);
  EXPECT_EQ(h.host, "example.com");
  EXPECT_EQ(h.path, "/a/b");
  EXPECT_EQ(parse_http_head("GET / HTTP/1.1\r\nAccept: x\r\n").status, PeekStatus::need_more);
  EXPECT_EQ(parse_http_head("GE").status, PeekStatus::need_more);
  EXPECT_EQ(parse_http_head("\x16\x03\x01").status, PeekStatus::invalid);
  EXPECT_EQ(parse_http_head("GET / HTTP/2.0\r\n\r\n").status, PeekStatus::invalid);
  EXPECT_EQ(parse_http_head("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").status,
            PeekStatus::invalid);
  HttpHead abs = parse_http_head("GET http://proxy.example/x HTTP/1.0\r\n\r\n");
  EXPECT_EQ(abs.host, "proxy.example");
  EXPECT_EQ(abs.path, "/x");
  // Found by the fuzzer: a target that is neither a path nor an absolute URI.
  EXPECT_EQ(parse_http_head("GET http:./a/p HTTP/1.0\r\n\r\n").status, PeekStatus::invalid);
  HttpHead star = parse_http_head("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(star.status, PeekStatus::complete);
  EXPECT_EQ(star.path, "");
  HttpHead connect = parse_http_head("CONNECT h.example:443 HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(connect.status, PeekStatus::complete);
  EXPECT_EQ(connect.path, "");
}

TEST(PeekParsersTest, HttpRoutesOnceTheRequestLineAndHostAreIn) {
  // A long cookie after Host need not arrive before routing.
  HttpHead h = parse_http_head("GET /a HTTP/1.1\r\nHost: h\r\nCookie: " + std::string(5000, 'c'));
  ASSERT_EQ(h.status, PeekStatus::complete);
  EXPECT_EQ(h.host, "h");
  // Before Host, the head must go on.
  EXPECT_EQ(parse_http_head("GET /a HTTP/1.1\r\nCookie: " + std::string(5000, 'c') + "\r\n").status,
            PeekStatus::need_more);
  // A second Host among the lines that did arrive is still seen.
  HttpHead twice = parse_http_head("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nHost: b\r\nY");
  EXPECT_EQ(twice.status, PeekStatus::invalid);
  EXPECT_STREQ(twice.reject_reason, "bad_host");
  EXPECT_EQ(parse_http_head("GET / HTTP/1.1\r\nHost: a\r\n\r\n").status, PeekStatus::complete);
}

// RFC 9112 2.2: a bare CR anywhere in the head is invalid, whether the line
// it is in has ended or not.
TEST(PeekParsersTest, ABareCrIsMalformed) {
  for (const std::string head :
       {"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\rb\r\nHost: a\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\rb", "GET / HTTP/1.1\rHost: a\r\n\r\n"}) {
    HttpHead h = parse_http_head(head);
    EXPECT_EQ(h.status, PeekStatus::invalid) << head;
    EXPECT_STREQ(h.reject_reason, "malformed") << head;
  }
  // A CR at the very end of what has arrived may be the start of CRLF.
  EXPECT_EQ(parse_http_head("GET / HTTP/1.1\r\nX: a\r").status, PeekStatus::need_more);
}

TEST(PeekParsersTest, HttpHostRulesOfRfc9112) {
  auto reason = [](const std::string& head) -> std::string {
    HttpHead h = parse_http_head(head);
    return h.status == PeekStatus::invalid ? h.reject_reason
                                           : (h.status == PeekStatus::complete ? h.host : "?");
  };
  EXPECT_EQ(reason("GET / HTTP/1.1\r\n\r\n"), "bad_host");
  EXPECT_EQ(reason("GET / HTTP/1.0\r\n\r\n"), "");
  EXPECT_EQ(reason("GET / HTTP/1.1\r\nHost: a,b\r\n\r\n"), "bad_host");
  EXPECT_EQ(reason("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), "bad_host");
  EXPECT_EQ(reason("GET / HTTP/1.1\r\nhost: a\r\nHOST: a\r\n\r\n"), "bad_host");
  EXPECT_EQ(reason("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"), "[::1]");
  EXPECT_EQ(reason("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"), "bad_host");
  // The absolute form's authority wins over Host; userinfo is dropped.
  EXPECT_EQ(reason("GET http://A.example:81/x HTTP/1.1\r\nHost: b.example\r\n\r\n"), "a.example");
  EXPECT_EQ(reason("GET http://u@a.example/x HTTP/1.1\r\nHost: b\r\n\r\n"), "a.example");
  EXPECT_EQ(reason("GET http:///x HTTP/1.1\r\nHost: b\r\n\r\n"), "bad_host");
  EXPECT_EQ(reason("GET http://a.example HTTP/1.1\r\n\r\n"), "bad_host");  // 1.1 needs Host
}

TEST(PeekParsersTest, PathsAreNormalisedBeforeMatching) {
  auto norm = [](const std::string& raw) {
    std::string out;
    return normalise_path(raw, out) ? out : std::string("<malformed>");
  };
  EXPECT_EQ(norm("/static/../admin"), "/admin");
  EXPECT_EQ(norm("/a/./b/../../c/"), "/c/");
  EXPECT_EQ(norm("/../../x"), "/x");
  EXPECT_EQ(norm("/a/.."), "/");
  EXPECT_EQ(norm("/a/."), "/a/");
  EXPECT_EQ(norm("/a..b/.c"), "/a..b/.c");
  EXPECT_EQ(norm("/%7Euser/%2e%2E/%61"), "/a");
  EXPECT_EQ(norm("/a%2fb/%2e%2e"), "/");  // %2F stays an escape: one segment
  // Where a server would walk up that RFC 3986 does not: refused.
  EXPECT_EQ(norm("/a%2f..%2fb"), "<malformed>");
  EXPECT_EQ(norm("/static/..%2Fadmin"), "<malformed>");
  EXPECT_EQ(norm("/static/%2e%2e%5cadmin"), "<malformed>");
  EXPECT_EQ(norm("/static/..\\admin"), "<malformed>");
  EXPECT_EQ(norm("/static/..;/admin"), "<malformed>");
  EXPECT_EQ(norm("/static/..;x=1/admin"), "<malformed>");
  // An encoded slash in a name, and dots that are no segment, still pass.
  EXPECT_EQ(norm("/api/projects/group%2fproject"), "/api/projects/group%2Fproject");
  EXPECT_EQ(norm("/a/...%2Fb"), "/a/...%2Fb");
  EXPECT_EQ(norm("/a/b..%2Fc"), "/a/b..%2Fc");
  EXPECT_EQ(norm("/a;..;/b"), "/a;..;/b");
  EXPECT_EQ(norm("/%zz"), "<malformed>");
  EXPECT_EQ(norm("/%4"), "<malformed>");
  EXPECT_EQ(norm("/%"), "<malformed>");
  EXPECT_EQ(norm(""), "");
  HttpHead h = parse_http_head("GET /static/%2E%2E/admin?x=/static/ HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(h.path, "/admin");
  EXPECT_EQ(parse_http_head("GET /%G0 HTTP/1.1\r\nHost: h\r\n\r\n").status, PeekStatus::invalid);
}

std::string u16(size_t v) {
  return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)};
}

std::string client_hello(const std::string& name) {
  std::string list = std::string(1, '\0') + u16(name.size()) + name;
  std::string ext = u16(0) + u16(list.size() + 2) + u16(list.size()) + list;
  std::string body = u16(0x0303) + std::string(32, 'r') + std::string(1, '\0') + u16(2) +
                     u16(0x1301) + std::string(1, '\1') + std::string(1, '\0') + u16(ext.size()) +
                     ext;
  std::string hs = std::string(1, '\1') + std::string(1, '\0') + u16(body.size()) + body;
  return std::string(1, '\x16') + u16(0x0301) + u16(hs.size()) + hs;
}

TEST(PeekParsersTest, TlsServerName) {
  std::string hello = client_hello("Secure.Example");
  ClientHello c = parse_tls_client_hello(hello);
  ASSERT_EQ(c.status, PeekStatus::complete);
  EXPECT_EQ(c.sni, "secure.example");
  for (size_t n = 0; n < hello.size(); ++n)
    EXPECT_EQ(parse_tls_client_hello(hello.substr(0, n)).status, PeekStatus::need_more) << n;
  EXPECT_EQ(parse_tls_client_hello("GET / HTTP/1.1\r\n").status, PeekStatus::invalid);
}

}  // namespace
}  // namespace occasional::gateway
