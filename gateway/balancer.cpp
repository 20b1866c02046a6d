#include "gateway/balancer.hpp"

#include <algorithm>
#include <cerrno>
#include <limits>

namespace occasional::gateway {

using supervisor::LogLevel;

const char* burst_mode_name(BurstMode mode) {
  switch (mode) {
    case BurstMode::automatic:
      return "auto";
    case BurstMode::spread:
      return "spread";
    case BurstMode::runs:
      return "runs";
  }
  return "?";
}

std::optional<BurstMode> parse_burst_mode(std::string_view name) {
  for (BurstMode mode : {BurstMode::automatic, BurstMode::spread, BurstMode::runs})
    if (name == burst_mode_name(mode)) return mode;
  return std::nullopt;
}

Balancer::Balancer(boost::asio::io_context& io, std::string service, BalancerConfig config,
                   metrics::ConnectionStats& stats, const supervisor::EventLog& log)
    : service_(std::move(service)),
      config_(config),
      stats_(stats),
      log_(log),
      queue_(io, QueueConfig{config.queue_max, config.queue_timeout}, stats),
      retry_timer_(io) {}

void Balancer::add(int replica, supervisor::WorkerLink* link) {
  remove(replica);
  Backend b;
  b.replica = replica;
  b.link = link;
  b.counted_base = link->counted_closed();
  backends_.push_back(std::move(b));
  hand_out_queued();
}

std::optional<Balancer::Carried> Balancer::carry(int replica) const {
  for (const Backend& b : backends_)
    if (b.replica == replica) return Carried{b.outstanding, b.counted_base};
  return std::nullopt;
}

void Balancer::restore(int replica, Carried carried) {
  for (Backend& b : backends_)
    if (b.replica == replica) {
      b.outstanding = carried.outstanding;
      b.counted_base = carried.counted_base;
    }
}

bool Balancer::idle() const {
  for (const Backend& b : backends_)
    if (!b.staged.empty()) return false;
  return queue_.empty();
}

void Balancer::remove(int replica) {
  for (size_t i = 0; i < backends_.size(); ++i)
    if (backends_[i].replica == replica) {
      run_ = kNoRun;  // indices move
      // Staged for it and not sent: they go to another worker or the queue.
      std::vector<Staged> staged = std::move(backends_[i].staged);
      backends_.erase(backends_.begin() + static_cast<long>(i));
      for (Staged& s : staged)
        if (!hand_off(s.fd, s.header, false)) queue_.push(std::move(s.fd), std::move(s.header));
      if (!staged.empty()) arm_retry();
      return;
    }
}

void Balancer::on_closed(int replica) {
  for (Backend& b : backends_)
    if (b.replica == replica && b.outstanding > 0) --b.outstanding;
  hand_out_queued();
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
    hand_out_queued();
    arm_retry();
  });
}

bool Balancer::hand_off(UniqueFd& fd, workers::ConnHeader& header, bool stage, int exclude) {
  bool encoded = false;
  const size_t n = backends_.size();
  // At most one try per worker per connection: a worker whose socket is
  // full is skipped. Marks are generations, so nothing is reset or allocated.
  const uint64_t generation = ++attempt_;
  if (stage && bursting_ && run_ < n && stage_in_run(fd, header)) return true;
  for (size_t tries = 0; tries < n; ++tries) {
    size_t best = n;
    uint64_t least = std::numeric_limits<uint64_t>::max();
    for (size_t k = 0; k < n; ++k) {
      size_t i = (next_ + k) % n;
      const Backend& b = backends_[i];
      if (b.tried == generation || b.replica == exclude) continue;
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
    if (stage && bursting_ && b.link->takes_batches()) {
      next_ = (best + 1) % n;
      run_ = config_.burst == BurstMode::runs ? best : kNoRun;
      stage_for(b, fd, header);
      return true;
    }
    if (!encoded) workers::encode_conn(message_, header);
    encoded = true;
    std::error_code ec = b.link->send(message_, fd.get());
    if (!ec) {
      ++b.outstanding;
      next_ = (best + 1) % n;
      handed(header, workers::monotonic_now_ns());
      fd.reset();  // the worker has its own copy now
      return true;
    }
    record_failed_send(b, ec);
  }
  return false;
}

bool Balancer::stage_in_run(UniqueFd& fd, workers::ConnHeader& header) {
  Backend& b = backends_[run_];
  // A run ends when its message is full (flushed: nothing staged) or the
  // worker reaches its cap; the next connection starts one elsewhere.
  if (b.staged.empty() ||
      (config_.max_connections && open_connections(b) >= config_.max_connections)) {
    run_ = kNoRun;
    return false;
  }
  stage_for(b, fd, header);
  return true;
}

void Balancer::stage_for(Backend& b, UniqueFd& fd, workers::ConnHeader& header) {
  b.staged.push_back({std::move(fd), std::move(header)});
  ++b.outstanding;
  if (b.staged.size() >= kStageMax) {
    flush(b);
    run_ = kNoRun;
  }
}

void Balancer::end_burst() {
  bursting_ = false;
  run_ = kNoRun;
  flush_staged();
}

void Balancer::flush_staged() {
  for (Backend& b : backends_)
    if (!b.staged.empty()) flush(b);
}

void Balancer::flush(Backend& b) {
  // Sent from where they are: the vector keeps its capacity for the next
  // burst, and nothing below stages (re-dispatch sends at once).
  std::vector<Staged>& staged = b.staged;
  std::error_code ec;
  if (staged.size() == 1) {
    workers::encode_conn(message_, staged[0].header);
    ec = b.link->send(message_, staged[0].fd.get());
  } else {
    int fds[workers::kMaxConnsPerMessage];
    message_.clear();
    for (size_t i = 0; i < staged.size(); ++i) {
      workers::append_conns_entry(message_, staged[i].header);
      fds[i] = staged[i].fd.get();
    }
    workers::finish_conns(message_);
    ec = b.link->send(message_, std::span<const int>(fds, staged.size()));
    if (!ec) ++stats_.handoff_batches;
  }
  if (!ec) {
    const int64_t now = workers::monotonic_now_ns();
    for (const Staged& s : staged) handed(s.header, now);
    staged.clear();  // the fds close here: the worker has its own copies
    return;
  }
  // Not taken: each goes to another worker, one at a time, or to the queue.
  b.outstanding -= std::min<uint64_t>(b.outstanding, staged.size());
  record_failed_send(b, ec, staged.size());
  // `b` stays valid: nothing below adds or removes workers.
  for (Staged& s : staged)
    if (!hand_off(s.fd, s.header, false, b.replica))
      queue_.push(std::move(s.fd), std::move(s.header));
  staged.clear();
  arm_retry();
}

void Balancer::handed(const workers::ConnHeader& header, int64_t now_ns) {
  stats_.handed(header.listener);
  stats_.handoff_duration.observe(static_cast<double>(now_ns - header.accepted_at_ns) * 1e-9);
}

void Balancer::record_failed_send(const Backend& b, const std::error_code& ec, size_t connections) {
  const bool busy = ec == std::errc::resource_unavailable_try_again;
  stats_.handoff_retries[busy ? "worker_busy" : "worker_gone"] += connections;
  // Under a burst this happens per connection: log at most once a second,
  // with how many were counted since (the counter has every one).
  unlogged_retries_ += connections;
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

void Balancer::hand_out_queued() {
  queue_.hand_out(
      [this](UniqueFd& fd, workers::ConnHeader& header) { return hand_off(fd, header); });
}

void Balancer::close_queue() {
  // Staged connections were accepted before the shutdown: they go out first.
  flush_staged();
  queue_.close_all();
}

}  // namespace occasional::gateway
