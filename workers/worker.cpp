#include "workers/worker.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "workers/control_channel.hpp"

namespace occasional::workers {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

std::string endpoint_text(const tcp::endpoint& e) {
  auto a = e.address();
  std::string host = a.is_v6() ? "[" + a.to_string() + "]" : a.to_string();
  return host + ":" + std::to_string(e.port());
}

tcp::endpoint parse_endpoint(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos)
    throw std::runtime_error("listen address '" + text + "' needs a port, as in 127.0.0.1:8080");
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";
  int port = 0;
  auto p = text.substr(colon + 1);
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
  if (ec != std::errc{} || end != p.data() + p.size() || port < 0 || port > 65535)
    throw std::runtime_error("listen address '" + text + "': bad port '" + p + "'");
  boost::system::error_code aec;
  auto addr = asio::ip::make_address(host, aec);
  if (aec) throw std::runtime_error("listen address '" + text + "': bad IP address '" + host + "'");
  return {addr, static_cast<unsigned short>(port)};
}

}  // namespace

Worker::Worker(asio::io_context& io, std::string standalone_listen, bool standalone_defer_accept)
    : io_(io), signals_(io, SIGTERM, SIGINT) {
  if (const char* s = env("OCCASIONAL_SERVICE")) service_ = s;
  if (const char* fd_text = env(kControlFdEnv)) {
    mode_ = WorkerMode::handoff;
    int fd = std::atoi(fd_text);
    int type = 0;
    socklen_t len = sizeof type;
    if (fd < 0 || ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_SEQPACKET)
      throw std::runtime_error(std::string(kControlFdEnv) + "=" + fd_text +
                               " is not a SOCK_SEQPACKET socket");
    control_ = std::make_unique<asio::posix::stream_descriptor>(io, fd);
    send_control(encode_hello_worker(::getpid(), /*closed_counter=*/true, /*conn_batches=*/true));
  } else if (const char* count = env("LISTEN_FDS")) {
    mode_ = WorkerMode::listen_fds;
    const char* pid = env("LISTEN_PID");
    if (pid && std::atol(pid) != ::getpid())
      throw std::runtime_error(std::string("LISTEN_PID=") + pid + " names another process");
    if (std::atoi(count) < 1)
      throw std::runtime_error("LISTEN_FDS=" + std::string(count) + ": no listener");
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(3, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
      throw std::runtime_error(std::string("fd 3 from LISTEN_FDS is not a socket: ") +
                               std::strerror(errno));
    acceptor_ =
        std::make_unique<tcp::acceptor>(io, ss.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), 3);
    if (const char* n = env("NOTIFY_SOCKET")) notify_path_ = n;
  } else {
    mode_ = WorkerMode::standalone;
    if (standalone_listen.empty())
      throw std::runtime_error(
          "no coordinator found (neither OCCASIONAL_CONTROL_FD nor LISTEN_FDS is set): "
          "pass --listen ADDR to run standalone");
    auto ep = parse_endpoint(standalone_listen);
    acceptor_ = std::make_unique<tcp::acceptor>(io, ep.protocol());
    acceptor_->set_option(tcp::acceptor::reuse_address(true));
    int one = 1;
    ::setsockopt(acceptor_->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    acceptor_->bind(ep);
    const int defer_seconds = 1;  // as the coordinator's defer_accept
    if (standalone_defer_accept &&
        ::setsockopt(acceptor_->native_handle(), IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_seconds,
                     sizeof defer_seconds) != 0)
      throw std::runtime_error("setsockopt(TCP_DEFER_ACCEPT) on " + standalone_listen + ": " +
                               std::strerror(errno));
    acceptor_->listen(4096);
  }
  // Listen modes never see the listener closed under them, so SIGTERM drains.
  signals_.async_wait([this](const boost::system::error_code& ec, int) {
    if (!ec) start_drain();
  });
}

Worker::~Worker() = default;

void Worker::start_drain() {
  if (draining_) return;
  draining_ = true;
  if (mode_ != WorkerMode::handoff && acceptor_) {
    boost::system::error_code ec;
    acceptor_->close(ec);
  }
  notify("STOPPING=1");
  if (on_drain_) on_drain_();
  check_drained();
}

void Worker::check_drained() {
  if (!draining_ || open_ > 0 || drained_reported_) return;
  drained_reported_ = true;
  if (on_drained_) {
    on_drained_();
  } else {
    exit_reason("drained");
    io_.stop();
  }
}

void Worker::send_control(const std::string& message) {
  if (!control_) return;
  // The control socket is blocking-free: a full buffer here means the
  // coordinator is gone or stuck; dropping a report is then harmless.
  send_datagram(control_->native_handle(), message);
}

void Worker::notify(std::string_view state) {
  if (notify_path_.empty()) return;
  if (!notify_socket_) notify_socket_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, notify_path_.data(),
              std::min(notify_path_.size(), sizeof addr.sun_path - 1));
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + notify_path_.size());
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  ::sendto(notify_socket_.get(), state.data(), state.size(), MSG_NOSIGNAL,
           reinterpret_cast<sockaddr*>(&addr), len);
}

void Worker::ready() {
  if (mode_ == WorkerMode::handoff) {
    send_control(encode_ready());
  } else {
    notify("READY=1");
    if (const char* usec = env("WATCHDOG_USEC")) {
      auto interval = std::chrono::microseconds(std::atoll(usec) / 2);
      if (interval.count() > 0) asio::co_spawn(io_, watchdog(interval), asio::detached);
    }
  }
}

asio::awaitable<void> Worker::watchdog(std::chrono::microseconds interval) {
  asio::steady_timer timer(io_);
  while (!draining_) {
    notify("WATCHDOG=1");
    timer.expires_after(interval);
    co_await timer.async_wait(asio::use_awaitable);
  }
}

void Worker::closed(uint64_t id) {
  if (closed_counter_.valid())
    closed_counter_.add_one();
  else if (mode_ == WorkerMode::handoff)
    send_control(encode_closed(id));
  if (open_ > 0) --open_;
  check_drained();
}

void Worker::status(std::string_view text) {
  if (mode_ == WorkerMode::handoff)
    send_control(encode_status(text));
  else
    notify("STATUS=" + std::string(text));
}

void Worker::exit_reason(std::string_view reason) {
  send_control(encode_exit_reason(reason));
}

void Worker::exit_error(std::string_view error, std::string_view detail) {
  send_control(encode_exit_error(error, detail));
}

asio::awaitable<std::optional<Connection>> Worker::next() {
  // No co_await inside ?: or a loop condition: GCC 12 miscompiles the
  // temporaries' lifetimes there (a use-after-free under ASan).
  std::optional<Connection> c;
  if (mode_ == WorkerMode::handoff)
    c = co_await next_handoff();
  else
    c = co_await next_accept();
  if (c) {
    ++open_;
  } else {
    // Whatever ended the stream (drain, SIGTERM, coordinator gone), finish.
    draining_ = true;
    check_drained();
  }
  co_return c;
}

Connection Worker::adopt(UniqueFd fd, ConnHeader header, int64_t received_at) {
  // The header names the local address, so the family costs no
  // getsockname (a syscall on every handoff) unless it is missing.
  const std::string& local = header.local;
  bool v6 = !local.empty() && local.front() == '[';
  if (local.empty()) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
    v6 = ss.ss_family == AF_INET6;
  }
  tcp::socket s(io_, v6 ? tcp::v6() : tcp::v4(), fd.release());
  return Connection{std::move(s), std::move(header), received_at};
}

asio::awaitable<std::optional<Connection>> Worker::next_handoff() {
  // The rest of the last `conns` message first: a `drain` behind it has
  // not been read yet.
  if (batch_next_ < batch_.size()) {
    Connection c = std::move(batch_[batch_next_++]);
    if (batch_next_ == batch_.size()) {
      batch_.clear();
      batch_next_ = 0;
    }
    co_return c;
  }
  for (;;) {
    // One message per wake-up while they come one at a time
    // (read_batching.hpp): the recvmsg that would find the socket empty
    // would run between taking a connection and serving it.
    if (control_wait_first_) {
      control_wait_first_ = false;
      boost::system::error_code ec;
      co_await control_->async_wait(asio::posix::stream_descriptor::wait_read,
                                    asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return std::nullopt;
    }
    Received r = receive_datagram(control_->native_handle(), kMaxConnsPerMessage);
    const int64_t received_at = monotonic_now_ns();
    switch (r.status) {
      case ReceiveStatus::would_block:
        control_batching_.found_empty();
        control_wait_first_ = true;
        continue;
      case ReceiveStatus::closed:
        // The coordinator is gone: nothing more will come.
        co_return std::nullopt;
      case ReceiveStatus::bad_message:
      case ReceiveStatus::error:
        exit_error("protocol_error", r.error);
        throw std::runtime_error("control socket: " + r.error);
      case ReceiveStatus::message:
        break;
    }
    std::string reason, error;
    Message& m = decoded_;
    if (!decode_message(r.payload, m, reason, error)) {
      exit_error("protocol_error", error);
      throw std::runtime_error("control message: " + error);
    }
    control_wait_first_ = control_batching_.wait_after_item();
    switch (m.type) {
      case MessageType::conn:
      case MessageType::conns: {
        const size_t want = m.type == MessageType::conn ? 1 : m.conns.size();
        if (r.fds.size() != want) {
          const std::string what = std::string(message_type_name(m.type)) + " message with " +
                                   std::to_string(r.fds.size()) + " fds for " +
                                   std::to_string(want) + " connections";
          exit_error("protocol_error", what);
          throw std::runtime_error(what);
        }
        if (m.type == MessageType::conn)
          co_return adopt(std::move(r.fds[0]), std::move(m.conn), received_at);
        for (size_t i = 1; i < want; ++i)
          batch_.push_back(adopt(std::move(r.fds[i]), std::move(m.conns[i]), received_at));
        co_return adopt(std::move(r.fds[0]), std::move(m.conns[0]), received_at);
      }
      case MessageType::drain:
        start_drain();
        co_return std::nullopt;
      case MessageType::ping:
        send_control(encode_pong(m.seq));
        break;
      case MessageType::closed_counter:
        if (!r.fds.empty() && !closed_counter_.valid()) {
          // On failure closed() goes on sending messages: slower, not wrong.
          std::error_code ec;
          closed_counter_ = ClosedCounter::map(r.fds[0].get(), ec);
        }
        break;
      case MessageType::hello:
        break;
      default:
        // Worker-to-coordinator types are not for us; ignore rather than die.
        break;
    }
  }
}

asio::awaitable<std::optional<Connection>> Worker::next_accept() {
  if (draining_ || !acceptor_->is_open()) co_return std::nullopt;
  boost::system::error_code ec;
  tcp::socket s = co_await acceptor_->async_accept(asio::redirect_error(asio::use_awaitable, ec));
  while (ec && !draining_ &&
         (ec == asio::error::connection_aborted || ec == asio::error::no_descriptors ||
          ec == asio::error::no_buffer_space)) {
    // Transient accept failures: pause briefly (out of fds would otherwise
    // spin) and try again rather than stop serving.
    asio::steady_timer pause(io_, std::chrono::milliseconds(10));
    co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    s = co_await acceptor_->async_accept(asio::redirect_error(asio::use_awaitable, ec));
  }
  if (ec) co_return std::nullopt;
  ConnHeader h;
  h.id = next_local_id_++;
  h.accepted_at_ns = monotonic_now_ns();
  const int64_t received_at = h.accepted_at_ns;
  boost::system::error_code e1, e2;
  auto peer = s.remote_endpoint(e1);
  auto local = s.local_endpoint(e2);
  if (!e1) h.peer = endpoint_text(peer);
  if (!e2) h.local = endpoint_text(local);
  h.service = service_;
  h.route = worker_mode_name(mode_);
  co_return Connection{std::move(s), std::move(h), received_at};
}

}  // namespace occasional::workers
