#pragma once

#include <boost/asio/io_context.hpp>

#include "gateway/pending_queue.hpp"
#include "metrics/connection_stats.hpp"
#include "supervisor/inetd_service.hpp"
#include "workers/protocol.hpp"
#include "workers/unique_fd.hpp"

namespace occasional::gateway {

// The gateway side of an inetd service: starts one process per connection;
// at the process cap the connection waits in the queue until a process exits.
class InetdLauncher {
 public:
  InetdLauncher(boost::asio::io_context& io, supervisor::InetdService& service, QueueConfig queue,
                metrics::ConnectionStats& stats);

  void dispatch(UniqueFd fd, workers::ConnHeader header);
  // A process of this service exited: its slot is free.
  void on_exited() {
    // A process that fails to start exits inside launch(): no nested hand-out.
    if (!launching_) hand_out_queued();
  }
  void close_queue() { queue_.close_all(); }
  size_t queued() const { return queue_.size(); }
  PendingQueue& queue() { return queue_; }
  const PendingQueue& queue() const { return queue_; }

 private:
  bool launch(UniqueFd& fd, const workers::ConnHeader& header);
  void hand_out_queued();

  supervisor::InetdService& service_;
  metrics::ConnectionStats& stats_;
  PendingQueue queue_;
  bool launching_ = false;
};

}  // namespace occasional::gateway
