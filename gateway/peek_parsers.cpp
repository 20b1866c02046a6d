#include "gateway/peek_parsers.hpp"

#include <algorithm>
#include <cstdint>

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

HttpHead parse_http_head(std::string_view bytes) {
  HttpHead h;
  // Request line: METHOD SP target SP HTTP/1.x CRLF. Check the prefix as it
  // grows so that non-HTTP is rejected early.
  size_t i = 0;
  while (i < bytes.size() && token_char(bytes[i])) ++i;
  if (i == bytes.size()) {
    if (i > 32) h.status = PeekStatus::invalid;
    return h;
  }
  if (i == 0 || bytes[i] != ' ') {
    h.status = PeekStatus::invalid;
    return h;
  }
  size_t target_start = ++i;
  while (i < bytes.size() && bytes[i] != ' ' && bytes[i] != '\r' && bytes[i] != '\n') {
    if (static_cast<unsigned char>(bytes[i]) <= 0x20 || bytes[i] == 0x7f) {
      h.status = PeekStatus::invalid;
      return h;
    }
    ++i;
  }
  if (i == bytes.size()) return h;
  if (bytes[i] != ' ' || i == target_start) {
    h.status = PeekStatus::invalid;
    return h;
  }
  std::string_view target = bytes.substr(target_start, i - target_start);
  ++i;
  constexpr std::string_view kVersion = "HTTP/1.";
  for (size_t k = 0; k < kVersion.size() + 1; ++k, ++i) {
    if (i == bytes.size()) return h;
    if (k < kVersion.size() ? bytes[i] != kVersion[k] : (bytes[i] != '0' && bytes[i] != '1')) {
      h.status = PeekStatus::invalid;
      return h;
    }
  }
  if (i + 1 >= bytes.size()) return h;
  if (bytes[i] != '\r' || bytes[i + 1] != '\n') {
    h.status = PeekStatus::invalid;
    return h;
  }
  i += 2;

  std::string_view host;
  bool have_host = false;
  for (;;) {
    size_t eol = bytes.find("\r\n", i);
    if (eol == std::string_view::npos) {
      // A bare LF or other control bytes in what is there make it invalid now.
      for (size_t k = i; k < bytes.size(); ++k)
        if (bytes[k] == '\n' || bytes[k] == '\0') {
          h.status = PeekStatus::invalid;
          return h;
        }
      return h;
    }
    std::string_view line = bytes.substr(i, eol - i);
    i = eol + 2;
    if (line.empty()) break;
    auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      h.status = PeekStatus::invalid;
      return h;
    }
    std::string_view name = line.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(), token_char) ||
        line.find('\n') != std::string_view::npos || line.find('\0') != std::string_view::npos) {
      h.status = PeekStatus::invalid;
      return h;
    }
    if (iequals(name, "host")) {
      if (have_host) {  // two Host headers: RFC 9112 says reject
        h.status = PeekStatus::invalid;
        return h;
      }
      have_host = true;
      host = trim(line.substr(colon + 1));
    }
  }

  // Request target forms (RFC 9112 3.2): origin "/path", absolute
  // "scheme://authority/path", asterisk "*" and authority "host:port"
  // (CONNECT), which have no path. A route by path prefix needs one.
  std::string_view path;
  auto scheme = target.find("://");
  if (target.front() == '/') {
    path = target;
  } else if (scheme != std::string_view::npos && scheme > 0) {
    std::string_view rest = target.substr(scheme + 3);
    auto slash = rest.find('/');
    if (host.empty()) host = rest.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
  } else if (target.find('/') != std::string_view::npos) {
    h.status = PeekStatus::invalid;  // neither a path nor an authority
    return h;
  }
  auto query = path.find_first_of("?#");
  if (query != std::string_view::npos) path = path.substr(0, query);

  // Strip a port; keep an IPv6 literal's brackets.
  if (!host.empty() && host.front() == '[') {
    auto close = host.find(']');
    if (close != std::string_view::npos) host = host.substr(0, close + 1);
  } else {
    auto colon = host.rfind(':');
    if (colon != std::string_view::npos) host = host.substr(0, colon);
  }
  h.host.reserve(host.size());
  for (char c : host) h.host.push_back(lower(c));
  if (!h.host.empty() && h.host.back() == '.') h.host.pop_back();
  h.path.assign(path);
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
