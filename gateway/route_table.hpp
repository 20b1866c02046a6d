#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "gateway/peek_parsers.hpp"

namespace occasional::gateway {

enum class RouteKind { default_route, preface, http, tls_sni };

const char* route_kind_name(RouteKind kind);

struct Route {
  RouteKind kind = RouteKind::default_route;
  std::string service;
  std::string preface;      // preface: the first line that selects this route
  std::string host;         // http: exact host, or "*.example.com"; empty: any
  std::string path_prefix;  // http: empty: any
  std::string server_name;  // tls_sni: exact, or "*.example.com"
};

struct RouteDecision {
  PeekStatus status = PeekStatus::need_more;
  const Route* route = nullptr;    // complete
  size_t consume = 0;              // bytes to remove before the handoff (preface)
  const char* reject_reason = "";  // invalid: "malformed", "bad_host" or "no_route"
};

// The routes of one listener, in order. All peeking routes of a listener are
// of one kind (the bytes are parsed one way); a `default` route, if any, takes
// whatever matches none of them.
class RouteTable {
 public:
  explicit RouteTable(std::vector<Route> routes);

  bool needs_peek() const { return peek_kind_ != RouteKind::default_route; }
  RouteKind peek_kind() const { return peek_kind_; }
  const Route* default_route() const { return default_; }
  const std::vector<Route>& routes() const { return routes_; }
  // Pure: what to do with a connection whose first bytes are `bytes`.
  RouteDecision decide(std::string_view bytes) const;

 private:
  std::vector<Route> routes_;
  RouteKind peek_kind_ = RouteKind::default_route;
  const Route* default_ = nullptr;
};

// "*.example.com" matches "a.example.com" (not "example.com"); otherwise exact.
bool host_matches(std::string_view pattern, std::string_view host);

}  // namespace occasional::gateway
