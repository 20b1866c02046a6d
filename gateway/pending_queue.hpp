#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <functional>

#include "metrics/connection_stats.hpp"
#include "workers/protocol.hpp"
#include "workers/unique_fd.hpp"

namespace occasional::gateway {

struct QueueConfig {
  size_t max = 1024;  // connections waiting
  std::chrono::milliseconds timeout{5000};
};

// Connections of one service waiting for a worker (none ready, all at their
// cap, inetd at its process cap), oldest first. Bounded in size and time:
// a connection that does not fit is closed as `queue_full`, one that waits
// too long as `queue_timeout`. Listeners that feed only full queues stop
// accepting (see Listener), so `queue_full` is rare: it takes a routed
// listener or `max` 0.
class PendingQueue {
 public:
  // Takes the connection (and resets `fd`; it may move `header`), or returns false.
  using Taker = std::function<bool(UniqueFd& fd, workers::ConnHeader& header)>;

  PendingQueue(boost::asio::io_context& io, QueueConfig config, metrics::ConnectionStats& stats);

  void push(UniqueFd fd, workers::ConnHeader header);
  // Offers connections in order until `take` refuses one.
  void hand_out(const Taker& take);
  // Closes every waiting connection (counted as `shutdown`).
  void close_all();

  // Never true with `max` 0 (no queue): holding the listeners back would
  // then stop them for good.
  bool full() const { return config_.max > 0 && queue_.size() >= config_.max; }
  // Called when a full queue has room again.
  void on_room(std::function<void()> f) { on_room_ = std::move(f); }

  bool empty() const { return queue_.empty(); }
  size_t size() const { return queue_.size(); }

 private:
  struct Pending {
    UniqueFd fd;
    workers::ConnHeader header;
    std::chrono::steady_clock::time_point deadline;
  };

  void pop(const char* reject_reason);
  void arm_timer();
  void expire();

  QueueConfig config_;
  metrics::ConnectionStats& stats_;
  std::deque<Pending> queue_;
  boost::asio::steady_timer timer_;
  bool timer_armed_ = false;
  std::function<void()> on_room_;
};

}  // namespace occasional::gateway
