#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/pending_queue.hpp"
#include "metrics/connection_stats.hpp"
#include "supervisor/event_log.hpp"
#include "supervisor/worker_link.hpp"
#include "workers/protocol.hpp"
#include "workers/unique_fd.hpp"

namespace occasional::gateway {

// How a burst's connections are dealt out to the workers (docs/gateway.md,
// "Batches").
enum class BurstMode {
  automatic,  // runs when the service has one CPU (CpuBudget::one_cpu), else spread
  spread,     // each connection to the least loaded worker
  runs,       // up to a message's worth to the least loaded worker before the next gets any
};
const char* burst_mode_name(BurstMode mode);
// "auto", "spread" or "runs"; nullopt for anything else.
std::optional<BurstMode> parse_burst_mode(std::string_view name);

struct BalancerConfig {
  uint32_t max_connections = 0;  // per worker; 0: no cap
  size_t queue_max = 1024;       // connections waiting for a ready worker
  std::chrono::milliseconds queue_timeout{5000};
  BurstMode burst = BurstMode::automatic;  // the Balancer takes spread or runs
};

// The ready workers of one handoff service and the connections waiting for
// one. Picks the worker with the fewest outstanding connections (round-robin
// among ties, below max_connections), sends it the fd with a `conn` header,
// and closes its own copy. With no worker to take it, a connection waits in a
// bounded queue until one is ready or its time is up: a restart refuses no
// connection.
//
// During a burst (a listener taking several waiting connections in one
// wake-up, between begin_burst and end_burst), a worker that takes `conns`
// messages gets the connections picked for it in one message: one sendmsg
// and one wake-up for up to kStageMax connections instead of one each
// (docs/gateway.md, "Batches"). With BurstMode::runs the worker picked
// first keeps taking the burst's connections until it has kStageMax of them
// (or is at max_connections): on one CPU, spreading a burst wider buys no
// parallelism and costs a wake-up and two context switches per worker.
class Balancer {
 public:
  Balancer(boost::asio::io_context& io, std::string service, BalancerConfig config,
           metrics::ConnectionStats& stats, const supervisor::EventLog& log);

  void add(int replica, supervisor::WorkerLink* link);
  void remove(int replica);
  void on_closed(int replica);
  void dispatch(UniqueFd fd, workers::ConnHeader header);
  void begin_burst() { bursting_ = true; }
  // Sends what the burst staged, one message per worker.
  void end_burst();
  // Closes every queued connection (counted as `shutdown`).
  void close_queue();
  PendingQueue& queue() { return queue_; }

  // A ready worker's accounting, carried over a coordinator upgrade
  // (docs/supervision.md, "Upgrade"): connections handed and not finished,
  // and the shared closed counter's value when it was added.
  struct Carried {
    uint64_t outstanding = 0;
    uint64_t counted_base = 0;
  };
  std::optional<Carried> carry(int replica) const;
  void restore(int replica, Carried carried);
  // Nothing staged for any worker, nothing queued.
  bool idle() const;

  size_t ready_workers() const { return backends_.size(); }
  size_t queued() const { return queue_.size(); }
  uint32_t outstanding(int replica) const;

 private:
  struct Staged {
    UniqueFd fd;
    workers::ConnHeader header;
  };
  struct Backend {
    int replica = -1;
    supervisor::WorkerLink* link = nullptr;
    uint64_t outstanding = 0;      // handed off or staged, less `closed` messages
    uint64_t tried = 0;            // the attempt_ that last tried it
    uint64_t counted_base = 0;     // the worker's shared closed counter when it was added
    std::vector<Staged> staged{};  // picked for this worker, to go in one `conns`
  };
  // Most connections staged for one worker before they go at once.
  static constexpr size_t kStageMax = 8;
  // Handed off and not finished, by `closed` messages and the shared counter.
  static uint64_t open_connections(const Backend& b);
  // Tries each eligible worker in pick order (skipping `exclude`); false
  // when none took it. During a burst a worker that takes batches gets it
  // staged, to be sent by end_burst(); `stage` false sends at once.
  bool hand_off(UniqueFd& fd, workers::ConnHeader& header, bool stage = true, int exclude = -1);
  // BurstMode::runs: stages the connection for the worker taking the
  // current run; false when that run is over.
  bool stage_in_run(UniqueFd& fd, workers::ConnHeader& header);
  // Stages a connection for `b`; a full message goes out at once and ends
  // the run.
  void stage_for(Backend& b, UniqueFd& fd, workers::ConnHeader& header);
  // Sends what is staged for each worker, one message per worker.
  void flush_staged();
  void flush(Backend& b);
  // A connection went to a worker: counted, and its accept-to-handoff time observed.
  void handed(const workers::ConnHeader& header, int64_t now_ns);
  // A send of `connections` failed: counts them and logs (at most a line a second).
  void record_failed_send(const Backend& b, const std::error_code& ec, size_t connections = 1);
  void hand_out_queued();
  void arm_retry();

  std::string service_;
  BalancerConfig config_;
  metrics::ConnectionStats& stats_;
  const supervisor::EventLog& log_;
  std::vector<Backend> backends_;
  size_t next_ = 0;  // round-robin start among ties
  uint64_t attempt_ = 0;
  PendingQueue queue_;
  boost::asio::steady_timer retry_timer_;
  bool retry_armed_ = false;
  std::chrono::steady_clock::time_point last_retry_log_{};
  uint64_t unlogged_retries_ = 0;
  bool bursting_ = false;
  // With BurstMode::runs: the index of the worker taking the current run.
  static constexpr size_t kNoRun = static_cast<size_t>(-1);
  size_t run_ = kNoRun;
  // The message being sent; kept so that encoding reuses its capacity.
  std::string message_;
};

}  // namespace occasional::gateway
