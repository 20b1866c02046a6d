#include "gateway/balancer.hpp"

#include <algorithm>
#include <cerrno>
#include <limits>

namespace occasional::gateway {

using supervisor::LogLevel;

Balancer::Balancer(boost::asio::io_context& io, std::string service, BalancerConfig config,
                   GatewayStats& stats, const supervisor::EventLog& log)
    : service_(std::move(service)),
      config_(config),
      stats_(stats),
      log_(log),
      queue_(io, QueueConfig{config.queue_max, config.queue_timeout}, stats),
      retry_timer_(io) {}

void Balancer::add(int replica, supervisor::WorkerLink* link) {
  remove(replica);
  backends_.push_back({replica, link, 0, 0, link->counted_closed()});
  drain_queue();
}

void Balancer::remove(int replica) {
  for (size_t i = 0; i < backends_.size(); ++i)
    if (backends_[i].replica == replica) {
      backends_.erase(backends_.begin() + static_cast<long>(i));
      return;
    }
}

void Balancer::on_closed(int replica) {
  for (Backend& b : backends_)
    if (b.replica == replica && b.outstanding > 0) --b.outstanding;
  drain_queue();
}

uint64_t Balancer::open_connections(const Backend& b) {
  // A worker that counts in shared memory sends no `closed`: its count
  // since it was added comes off. Clamped: a worker writes that page, and
  // a bad count must not wrap around into "very busy".
  const uint64_t counted = b.link->counted_closed() - b.counted_base;
  return counted >= b.outstanding ? 0 : b.outstanding - counted;
}

uint32_t Balancer::outstanding(int replica) const {
  for (const Backend& b : backends_)
    if (b.replica == replica)
      return static_cast<uint32_t>(std::min<uint64_t>(open_connections(b), UINT32_MAX));
  return 0;
}

void Balancer::dispatch(UniqueFd fd, workers::ConnHeader header) {
  // Queued connections keep their order: a new one waits behind them.
  if (queue_.empty() && hand_off(fd, header)) return;
  queue_.push(std::move(fd), std::move(header));
  arm_retry();
}

void Balancer::arm_retry() {
  // Ready workers that refused (their control socket's buffer was full,
  // about 160 handoffs) send no event when they catch up, unless a
  // connection closes: look again shortly.
  if (retry_armed_ || queue_.empty() || backends_.empty()) return;
  retry_armed_ = true;
  retry_timer_.expires_after(std::chrono::milliseconds(1));
  retry_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;  // cancelled: `this` may be gone
    retry_armed_ = false;
    drain_queue();
    arm_retry();
  });
}

bool Balancer::hand_off(UniqueFd& fd, const workers::ConnHeader& header) {
  std::string message;
  const size_t n = backends_.size();
  // At most one try per worker per connection: a worker whose socket is
  // full is skipped. Marks are generations, so nothing is reset or allocated.
  const uint64_t generation = ++attempt_;
  for (size_t tries = 0; tries < n; ++tries) {
    size_t best = n;
    uint64_t least = std::numeric_limits<uint64_t>::max();
    for (size_t k = 0; k < n; ++k) {
      size_t i = (next_ + k) % n;
      const Backend& b = backends_[i];
      if (b.tried == generation) continue;
      const uint64_t open = open_connections(b);
      if (config_.max_connections && open >= config_.max_connections) continue;
      if (open < least) {
        least = open;
        best = i;
      }
    }
    if (best == n) return false;
    Backend& b = backends_[best];
    b.tried = generation;
    if (message.empty()) message = workers::encode_conn(header);
    std::error_code ec = b.link->send(message, fd.get());
    if (!ec) {
      ++b.outstanding;
      next_ = (best + 1) % n;
      ++stats_.handed_off;
      stats_.handoff_duration.observe(
          static_cast<double>(workers::monotonic_now_ns() - header.accepted_at_ns) * 1e-9);
      fd.reset();  // the worker has its own copy now
      return true;
    }
    const bool busy = ec == std::errc::resource_unavailable_try_again;
    ++stats_.handoff_retries[busy ? "worker_busy" : "worker_gone"];
    // Under a burst this happens per connection: log at most once a second,
    // with how many were counted since (the counter has every one).
    ++unlogged_retries_;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_retry_log_ >= std::chrono::seconds(1)) {
      log_.event(LogLevel::warn, "handoff_retried")
          .str("service", service_)
          .num("replica", b.replica)
          .str("error", ec.message())
          .num("retries_since_last_line", static_cast<int64_t>(unlogged_retries_))
          .str("action", "trying another worker, else the queue");
      last_retry_log_ = now;
      unlogged_retries_ = 0;
    }
  }
  return false;
}

void Balancer::drain_queue() {
  queue_.drain(
      [this](UniqueFd& fd, const workers::ConnHeader& header) { return hand_off(fd, header); });
}

void Balancer::close_queue() {
  queue_.close_all();
}

}  // namespace occasional::gateway
