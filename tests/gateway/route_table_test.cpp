#include "gateway/route_table.hpp"

#include <gtest/gtest.h>

namespace occasional::gateway {
namespace {

TEST(HostMatchesTest, ExactOrOneWildcardLabelOrMore) {
  EXPECT_TRUE(host_matches("api.example", "api.example"));
  EXPECT_FALSE(host_matches("api.example", "www.api.example"));
  EXPECT_FALSE(host_matches("api.example", "api.example.evil"));
  EXPECT_TRUE(host_matches("*.example.com", "a.example.com"));
  EXPECT_TRUE(host_matches("*.example.com", "a.b.example.com"));
  EXPECT_FALSE(host_matches("*.example.com", "example.com"));
  EXPECT_FALSE(host_matches("*.example.com", ".example.com"));
  EXPECT_FALSE(host_matches("*.example.com", "aexample.com"));
  EXPECT_FALSE(host_matches("", "x"));
  EXPECT_TRUE(host_matches("", ""));
}

TEST(RouteTableTest, MixingPeekKindsOnOneListenerIsRefused) {
  EXPECT_THROW(RouteTable({Route{RouteKind::preface, "a", "a", "", "", ""},
                           Route{RouteKind::http, "b", "", "", "", ""}}),
               std::invalid_argument);
  EXPECT_NO_THROW(RouteTable({Route{RouteKind::http, "a", "", "", "", ""},
                              Route{RouteKind::default_route, "b", "", "", "", ""}}));
}

TEST(RouteTableTest, DefaultOnlyNeedsNoPeekAndTakesEverything) {
  RouteTable t({Route{RouteKind::default_route, "a", "", "", "", ""}});
  EXPECT_FALSE(t.needs_peek());
  RouteDecision d = t.decide("");
  ASSERT_EQ(d.status, PeekStatus::complete);
  EXPECT_EQ(d.route->service, "a");
  RouteTable empty({});
  EXPECT_EQ(empty.decide("x").status, PeekStatus::invalid);
  EXPECT_STREQ(empty.decide("x").reject_reason, "no_route");
}

TEST(RouteTableTest, PrefaceRoutesInOrderAndConsumesTheLine) {
  RouteTable t({Route{RouteKind::preface, "a", "alpha", "", "", ""},
                Route{RouteKind::preface, "b", "beta", "", "", ""}});
  EXPECT_TRUE(t.needs_peek());
  EXPECT_EQ(t.decide("bet").status, PeekStatus::need_more);
  RouteDecision d = t.decide("beta\r\nrest");
  ASSERT_EQ(d.status, PeekStatus::complete);
  EXPECT_EQ(d.route->service, "b");
  EXPECT_EQ(d.consume, 6u);
  d = t.decide("gamma\n");
  EXPECT_EQ(d.status, PeekStatus::invalid);
  EXPECT_STREQ(d.reject_reason, "no_route");
  d = t.decide("no spaces\n");
  EXPECT_EQ(d.status, PeekStatus::invalid);
  EXPECT_STREQ(d.reject_reason, "malformed");
}

TEST(RouteTableTest, AFallbackDefaultTakesUnmatchedAndMalformedUnconsumed) {
  RouteTable t({Route{RouteKind::preface, "a", "alpha", "", "", ""},
                Route{RouteKind::default_route, "d", "", "", "", ""}});
  for (const char* bytes : {"gamma\n", "not a preface\n"}) {
    RouteDecision d = t.decide(bytes);
    ASSERT_EQ(d.status, PeekStatus::complete) << bytes;
    EXPECT_EQ(d.route->service, "d");
    EXPECT_EQ(d.consume, 0u);
  }
}

TEST(RouteTableTest, HttpMatchesHostThenPathPrefixInOrder) {
  RouteTable t({Route{RouteKind::http, "api", "", "api.example", "", ""},
                Route{RouteKind::http, "static", "", "", "/static/", ""},
                Route{RouteKind::http, "wild", "", "*.example", "", ""}});
  auto service = [&t](const std::string& head) -> std::string {
    RouteDecision d = t.decide(head);
    if (d.status != PeekStatus::complete) return d.reject_reason;
    return d.route->service;
  };
  EXPECT_EQ(service("GET /static/a HTTP/1.1\r\nHost: API.example:80\r\n\r\n"), "api");
  EXPECT_EQ(service("GET /static/a HTTP/1.1\r\nHost: other\r\n\r\n"), "static");
  EXPECT_EQ(service("GET /x HTTP/1.1\r\nHost: w.example\r\n\r\n"), "wild");
  EXPECT_EQ(service("GET /x HTTP/1.1\r\nHost: other\r\n\r\n"), "no_route");
  EXPECT_EQ(service("GARBAGE\r\n\r\n"), "malformed");
}

TEST(RouteTableTest, HttpPathPrefixesMatchTheNormalisedPath) {
  RouteTable t({Route{RouteKind::http, "static", "", "", "/static/", ""},
                Route{RouteKind::default_route, "app", "", "", "", ""}});
  auto service = [&t](const std::string& target) -> std::string {
    RouteDecision d = t.decide("GET " + target + " HTTP/1.1\r\nHost: h\r\n\r\n");
    if (d.status != PeekStatus::complete) return d.reject_reason;
    return d.route->service;
  };
  EXPECT_EQ(service("/static/a.css"), "static");
  // Dot segments leave the prefix: not the static service's to serve.
  EXPECT_EQ(service("/static/../admin"), "app");
  EXPECT_EQ(service("/static/%2e%2e/admin"), "app");
  EXPECT_EQ(service("/static/./../admin"), "app");
  // ... and may enter it.
  EXPECT_EQ(service("/x/../static/a"), "static");
  EXPECT_EQ(service("/%73tatic/a"), "static");
  EXPECT_EQ(service("/static/sub/../a"), "static");
}

TEST(RouteTableTest, AnAbsoluteFormTargetsAuthorityWinsOverHost) {
  RouteTable t({Route{RouteKind::http, "api", "", "api.example", "", ""},
                Route{RouteKind::http, "web", "", "web.example", "", ""}});
  RouteDecision d = t.decide("GET http://api.example/x HTTP/1.1\r\nHost: web.example\r\n\r\n");
  ASSERT_EQ(d.status, PeekStatus::complete);
  EXPECT_EQ(d.route->service, "api");
}

TEST(RouteTableTest, AMissingRepeatedOrListHostIsBadHostEvenWithADefault) {
  RouteTable t({Route{RouteKind::http, "api", "", "api.example", "", ""},
                Route{RouteKind::default_route, "app", "", "", "", ""}});
  for (const char* head :
       {"GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"}) {
    RouteDecision d = t.decide(head);
    EXPECT_EQ(d.status, PeekStatus::invalid) << head;
    EXPECT_STREQ(d.reject_reason, "bad_host") << head;
  }
  // HTTP/1.0 needs no Host.
  RouteDecision d = t.decide("GET / HTTP/1.0\r\n\r\n");
  ASSERT_EQ(d.status, PeekStatus::complete);
  EXPECT_EQ(d.route->service, "app");
}

TEST(RouteTableTest, TlsMatchesTheServerNameAndAHelloWithoutOneIsNoRoute) {
  RouteTable t({Route{RouteKind::tls_sni, "s", "", "", "", "*.secure"}});
  EXPECT_EQ(t.decide("\x16\x03").status, PeekStatus::need_more);
  EXPECT_STREQ(t.decide("GET / HTTP/1.1\r\n").reject_reason, "malformed");
}

}  // namespace
}  // namespace occasional::gateway
