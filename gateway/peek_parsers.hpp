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

// The head of an HTTP/1.x request: the request line and headers up to the
// blank line. `host` is the Host header without port, lowercased; `path` is
// the request target's path (origin form, or the path of an absolute URI).
struct HttpHead {
  PeekStatus status = PeekStatus::need_more;
  std::string host;
  std::string path;
};
HttpHead parse_http_head(std::string_view bytes);

// The server name (SNI, host_name type) from a TLS ClientHello. `sni` is
// empty when the hello has no server_name extension (still complete).
struct ClientHello {
  PeekStatus status = PeekStatus::need_more;
  std::string sni;
};
ClientHello parse_tls_client_hello(std::string_view bytes);

}  // namespace occasional::gateway
