#include "gateway/peek_parsers.hpp"

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <vector>

namespace occasional::gateway {

namespace {

constexpr size_t kMaxPrefaceName = 64;

bool preface_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}

bool token_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

Preface parse_preface(std::string_view bytes) {
  Preface p;
  size_t i = 0;
  for (; i < bytes.size() && i <= kMaxPrefaceName; ++i) {
    char c = bytes[i];
    if (c == '\n' || c == '\r') break;
    if (!preface_char(c)) {
      p.status = PeekStatus::invalid;
      return p;
    }
  }
  if (i > kMaxPrefaceName) {
    p.status = PeekStatus::invalid;
    return p;
  }
  if (i == bytes.size()) return p;  // need more
  if (i == 0) {
    p.status = PeekStatus::invalid;
    return p;
  }
  size_t end = i;
  if (bytes[i] == '\r') {
    if (i + 1 == bytes.size()) return p;
    if (bytes[i + 1] != '\n') {
      p.status = PeekStatus::invalid;
      return p;
    }
    end = i + 1;
  }
  p.status = PeekStatus::complete;
  p.name = bytes.substr(0, i);
  p.consume = end + 1;
  return p;
}

namespace {

bool unreserved(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A Host value or an authority: reg-name, IPv4 or an IP literal, and a
// port. A comma is what a proxy leaves when it folds two Host lines into
// one, and whitespace inside means two values: both are conflicting Hosts.
bool host_value_char(char c) {
  return unreserved(c) || std::string_view("%!$&'()*+;=:[]").find(c) != std::string_view::npos;
}

void pop_segment(std::string& out) {
  auto slash = out.rfind('/');
  out.erase(slash == std::string::npos ? 0 : slash);
}

// RFC 3986 5.2.4, over a path whose unreserved characters are decoded.
std::string remove_dot_segments(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  while (!in.empty()) {
    if (in.starts_with("../")) {
      in.remove_prefix(3);
    } else if (in.starts_with("./")) {
      in.remove_prefix(2);
    } else if (in.starts_with("/./")) {
      in.remove_prefix(2);
    } else if (in == "/.") {
      in = "/";
    } else if (in.starts_with("/../")) {
      in.remove_prefix(3);
      pop_segment(out);
    } else if (in == "/..") {
      in = "/";
      pop_segment(out);
    } else if (in == "." || in == "..") {
      in = {};
    } else {
      size_t next = in.find('/', 1);
      if (next == std::string_view::npos) next = in.size();
      out.append(in.substr(0, next));
      in.remove_prefix(next);
    }
  }
  return out;
}

// Whether a segment walks up for a server that reads more into a path than
// RFC 3986 does: "..;" is ".." with a path parameter to Tomcat and Jetty, and
// servers that decode "%2F" (or "%5C", or take "\" as "/") find ".." in
// "a%2F..%2Fb". Only ".." next to such a separator is refused, so that an
// encoded slash in a name (GitLab's "group%2Fproject") still passes.
bool walks_up_elsewhere(std::string_view segment) {
  if (segment.starts_with("..;")) return true;
  bool split = false;
  std::vector<std::string_view> pieces;
  for (;;) {
    size_t at = std::string_view::npos;
    size_t width = 0;
    for (std::string_view sep : {"%2F", "%5C", "\\"}) {
      const size_t found = segment.find(sep);
      if (found < at) {
        at = found;
        width = sep.size();
      }
    }
    pieces.push_back(segment.substr(0, at));
    if (at == std::string_view::npos) break;
    split = true;
    segment.remove_prefix(at + width);
  }
  if (!split) return false;
  return std::any_of(pieces.begin(), pieces.end(),
                     [](std::string_view p) { return p == ".." || p.starts_with("..;"); });
}

}  // namespace

bool normalise_path(std::string_view raw, std::string& out) {
  // Percent-encoded unreserved characters are those characters (RFC 3986
  // 6.2.2.2); other escapes stay, with upper-case hex digits, so that "%2F"
  // is never a segment boundary.
  std::string decoded;
  decoded.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '%') {
      decoded.push_back(raw[i]);
      continue;
    }
    if (i + 2 >= raw.size()) return false;
    const int hi = hex_value(raw[i + 1]);
    const int lo = hex_value(raw[i + 2]);
    if (hi < 0 || lo < 0) return false;
    const char c = static_cast<char>(hi * 16 + lo);
    if (unreserved(c)) {
      decoded.push_back(c);
    } else {
      constexpr char kHex[] = "0123456789ABCDEF";
      decoded.push_back('%');
      decoded.push_back(kHex[hi]);
      decoded.push_back(kHex[lo]);
    }
    i += 2;
  }
  for (std::string_view rest = decoded; !rest.empty();) {
    const size_t slash = rest.find('/');
    if (walks_up_elsewhere(rest.substr(0, slash))) return false;
    rest.remove_prefix(slash == std::string_view::npos ? rest.size() : slash + 1);
  }
  out = remove_dot_segments(decoded);
  return true;
}

HttpHead parse_http_head(std::string_view bytes) {
  HttpHead h;
  auto invalid = [&h](const char* reason) {
    h.status = PeekStatus::invalid;
    h.reject_reason = reason;
    return h;
  };
  // Request line: METHOD SP target SP HTTP/1.x CRLF. Check the prefix as it
  // grows so that non-HTTP is rejected early.
  size_t i = 0;
  while (i < bytes.size() && token_char(bytes[i])) ++i;
  if (i == bytes.size()) {
    if (i > 32) return invalid("malformed");
    return h;
  }
  if (i == 0 || bytes[i] != ' ') return invalid("malformed");
  size_t target_start = ++i;
  while (i < bytes.size() && bytes[i] != ' ' && bytes[i] != '\r' && bytes[i] != '\n') {
    if (static_cast<unsigned char>(bytes[i]) <= 0x20 || bytes[i] == 0x7f)
      return invalid("malformed");
    ++i;
  }
  if (i == bytes.size()) return h;
  if (bytes[i] != ' ' || i == target_start) return invalid("malformed");
  std::string_view target = bytes.substr(target_start, i - target_start);
  ++i;
  constexpr std::string_view kVersion = "HTTP/1.";
  bool http11 = false;
  for (size_t k = 0; k < kVersion.size() + 1; ++k, ++i) {
    if (i == bytes.size()) return h;
    if (k < kVersion.size() ? bytes[i] != kVersion[k] : (bytes[i] != '0' && bytes[i] != '1'))
      return invalid("malformed");
    if (k == kVersion.size()) http11 = bytes[i] == '1';
  }
  if (i + 1 >= bytes.size()) return h;
  if (bytes[i] != '\r' || bytes[i + 1] != '\n') return invalid("malformed");
  i += 2;

  // Request target forms (RFC 9112 3.2): origin "/path", absolute
  // "scheme://authority/path", asterisk "*" and authority "host:port"
  // (CONNECT), which have no path. A route by path prefix needs one.
  std::string_view raw_path;
  std::string_view authority;
  bool absolute = false;
  auto scheme = target.find("://");
  if (target.front() == '/') {
    raw_path = target;
  } else if (scheme != std::string_view::npos && scheme > 0) {
    std::string_view rest = target.substr(scheme + 3);
    auto slash = rest.find_first_of("/?#");
    authority = rest.substr(0, slash);
    if (auto at = authority.rfind('@'); at != std::string_view::npos)
      authority.remove_prefix(at + 1);  // userinfo is no part of the host
    absolute = true;
    raw_path = slash == std::string_view::npos || rest[slash] != '/' ? std::string_view("/")
                                                                     : rest.substr(slash);
  } else if (target.find('/') != std::string_view::npos) {
    return invalid("malformed");  // neither a path nor an authority
  }

  // Headers, as far as they have arrived. Routing needs the request line
  // and Host only: once both are in, the rest of the head may still be on
  // its way (a long cookie, say) and the connection is routed anyway. Every
  // header line that has arrived is still checked, a second Host among them.
  std::string_view host;
  bool have_host = false;
  bool head_complete = false;
  for (;;) {
    size_t eol = bytes.find("\r\n", i);
    if (eol == std::string_view::npos) {
      // A bare LF or other control bytes in what is there make it invalid now.
      // So does a CR that is followed by anything but LF (RFC 9112 2.2).
      for (size_t k = i; k < bytes.size(); ++k)
        if (bytes[k] == '\n' || bytes[k] == '\0' || (bytes[k] == '\r' && k + 1 < bytes.size()))
          return invalid("malformed");
      break;
    }
    std::string_view line = bytes.substr(i, eol - i);
    i = eol + 2;
    if (line.empty()) {
      head_complete = true;
      break;
    }
    auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return invalid("malformed");
    std::string_view name = line.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(), token_char) ||
        line.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos)
      return invalid("malformed");
    if (iequals(name, "host")) {
      // RFC 9112 3.2: two Host lines, or an invalid value, is a 400.
      if (have_host) return invalid("bad_host");
      have_host = true;
      host = trim(line.substr(colon + 1));
      if (!std::all_of(host.begin(), host.end(), host_value_char)) return invalid("bad_host");
    }
  }
  if (!head_complete && !have_host) return h;
  // An HTTP/1.1 request without Host is a 400 (RFC 9112 3.2); 1.0 needs none.
  if (head_complete && !have_host && http11) return invalid("bad_host");

  // An absolute-form target's authority wins over Host (RFC 9112 3.2.2).
  if (absolute) {
    if (authority.empty() || !std::all_of(authority.begin(), authority.end(), host_value_char))
      return invalid("bad_host");
    host = authority;
  }
  auto query = raw_path.find_first_of("?#");
  if (query != std::string_view::npos) raw_path = raw_path.substr(0, query);
  if (!normalise_path(raw_path, h.path)) return invalid("malformed");

  // Strip a port; keep an IPv6 literal's brackets.
  if (!host.empty() && host.front() == '[') {
    auto close = host.find(']');
    if (close == std::string_view::npos) return invalid("bad_host");
    host = host.substr(0, close + 1);
  } else {
    auto colon = host.rfind(':');
    if (colon != std::string_view::npos) host = host.substr(0, colon);
  }
  h.host.reserve(host.size());
  for (char c : host) h.host.push_back(lower(c));
  if (!h.host.empty() && h.host.back() == '.') h.host.pop_back();
  h.status = PeekStatus::complete;
  return h;
}

namespace {

// Bounds-checked big-endian reads over a view; any overrun sets `short_`.
struct Reader {
  std::string_view b;
  size_t pos = 0;
  bool short_ = false;

  uint32_t read(size_t n) {
    if (pos + n > b.size()) {
      short_ = true;
      pos = b.size();
      return 0;
    }
    uint32_t v = 0;
    for (size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(b[pos + i]);
    pos += n;
    return v;
  }
  std::string_view take(size_t n) {
    if (pos + n > b.size()) {
      short_ = true;
      pos = b.size();
      return {};
    }
    auto s = b.substr(pos, n);
    pos += n;
    return s;
  }
};

constexpr size_t kMaxHello = 16384 * 4;

}  // namespace

ClientHello parse_tls_client_hello(std::string_view bytes) {
  ClientHello out;
  // Records: type(1)=22 handshake, version(2)=3.x, length(2). A ClientHello
  // may span several records; gather the handshake bytes first.
  std::string handshake;
  size_t pos = 0;
  size_t needed = 0;  // handshake bytes the message says it has (0 = unknown yet)
  for (;;) {
    if (needed && handshake.size() >= needed) break;
    if (pos + 5 > bytes.size()) {
      if (pos < bytes.size() && static_cast<unsigned char>(bytes[pos]) != 22)
        out.status = PeekStatus::invalid;
      if (pos + 1 < bytes.size() && static_cast<unsigned char>(bytes[pos + 1]) != 3)
        out.status = PeekStatus::invalid;
      return out;
    }
    auto type = static_cast<unsigned char>(bytes[pos]);
    auto major = static_cast<unsigned char>(bytes[pos + 1]);
    size_t len = (static_cast<unsigned char>(bytes[pos + 3]) << 8) |
                 static_cast<unsigned char>(bytes[pos + 4]);
    if (type != 22 || major != 3 || len == 0 || len > 16384 + 2048) {
      out.status = PeekStatus::invalid;
      return out;
    }
    if (pos + 5 + len > bytes.size()) {
      // Take what is there of this record to learn the handshake length.
      handshake.append(bytes.substr(pos + 5));
      if (handshake.size() >= 4 && !needed) {
        if (handshake[0] != 1) out.status = PeekStatus::invalid;
      }
      return out;
    }
    handshake.append(bytes.substr(pos + 5, len));
    pos += 5 + len;
    if (!needed && handshake.size() >= 4) {
      if (handshake[0] != 1) {  // msg_type client_hello
        out.status = PeekStatus::invalid;
        return out;
      }
      needed = 4 + ((static_cast<unsigned char>(handshake[1]) << 16) |
                    (static_cast<unsigned char>(handshake[2]) << 8) |
                    static_cast<unsigned char>(handshake[3]));
      if (needed > kMaxHello) {
        out.status = PeekStatus::invalid;
        return out;
      }
    }
  }

  Reader r{std::string_view(handshake).substr(4, needed - 4)};
  r.read(2);          // legacy_version
  r.take(32);         // random
  r.take(r.read(1));  // session id
  r.take(r.read(2));  // cipher suites
  r.take(r.read(1));  // compression methods
  if (r.short_) {
    out.status = PeekStatus::invalid;
    return out;
  }
  out.status = PeekStatus::complete;
  if (r.pos == r.b.size()) return out;  // no extensions
  size_t ext_len = r.read(2);
  Reader ext{r.take(ext_len)};
  if (r.short_) {
    out.status = PeekStatus::invalid;
    return out;
  }
  while (ext.pos < ext.b.size()) {
    uint32_t type = ext.read(2);
    Reader body{ext.take(ext.read(2))};
    if (ext.short_) {
      out.status = PeekStatus::invalid;
      return out;
    }
    if (type != 0) continue;  // server_name
    Reader list{body.take(body.read(2))};
    while (list.pos < list.b.size() && !list.short_) {
      uint32_t name_type = list.read(1);
      std::string_view name = list.take(list.read(2));
      if (list.short_) break;
      if (name_type == 0) {
        out.sni.reserve(name.size());
        for (char c : name) out.sni.push_back(lower(c));
        if (!out.sni.empty() && out.sni.back() == '.') out.sni.pop_back();
        return out;
      }
    }
    if (list.short_ || body.short_) {
      out.status = PeekStatus::invalid;
      return out;
    }
  }
  return out;
}

}  // namespace occasional::gateway
