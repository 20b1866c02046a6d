#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "supervisor/exit_record.hpp"
#include "supervisor/service_observer.hpp"
#include "supervisor/worker_link.hpp"
#include "workers/unique_fd.hpp"

namespace occasional::supervisor {

// How long a running worker that closed its control socket without saying
// `exit` may take to exit before it counts as a protocol error
// (channel_closed) and is killed: enough for an exit already under way.
inline constexpr std::chrono::milliseconds kChannelClosedGrace{200};

// The coordinator's side of one handoff worker's conversation
// (docs/protocol.md), over its WorkerLink: says hello, turns what the worker
// says into events for its Service, asks it to drain, and holds it to its
// word — a worker that said `exit`, or closed its control socket while
// running, must then exit in time or is reported broken. Lives as long as
// the worker process (it is made before the fork).
class WorkerProtocol {
 public:
  struct Handlers {
    // `ready` (true); `exit` or end of file (false): take no more connections.
    std::function<void(bool ready)> on_ready;
    std::function<void(const std::string& text)> on_status;
    // The worker broke the protocol, or did not exit when it had to
    // (`reason` is a metric label, `error` a sentence): it is to be killed.
    std::function<void(const char* reason, const std::string& error)> on_broken;
    // Whether the worker has exited, though its exit has not been handled yet.
    std::function<bool()> exited;
  };

  // `service` and `replica` name the worker to `observer`, which gets what
  // only observers use (closed connections, the shared closed counter).
  // `grace` is how long a worker that said `exit` may take to exit. Throws
  // boost::system::system_error when the loop cannot register `control`.
  WorkerProtocol(boost::asio::io_context& io, UniqueFd control, Duration grace, std::string service,
                 int replica, ServiceObserver& observer, Handlers handlers);
  WorkerProtocol(const WorkerProtocol&) = delete;
  WorkerProtocol& operator=(const WorkerProtocol&) = delete;

  // The worker runs: the coordinator speaks first.
  void start();
  // Asks the worker to finish its connections and exit within the grace
  // (whose deadline is the caller's). False when it cannot be told (its
  // socket is closed or full): the caller sends SIGTERM instead.
  bool drain();
  // Listens to the worker no more (it broke the protocol).
  void close() { link_.close(); }
  // The worker has exited: reads what it sent just before (an `exit`), and
  // returns the reason it stated, if any.
  std::optional<std::string> finish();

  // Where its connections are sent.
  WorkerLink& link() { return link_; }
  // Neither draining nor on its way out (it said `exit` or closed its
  // socket): what an upgrade can carry as it is.
  bool settled() const { return !draining_ && !stated_reason_ && !overdue_armed_; }

 private:
  void on_message(const workers::Message& message);
  void on_channel_closed();
  void expect_exit(Duration within, const char* reason);

  Duration grace_;
  std::string service_;
  int replica_;
  ServiceObserver& observer_;
  Handlers handlers_;
  std::optional<std::string> stated_reason_;
  bool draining_ = false;
  bool overdue_armed_ = false;
  // A deadline that fired may still have its handler queued after this is gone.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  boost::asio::steady_timer overdue_;
  WorkerLink link_;
};

}  // namespace occasional::supervisor
