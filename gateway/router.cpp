#include "gateway/router.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <exception>

#include "gateway/http_refusal.hpp"

namespace occasional::gateway {

Router::Router(boost::asio::io_context& io, RouteTable table, PeekLimits limits,
               Dispatcher& dispatcher, metrics::ConnectionStats& stats,
               const supervisor::EventLog& log)
    : io_(io),
      table_(std::move(table)),
      limits_(limits),
      dispatcher_(dispatcher),
      stats_(stats),
      failures_(stats, log) {
  buffer_.resize(limits_.max_bytes);
}

void Router::route(UniqueFd fd, workers::ConnHeader header) {
  if (!table_.needs_peek()) {
    const Route* r = table_.default_route();
    if (!r) {
      stats_.reject("no_route", header.listener);
      return;
    }
    header.service = r->service;
    header.route = "default";
    dispatcher_.dispatch(r->service, std::move(fd), std::move(header));
    return;
  }
  const uint64_t id = header.id;
  if (stats_.peeking >= stats_.routing_max) {
    // The bound is shared by every listener; another's connections may
    // hold it all, and then this one is the one closed.
    if (peeking_.empty()) {
      if (table_.peek_kind() == RouteKind::http) send_http_refusal(fd.get(), "routing_cap");
      stats_.reject("routing_cap", header.listener);
      return;
    }
    reject(peeking_.begin()->first, "routing_cap");
  }
  try {
    auto peek = std::make_unique<Peek>(io_);
    // epoll_ctl fails with ENOMEM (or ENOSPC at fs.epoll.max_user_watches)
    // under exhaustion; the fd is still ours then, and closes on return.
    boost::system::error_code ec;
    peek->socket.assign(fd.get(), ec);
    if (ec) return failures_.record("register_failed", ec.message().c_str());
    fd.release();
    peek->header = std::move(header);
    peek->timer.expires_after(limits_.timeout);
    peek->timer.async_wait([this, id](const boost::system::error_code& ec) {
      if (!ec && peeking_.contains(id)) guarded(id, [this, id] { reject(id, "peek_timeout"); });
    });
    peeking_.emplace(id, std::move(peek));
  } catch (const std::exception& e) {
    return failures_.record("internal_error", e.what());
  }
  ++stats_.peeking;
  // Clients usually send right after connecting; the bytes may not be here yet.
  wait(id);
}

template <typename Step>
void Router::guarded(uint64_t id, Step step) {
  try {
    step();
  } catch (const std::exception& e) {
    if (peeking_.erase(id) > 0) --stats_.peeking;
    failures_.record("internal_error", e.what());
  }
}

void Router::wait(uint64_t id) {
  peeking_.at(id)->socket.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                                     [this, id](const boost::system::error_code& ec) {
                                       if (!ec && peeking_.contains(id))
                                         guarded(id, [this, id] { try_peek(id); });
                                     });
}

void Router::try_peek(uint64_t id) {
  Peek& p = *peeking_.at(id);
  const int fd = p.socket.native_handle();
  ssize_t n;
  do {
    n = ::recv(fd, buffer_.data(), buffer_.size(), MSG_PEEK | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n == 0) return reject(id, "closed_before_route");
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return wait(id);
    return reject(id, "peek_error");
  }
  RouteDecision d = table_.decide(std::string_view(buffer_.data(), static_cast<size_t>(n)));
  switch (d.status) {
    case PeekStatus::complete:
      return finish(id, d);
    case PeekStatus::invalid:
      return reject(id, d.reject_reason);
    case PeekStatus::need_more:
      break;
  }
  if (static_cast<size_t>(n) >= limits_.max_bytes) return reject(id, "too_large");
  p.seen = static_cast<size_t>(n);
  int lowat = static_cast<int>(p.seen + 1);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
  wait(id);
}

void Router::finish(uint64_t id, const RouteDecision& d) {
  auto node = peeking_.extract(id);
  --stats_.peeking;
  Peek& p = *node.mapped();
  p.timer.cancel();
  const int fd = p.socket.native_handle();
  if (p.seen > 0) {
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
  }
  if (d.consume > 0) {
    // The preface line is in the buffer already (it was peeked): this read
    // takes exactly it and nothing after.
    ssize_t n = ::recv(fd, buffer_.data(), d.consume, MSG_DONTWAIT);
    if (n != static_cast<ssize_t>(d.consume)) {
      stats_.reject("peek_error", p.header.listener);
      return;
    }
  }
  p.header.service = d.route->service;
  p.header.route = route_kind_name(d.route->kind);
  UniqueFd owned(p.socket.release());
  dispatcher_.dispatch(d.route->service, std::move(owned), std::move(p.header));
}

void Router::reject(uint64_t id, const char* reason) {
  auto it = peeking_.find(id);
  if (table_.peek_kind() == RouteKind::http)
    send_http_refusal(it->second->socket.native_handle(), reason);
  // Destroying the Peek closes the socket and cancels its waits.
  stats_.reject(reason, it->second->header.listener);
  peeking_.erase(it);
  --stats_.peeking;
}

void Router::close_all() {
  for (const auto& [id, p] : peeking_) stats_.reject("shutdown", p->header.listener);
  stats_.peeking -= peeking_.size();
  peeking_.clear();
}

}  // namespace occasional::gateway
