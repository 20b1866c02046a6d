#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "gateway/gateway_stats.hpp"
#include "gateway/pending_queue.hpp"
#include "supervisor/event_log.hpp"
#include "supervisor/worker_link.hpp"
#include "workers/protocol.hpp"
#include "workers/unique_fd.hpp"

namespace occasional::gateway {

struct BalancerConfig {
  uint32_t max_connections = 0;  // per worker; 0: no cap
  size_t queue_max = 1024;       // connections waiting for a ready worker
  std::chrono::milliseconds queue_timeout{5000};
};

// The ready workers of one handoff service and the connections waiting for
// one. Picks the worker with the fewest outstanding connections (round-robin
// among ties, below max_connections), sends it the fd with a `conn` header,
// and closes its own copy. With no worker to take it, a connection waits in a
// bounded queue until one is ready or its time is up: a restart refuses no
// connection.
class Balancer {
 public:
  Balancer(boost::asio::io_context& io, std::string service, BalancerConfig config,
           GatewayStats& stats, const supervisor::EventLog& log);

  void add(int replica, supervisor::WorkerLink* link);
  void remove(int replica);
  void on_closed(int replica);
  void dispatch(UniqueFd fd, workers::ConnHeader header);
  // Closes every queued connection (counted as `shutdown`).
  void close_queue();
  PendingQueue& queue() { return queue_; }

  size_t ready_workers() const { return backends_.size(); }
  size_t queued() const { return queue_.size(); }
  uint32_t outstanding(int replica) const;

 private:
  struct Backend {
    int replica;
    supervisor::WorkerLink* link;
    uint64_t outstanding;   // handed off, less `closed` messages
    uint64_t tried;         // the attempt_ that last tried it
    uint64_t counted_base;  // the worker's shared closed counter when it was added
  };
  // Handed off and not finished, by `closed` messages and the shared counter.
  static uint64_t open_connections(const Backend& b);
  // Tries each eligible worker in pick order; false when none took it.
  bool hand_off(UniqueFd& fd, const workers::ConnHeader& header);
  void drain_queue();
  void arm_retry();

  std::string service_;
  BalancerConfig config_;
  GatewayStats& stats_;
  const supervisor::EventLog& log_;
  std::vector<Backend> backends_;
  size_t next_ = 0;  // round-robin start among ties
  uint64_t attempt_ = 0;
  PendingQueue queue_;
  boost::asio::steady_timer retry_timer_;
  bool retry_armed_ = false;
  std::chrono::steady_clock::time_point last_retry_log_{};
  uint64_t unlogged_retries_ = 0;
};

}  // namespace occasional::gateway
