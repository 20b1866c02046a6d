#include "gateway/route_table.hpp"

#include <stdexcept>

namespace occasional::gateway {

const char* route_kind_name(RouteKind kind) {
  switch (kind) {
    case RouteKind::default_route:
      return "default";
    case RouteKind::preface:
      return "preface";
    case RouteKind::http:
      return "http";
    case RouteKind::tls_sni:
      return "tls_sni";
  }
  return "?";
}

bool host_matches(std::string_view pattern, std::string_view host) {
  if (pattern.starts_with("*.")) {
    std::string_view suffix = pattern.substr(1);  // ".example.com"
    return host.size() > suffix.size() && host.ends_with(suffix);
  }
  return pattern == host;
}

RouteTable::RouteTable(std::vector<Route> routes) : routes_(std::move(routes)) {
  for (const Route& r : routes_) {
    if (r.kind == RouteKind::default_route) {
      if (!default_) default_ = &r;
      continue;
    }
    if (peek_kind_ != RouteKind::default_route && peek_kind_ != r.kind)
      throw std::invalid_argument(std::string("routes mix kinds '") + route_kind_name(peek_kind_) +
                                  "' and '" + route_kind_name(r.kind) +
                                  "': use one kind per listener (plus 'default')");
    peek_kind_ = r.kind;
  }
}

RouteDecision RouteTable::decide(std::string_view bytes) const {
  RouteDecision d;
  auto fallback = [&](const char* reason) {
    if (default_) {
      d.status = PeekStatus::complete;
      d.route = default_;
      d.consume = 0;
    } else {
      d.status = PeekStatus::invalid;
      d.reject_reason = reason;
    }
    return d;
  };
  switch (peek_kind_) {
    case RouteKind::default_route:
      d.status = default_ ? PeekStatus::complete : PeekStatus::invalid;
      d.route = default_;
      d.reject_reason = "no_route";
      return d;
    case RouteKind::preface: {
      Preface p = parse_preface(bytes);
      if (p.status == PeekStatus::need_more) return d;
      if (p.status == PeekStatus::invalid) return fallback("malformed");
      for (const Route& r : routes_)
        if (r.kind == RouteKind::preface && r.preface == p.name) {
          d.status = PeekStatus::complete;
          d.route = &r;
          d.consume = p.consume;
          return d;
        }
      // The line was meant as a preface: consume nothing, and let a default
      // route have the connection as it came, or close it.
      return fallback("no_route");
    }
    case RouteKind::http: {
      HttpHead h = parse_http_head(bytes);
      if (h.status == PeekStatus::need_more) return d;
      // A request with a bad Host is answered 400 whatever the routes: a
      // default route must not hand a worker a Host it would take differently.
      if (h.status == PeekStatus::invalid && std::string_view(h.reject_reason) == "bad_host") {
        d.status = PeekStatus::invalid;
        d.reject_reason = h.reject_reason;
        return d;
      }
      if (h.status == PeekStatus::invalid) return fallback("malformed");
      for (const Route& r : routes_)
        if (r.kind == RouteKind::http && (r.host.empty() || host_matches(r.host, h.host)) &&
            h.path.starts_with(r.path_prefix)) {
          d.status = PeekStatus::complete;
          d.route = &r;
          return d;
        }
      return fallback("no_route");
    }
    case RouteKind::tls_sni: {
      ClientHello c = parse_tls_client_hello(bytes);
      if (c.status == PeekStatus::need_more) return d;
      if (c.status == PeekStatus::invalid) return fallback("malformed");
      for (const Route& r : routes_)
        if (r.kind == RouteKind::tls_sni && !c.sni.empty() && host_matches(r.server_name, c.sni)) {
          d.status = PeekStatus::complete;
          d.route = &r;
          return d;
        }
      return fallback("no_route");
    }
  }
  return d;
}

}  // namespace occasional::gateway
