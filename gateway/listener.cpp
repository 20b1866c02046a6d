#include "gateway/listener.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <stdexcept>

#include <boost/asio/post.hpp>

namespace occasional::gateway {

using supervisor::LogLevel;

ListenAddress parse_listen_address(const std::string& text) {
  ListenAddress a;
  a.text = text;
  auto colon = text.rfind(':');
  if (colon == std::string::npos)
    throw std::invalid_argument("listen address '" + text +
                                "' has no port: write it as 127.0.0.1:8080, [::1]:8080 or :8080");
  std::string host = text.substr(0, colon);
  std::string port = text.substr(colon + 1);
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc{} || end != port.data() + port.size() || value > 65535)
    throw std::invalid_argument("listen address '" + text + "': port '" + port +
                                "' is not a number from 0 to 65535");
  a.port = static_cast<uint16_t>(value);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    a.v6 = true;
    host = host.substr(1, host.size() - 2);
  } else if (host.empty()) {
    host = "0.0.0.0";
  }
  unsigned char buf[sizeof(in6_addr)];
  if (::inet_pton(a.v6 ? AF_INET6 : AF_INET, host.c_str(), buf) != 1)
    throw std::invalid_argument("listen address '" + text + "': '" + host + "' is not a numeric " +
                                (a.v6 ? "IPv6" : "IPv4") + " address" +
                                (a.v6 ? "" : " (IPv6 goes in brackets: [::1]:8080)"));
  a.host = host;
  return a;
}

namespace {

// The `reason` label of occasional_accept_errors_total.
const char* accept_error_reason(int err) {
  switch (err) {
    case EMFILE:
      return "emfile";
    case ENFILE:
      return "enfile";
    case ENOBUFS:
      return "enobufs";
    case ENOMEM:
      return "enomem";
    default:
      return "other";
  }
}

}  // namespace

socklen_t to_sockaddr(const ListenAddress& a, sockaddr_storage& out) {
  out = {};
  if (a.v6) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&out);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(a.port);
    ::inet_pton(AF_INET6, a.host.c_str(), &s6->sin6_addr);
    return sizeof(sockaddr_in6);
  }
  auto* s4 = reinterpret_cast<sockaddr_in*>(&out);
  s4->sin_family = AF_INET;
  s4->sin_port = htons(a.port);
  ::inet_pton(AF_INET, a.host.c_str(), &s4->sin_addr);
  return sizeof(sockaddr_in);
}

namespace {

uint16_t bound_port_of(int fd, const ListenAddress& a) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return ntohs(a.v6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                    : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

int bind_listener(const ListenAddress& a, bool defer_accept, uint16_t& bound_port) {
  const int family = a.v6 ? AF_INET6 : AF_INET;
  UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd)
    throw std::runtime_error("socket() failed for listener " + a.text + ": " +
                             std::strerror(errno));
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (a.v6) ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  sockaddr_storage ss{};
  const socklen_t len = to_sockaddr(a, ss);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0)
    throw std::runtime_error("bind() failed for listener " + a.text + ": " + std::strerror(errno) +
                             (errno == EADDRINUSE ? " (another process has this port)" : ""));
  // One second, as nginx's `deferred` and HAProxy's `defer-accept` use: a
  // client that has sent nothing by then is accepted after the SYN-ACK the
  // kernel sends again at that point, and the peek timeout takes over.
  const int defer_seconds = 1;
  if (defer_accept && ::setsockopt(fd.get(), IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_seconds,
                                   sizeof defer_seconds) != 0)
    throw std::runtime_error("setsockopt(TCP_DEFER_ACCEPT) failed for listener " + a.text + ": " +
                             std::strerror(errno));
  if (::listen(fd.get(), 4096) != 0)
    throw std::runtime_error("listen() failed for listener " + a.text + ": " +
                             std::strerror(errno));
  bound_port = bound_port_of(fd.get(), a);
  return fd.release();
}

// A socket from socket activation, bound and listening already.
int adopt_listener(UniqueFd fd, const ListenAddress& a, bool defer_accept, uint16_t& bound_port) {
  // The accept loop relies on EAGAIN. The flag is on the open file, which
  // systemd shares: its own copy is only polled, never read from.
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0)
    throw std::runtime_error("fcntl(O_NONBLOCK) failed for the activated socket of listener " +
                             a.text + ": " + std::strerror(errno));
  const int defer_seconds = 1;
  if (defer_accept && ::setsockopt(fd.get(), IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_seconds,
                                   sizeof defer_seconds) != 0)
    throw std::runtime_error(
        "setsockopt(TCP_DEFER_ACCEPT) failed for the activated socket of "
        "listener " +
        a.text + ": " + std::strerror(errno));
  bound_port = bound_port_of(fd.get(), a);
  return fd.release();
}

// Connection ids are unique across listeners: workers report them back.
uint64_t next_connection_id = 1;

bool wildcard(const ListenAddress& a) {
  return a.host == "0.0.0.0" || a.host == "::";
}

void append_decimal(std::string& out, unsigned value) {
  char digits[10];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value > 0);
  while (n > 0) out += digits[--n];
}

}  // namespace

std::string sockaddr_text(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    char host[INET6_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    std::string text = "[";
    text += host;
    text += "]:";
    append_decimal(text, ntohs(a->sin6_port));
    return text;
  }
  // IPv4 by hand: glibc's inet_ntop formats it with sprintf, and this runs
  // once per connection.
  auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
  const auto* octet = reinterpret_cast<const unsigned char*>(&a->sin_addr);
  std::string text;
  for (int i = 0; i < 4; ++i) {
    if (i > 0) text += '.';
    append_decimal(text, octet[i]);
  }
  text += ':';
  append_decimal(text, ntohs(a->sin_port));
  return text;
}

Listener::Listener(boost::asio::io_context& io, std::string name, const ListenAddress& address,
                   bool defer_accept, metrics::ConnectionStats& stats,
                   const supervisor::EventLog& log, UniqueFd activated)
    : io_(io),
      name_(std::move(name)),
      socket_(io),
      pause_timer_(io),
      stats_(stats),
      counts_(stats.listeners[name_]),
      log_(log),
      failures_(stats, log, name_) {
  socket_.assign(activated ? adopt_listener(std::move(activated), address, defer_accept, port_)
                           : bind_listener(address, defer_accept, port_));
  counts_.address =
      (address.v6 ? "[" + address.host + "]" : address.host) + ":" + std::to_string(port_);
  if (!wildcard(address))
    local_text_ =
        (address.v6 ? "[" + address.host + "]" : address.host) + ":" + std::to_string(port_);
}

void Listener::start(Accepted on_accepted, Admit admit, Burst burst) {
  on_accepted_ = std::move(on_accepted);
  admit_ = std::move(admit);
  burst_ = std::move(burst);
  stopped_ = false;
  wait();
}

void Listener::stop() {
  stopped_ = true;
  release_hold();
  boost::system::error_code ec;
  socket_.cancel(ec);
  pause_timer_.cancel();
}

void Listener::restart() {
  if (!stopped_ || !on_accepted_) return;
  stopped_ = false;
  wait();
}

void Listener::close() {
  stop();
  boost::system::error_code ec;
  socket_.close(ec);
}

void Listener::wait() {
  socket_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                     [this](const boost::system::error_code& ec) {
                       if (!ec && !stopped_) accept_ready();
                     });
}

void Listener::accept_ready() {
  // One connection per wake-up while they come one at a time, a sweep when
  // they come in bursts (workers/read_batching.hpp): the accept4 that would
  // find the queue empty sits between the handoff and our sleep, and a
  // worker on the same CPU waits for that sleep.
  // A bounded batch per wake-up keeps other work on the loop going under a flood.
  // While sweeping, the handoffs of this wake-up may go out together.
  struct BurstScope {
    const Burst& burst;
    bool open;
    ~BurstScope() {
      if (open) burst(false);
    }
  } scope{burst_, burst_ && batching_.sweeping()};
  if (scope.open) burst_(true);
  bool accepted = false;
  bool yielded = false;
  for (int batch = 0; batch < 256; ++batch) {
    if (admit_ && !admit_()) return hold();
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    int fd = ::accept4(socket_.native_handle(), reinterpret_cast<sockaddr*>(&peer), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      // Saved first: bumping a counter may allocate, and that may set errno.
      const int err = errno;
      switch (err) {
        case EAGAIN:
#if EAGAIN != EWOULDBLOCK
        case EWOULDBLOCK:
#endif
          // A swept burst yields once before it waits: the workers it fed
          // run first if they share this CPU, and the next sweep takes what
          // arrived meanwhile in one go instead of one epoll round each.
          if (scope.open && accepted && !yielded) {
            yielded = true;
            yield_between_sweeps();
            continue;
          }
          pause_ = std::chrono::milliseconds(0);
          batching_.found_empty();
          return wait();
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
          continue;
      }
      ++stats_.accept_errors[accept_error_reason(err)];
      return pause(err);
    }
    pause_ = std::chrono::milliseconds(0);
    accepted = true;
    ++stats_.accepted;
    ++counts_.accepted;
    workers::ConnHeader h;
    h.id = next_connection_id++;
    h.accepted_at_ns = workers::monotonic_now_ns();
    h.listener = name_;
    h.peer = sockaddr_text(peer);
    if (local_text_.empty()) {
      sockaddr_storage local{};
      socklen_t llen = sizeof local;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &llen);
      h.local = sockaddr_text(local);
    } else {
      h.local = local_text_;
    }
    try {
      on_accepted_(UniqueFd(fd), std::move(h));
    } catch (const std::exception& e) {
      // Whatever routing or dispatch could not finish (out of memory, say)
      // has closed this connection while unwinding; the loop goes on.
      handler_failed(e);
    }
    if (batching_.wait_after_item()) return wait();
  }
  // Batch used up: yield to the loop, then go on.
  boost::asio::post(io_, [this] {
    if (!stopped_) accept_ready();
  });
}

void Listener::yield_between_sweeps() {
  // A yield that runs another task costs two context switches and that
  // task's time, well over this; one that finds nothing else runnable on the
  // CPU returns in about a microsecond.
  constexpr int64_t kOtherWorkRanNs = 5'000;
  burst_(false);
  const int64_t before = workers::monotonic_now_ns();
  ::sched_yield();
  const bool shared = workers::monotonic_now_ns() - before > kOtherWorkRanNs;
  ++(shared ? stats_.accept_yields_shared : stats_.accept_yields_free);
  burst_(true);
}

void Listener::handler_failed(const std::exception& e) {
  failures_.record("internal_error", e.what());
}

void Listener::hold() {
  // No wait is armed while held: the backlog does not wake us up.
  if (held_) return;
  held_ = true;
  ++stats_.accept_holds;
  ++stats_.listeners_held;
}

void Listener::release_hold() {
  if (!held_) return;
  held_ = false;
  --stats_.listeners_held;
}

void Listener::resume() {
  if (!held_ || stopped_) return;
  release_hold();
  // Not accept_ready(): this runs inside the dispatch that made room, which
  // may itself run inside accept_ready().
  wait();
}

void Listener::pause(int err) {
  // Out of fds or memory: accepting again at once would fail again at once.
  // The pending connections wait in the kernel's backlog meanwhile.
  pause_ = pause_.count() == 0 ? std::chrono::milliseconds(10)
                               : std::min(pause_ * 2, std::chrono::milliseconds(1000));
  log_.event(LogLevel::error, "accept_failed")
      .str("listener", name_)
      .str("error", std::strerror(err))
      .num("pause_ms", pause_.count());
  pause_timer_.expires_after(pause_);
  pause_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec && !stopped_) accept_ready();
  });
}

}  // namespace occasional::gateway
