#include "gateway/pending_queue.hpp"

#include <exception>

#include "gateway/http_refusal.hpp"

namespace occasional::gateway {

namespace {

// A connection routed by HTTP has sent a request: it is answered (503).
void refuse(const UniqueFd& fd, const workers::ConnHeader& header, const char* reason) {
  if (header.route == "http") send_http_refusal(fd.get(), reason);
}

}  // namespace

PendingQueue::PendingQueue(boost::asio::io_context& io, QueueConfig config,
                           metrics::ConnectionStats& stats)
    : config_(config), stats_(stats), timer_(io) {}

void PendingQueue::push(UniqueFd fd, workers::ConnHeader header) {
  if (queue_.size() >= config_.max) {
    refuse(fd, header, "queue_full");
    stats_.reject("queue_full", header.listener);
    return;  // fd closes here
  }
  queue_.push_back(
      {std::move(fd), std::move(header), std::chrono::steady_clock::now() + config_.timeout});
  ++stats_.pending;
  arm_timer();
}

void PendingQueue::hand_out(const Taker& take) {
  while (!queue_.empty()) {
    Pending& p = queue_.front();
    bool taken = false;
    try {
      taken = take(p.fd, p.header);
    } catch (const std::exception&) {
      // Hand-outs run from timers and worker events: what a handoff throws
      // (out of memory) closes that connection, not the coordinator.
      pop("internal_error");
      continue;
    }
    if (!taken) break;
    pop(nullptr);
  }
}

void PendingQueue::pop(const char* reject_reason) {
  const bool was_full = full();
  if (reject_reason) {
    refuse(queue_.front().fd, queue_.front().header, reject_reason);
    stats_.reject(reject_reason, queue_.front().header.listener);
  }
  queue_.pop_front();
  --stats_.pending;
  if (was_full && on_room_) on_room_();
}

void PendingQueue::arm_timer() {
  if (timer_armed_ || queue_.empty()) return;
  timer_armed_ = true;
  timer_.expires_at(queue_.front().deadline);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;  // cancelled: `this` may be gone
    timer_armed_ = false;
    try {
      expire();
    } catch (const std::exception&) {
      // As in hand_out: what the listeners' resume (on_room_) or the re-arm
      // throws (out of memory) is counted here; out of the handler it would
      // end the event loop.
      stats_.reject("internal_error");
      timer_armed_ = false;
      try {
        arm_timer();
      } catch (const std::exception&) {
        timer_armed_ = false;  // the next push arms it
      }
    }
  });
}

void PendingQueue::expire() {
  const auto now = std::chrono::steady_clock::now();
  while (!queue_.empty() && queue_.front().deadline <= now) pop("queue_timeout");
  arm_timer();
}

void PendingQueue::close_all() {
  while (!queue_.empty()) pop("shutdown");
}

}  // namespace occasional::gateway
