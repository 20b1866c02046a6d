#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace occasional::gateway {

// Pure parsers of a connection's first bytes, read with MSG_PEEK before the
// handoff. Each looks only at what it is given and says whether that was
// enough. Each has a libFuzzer target in tests/fuzz.

enum class PeekStatus {
  complete,   // the fields below are set
  need_more,  // a prefix of something valid: peek again when more bytes arrive
  invalid,    // cannot become valid: close and count
};

// A preface line: the service name, then "\n" or "\r\n". Names are 1-64 bytes
// of [A-Za-z0-9._-]. `consume` is the line's length with its end: the
// gateway reads (removes) exactly that, so the worker sees what follows.
struct Preface {
  PeekStatus status = PeekStatus::need_more;
  std::string_view name;
  size_t consume = 0;
};
Preface parse_preface(std::string_view bytes);

// The start of an HTTP/1.x request: complete once the request line and the
// Host header are in (the rest of the head may still be on its way), or at
// the end of a head without Host (HTTP/1.0). `host` is the authority of an
// absolute-form target if there is one (RFC 9112 3.2.2), else the Host
// header, without port, lowercased. `path` is the target's path, normalised
// (normalise_path); the worker still reads the request as sent. Invalid
// with `reject_reason` "bad_host" for a missing (HTTP/1.1), repeated or
// list-valued Host (RFC 9112 3.2), else "malformed".
struct HttpHead {
  PeekStatus status = PeekStatus::need_more;
  std::string host;
  std::string path;
  const char* reject_reason = "";
};
// Percent-decodes unreserved characters (other escapes keep upper-case hex)
// and removes dot segments (RFC 3986 6.2.2 and 5.2.4), so that a path
// prefix matches what a server resolves: "/static/../admin" is "/admin".
// False for a malformed escape.
bool normalise_path(std::string_view raw, std::string& out);
HttpHead parse_http_head(std::string_view bytes);

// The server name (SNI, host_name type) from a TLS ClientHello. `sni` is
// empty when the hello has no server_name extension (still complete).
struct ClientHello {
  PeekStatus status = PeekStatus::need_more;
  std::string sni;
};
ClientHello parse_tls_client_hello(std::string_view bytes);

}  // namespace occasional::gateway
