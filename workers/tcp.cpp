#include "workers/tcp.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <cctype>
#include <cerrno>
#include <cstring>

#include "workers/tcp_io.hpp"

namespace occasional::tcp {

namespace {

std::string_view tuple_name(const Tuple& t) {
  const std::string* name = t.empty() ? nullptr : t[0].as_string();
  return name ? std::string_view(*name) : std::string_view();
}

}  // namespace

std::optional<Socket> Socket::from(const Value& v) {
  const Reference* r = v.as_reference();
  if (!r || r->size != 4 || r->words[0] != io::kSocketTag) return std::nullopt;
  return Socket{*r};
}

std::optional<Event> event(const Value& message) {
  const Tuple* t = message.as_tuple();
  if (!t || t->size() < 2) return std::nullopt;
  std::optional<Socket> s = Socket::from((*t)[1]);
  if (!s) return std::nullopt;
  const std::string_view name = tuple_name(*t);
  Event e;
  e.socket = std::move(*s);
  if (name == "tcp" && t->size() == 3 && (*t)[2].as_binary()) {
    e.kind = Event::Kind::data;
    e.bytes = (*t)[2].as_binary()->bytes;
  } else if (name == "tcp_closed" && t->size() == 2) {
    e.kind = Event::Kind::closed;
  } else if (name == "tcp_error" && t->size() == 3 && (*t)[2].as_string()) {
    e.kind = Event::Kind::error;
    e.reason = *(*t)[2].as_string();
  } else {
    return std::nullopt;
  }
  return e;
}

std::optional<GatewayConn> gateway_conn(const Value& message) {
  const Tuple* t = message.as_tuple();
  if (!t || t->size() != 3 || tuple_name(*t) != "gateway_conn") return std::nullopt;
  std::optional<Socket> s = Socket::from((*t)[1]);
  const Map* info = (*t)[2].as_map();
  if (!s || !info) return std::nullopt;
  GatewayConn c;
  c.socket = std::move(*s);
  auto text = [info](const char* key) {
    const Value* v = info->find(key);
    const std::string* str = v ? v->as_string() : nullptr;
    return str ? *str : std::string();
  };
  const Value* id = info->find("id");
  if (id && id->as_int()) c.id = static_cast<uint64_t>(*id->as_int());
  c.peer = text("peer");
  c.local = text("local");
  return c;
}

std::function<bool(const Value&)> messages_of(const Socket& socket) {
  return [id = socket.value()](const Value& v) {
    const Tuple* t = v.as_tuple();
    if (!t || t->size() < 2 || (*t)[1] != id) return false;
    const std::string_view name = tuple_name(*t);
    return name == "tcp" || name == "tcp_closed" || name == "tcp_error";
  };
}

namespace io {

namespace {

[[noreturn]] void fail(int error_number, const std::string& what) {
  throw Error(errno_reason(error_number), what + ": " + std::strerror(error_number));
}

void set_nodelay(int fd, bool on) {
  const int one = on ? 1 : 0;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

std::string errno_reason(int error_number) {
  const char* name = ::strerrorname_np(error_number);
  if (!name) return "errno " + std::to_string(error_number);
  std::string out(name);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

UniqueFd open_connection(const std::string& host, uint16_t port, const Options& options,
                         std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0)
    throw Error("nxdomain", "tcp::connect: cannot resolve " + host + ": " + ::gai_strerror(rc));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int last_errno = ECONNREFUSED;
  for (addrinfo* a = found; a; a = a->ai_next) {
    UniqueFd fd(
        ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol));
    if (!fd) {
      last_errno = errno;
      continue;
    }
    if (::connect(fd.get(), a->ai_addr, a->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        last_errno = errno;
        continue;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{fd.get(), POLLOUT, 0};
      int ready;
      do {
        ready = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
      } while (ready < 0 && errno == EINTR);
      if (ready == 0) {
        ::freeaddrinfo(found);
        throw Error("timeout", "tcp::connect: " + host + ":" + service + ": no answer in " +
                                   std::to_string(timeout.count()) + " ms");
      }
      int error = 0;
      socklen_t len = sizeof error;
      ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &len);
      if (error != 0) {
        last_errno = error;
        continue;
      }
    }
    ::freeaddrinfo(found);
    set_nodelay(fd.get(), options.nodelay);
    return fd;
  }
  ::freeaddrinfo(found);
  fail(last_errno, "tcp::connect: " + host + ":" + service);
}

UniqueFd open_listener(uint16_t port, const ListenOptions& options) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  const char* host = options.host.empty() ? nullptr : options.host.c_str();
  if (int rc = ::getaddrinfo(host, service.c_str(), &hints, &found); rc != 0)
    throw Error("nxdomain",
                "tcp::listen: cannot resolve " + options.host + ": " + ::gai_strerror(rc));
  UniqueFd fd(::socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    const int e = errno;
    ::freeaddrinfo(found);
    fail(e, "tcp::listen: socket()");
  }
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd.get(), found->ai_addr, found->ai_addrlen) != 0) {
    const int e = errno;
    ::freeaddrinfo(found);
    fail(e, "tcp::listen: bind() to " + options.host + ":" + service);
  }
  ::freeaddrinfo(found);
  if (::listen(fd.get(), options.backlog) != 0) fail(errno, "tcp::listen: listen()");
  return fd;
}

UniqueFd accept_connection(int listener, int timeout_ms, const Options& accepted) {
  for (;;) {
    UniqueFd fd(::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (fd) {
      set_nodelay(fd.get(), accepted.nodelay);
      return fd;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) fail(errno, "tcp::accept: accept4()");
    pollfd p{listener, POLLIN, 0};
    int ready = ::poll(&p, 1, timeout_ms);
    if (ready < 0 && errno != EINTR) fail(errno, "tcp::accept: poll()");
    if (ready == 0) return UniqueFd();
  }
}

uint16_t local_port(int fd) {
  sockaddr_storage address{};
  socklen_t len = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &len) != 0) return 0;
  if (address.ss_family == AF_INET)
    return ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
  if (address.ss_family == AF_INET6)
    return ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port);
  return 0;
}

}  // namespace io
}  // namespace occasional::tcp
