#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "supervisor/accepting_watch.hpp"
#include "supervisor/child_reaper.hpp"
#include "supervisor/exit_record.hpp"
#include "supervisor/guardian.hpp"
#include "supervisor/process_hub.hpp"
#include "supervisor/restart_policy.hpp"
#include "supervisor/rolling_restart.hpp"
#include "supervisor/service_config.hpp"
#include "supervisor/service_observer.hpp"
#include "supervisor/watchdog.hpp"
#include "supervisor/worker_protocol.hpp"

namespace occasional::supervisor {

// A pool of replicas of one command, kept running by its RestartPolicy: the
// loop that takes events (exits, what workers say, timers, operators' asks)
// to the policy and carries out its actions (spawns, signals, timers, exit
// records), and tracks which replicas are ready. Launching per mode is
// launch_worker's; the handoff protocol WorkerProtocol's; readiness
// `accepting` AcceptingWatch's; the watchdog Watchdog's; the rolling restart
// RollingRestart's.
class Service {
 public:
  // With `hub`, every worker is also a process of the hub's system, named
  // service/replica (docs/messages.md, "Workers are processes").
  Service(boost::asio::io_context& io, ServiceConfig config, ChildReaper& reaper,
          Guardian& guardian, ServiceObserver& observer, std::string notify_socket = {},
          ProcessHub* hub = nullptr);
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // Starts every replica; also clears a failed state.
  void start();
  // `drain` (handoff) or SIGTERM to every process group, SIGKILL at the grace deadline.
  void stop();
  // SIGKILL to every process group now.
  void kill_all();
  void scale(int replicas);
  // Replaces every running replica, one at a time: starts a new replica,
  // waits until it is ready, then drains (stops) the old one, so the service
  // never has fewer ready workers than before. False if one is under way.
  bool rolling_restart();
  bool rolling_restart_active() const { return rolling_.active(); }
  // A worker as a coordinator upgrade carries it over execve
  // (docs/supervision.md, "Upgrade"). The fds are not owned here: on the
  // way out they are the running coordinator's, on the way in adopt()
  // takes them.
  struct CarriedWorker {
    int replica = 0;
    pid_t pid = -1;
    int pidfd = -1;
    int control = -1;  // handoff: the coordinator's end of the control socket
    int counter = -1;  // handoff: the shared closed counter's memfd, or -1
    // Its channel to the process hub (the hub's end) and its id there, or -1.
    int process_fd = -1;
    uint32_t process_id = 0;
    bool takes_batches = false;
    uint64_t handed = 0;   // connections sent to it
    uint64_t counted = 0;  // the closed counter's last value used
    WallTime started_wall{};
    MonoTime started_mono{};
    std::string status_text;
    int consecutive = 0;
    std::vector<MonoTime> restarts;
  };
  // Why this service cannot be carried over an upgrade now (a sentence);
  // empty when it can: every wanted replica runs and is ready, nothing
  // is being restarted, drained or retried.
  std::string not_carriable() const;
  std::vector<CarriedWorker> carry() const;
  // Instead of start(): takes over the carried workers as they were
  // (ready ones are reported ready at once). Startup: throws
  // std::system_error when one cannot be registered on the loop.
  void adopt(const std::vector<CarriedWorker>& workers);

  // A NOTIFY_SOCKET datagram from replica's main process: "READY=1", "WATCHDOG=1", ...
  void on_notify(int replica, std::string_view assignment);

  const std::string& name() const { return config_.name; }
  const ServiceConfig& config() const { return config_; }
  bool failed() const { return policy_.failed(); }
  // When a failed service is started again (its cool-off); empty if it is not.
  std::optional<MonoTime> retry_at() const {
    if (!policy_.retry_pending()) return std::nullopt;
    return retry_timer_.expiry();
  }
  // No process and nothing scheduled.
  bool idle() const;
  int replica_count() const { return policy_.desired_replicas(); }
  int table_size() const { return policy_.table_size(); }
  ReplicaState replica_state(int replica) const { return policy_.state(replica); }
  pid_t replica_pid(int replica) const { return replicas_.at(static_cast<size_t>(replica))->pid; }
  MonoTime replica_started(int replica) const {
    return replicas_.at(static_cast<size_t>(replica))->started_mono;
  }
  // When a replica in backoff is restarted.
  MonoTime replica_restart_at(int replica) const {
    return replicas_.at(static_cast<size_t>(replica))->timer.expiry();
  }
  bool replica_ready(int replica) const {
    return replicas_.at(static_cast<size_t>(replica))->ready;
  }
  // The last `status` message or STATUS= of the replica's current process; empty if none.
  const std::string& replica_status_text(int replica) const {
    return replicas_.at(static_cast<size_t>(replica))->status_text;
  }

 private:
  struct Replica {
    explicit Replica(boost::asio::io_context& io)
        : timer(io), watchdog(io), accepting(io), deferred(io) {}
    pid_t pid = -1;
    std::optional<Address> process;  // its address in the hub's system
    WallTime started_wall{};
    MonoTime started_mono{};
    bool ready = false;
    std::unique_ptr<WorkerProtocol> protocol;  // handoff mode
    std::string status_text;
    boost::asio::steady_timer timer;  // backoff or grace, never both
    Watchdog watchdog;                // listen_fds with a watchdog
    AcceptingWatch accepting;         // listen_fds, readiness `accepting`
    // The retry of a spawn deferred for the coordinator's own exhaustion
    // (start_failed), `deferrals` in a row so far.
    boost::asio::steady_timer deferred;
    int deferrals = 0;
  };

  void handle(int replica, PolicyEvent event);
  void report_idle();
  void apply(const std::vector<Action>& actions);
  void spawn(int replica);
  // handoff: the protocol on the coordinator's end of the control socket.
  std::error_code open_protocol(int replica, UniqueFd control);
  void begin_readiness(int replica);
  void terminate(int replica);
  void set_ready(int replica, bool ready);
  void on_protocol_error(int replica, const char* reason, const std::string& error);
  void arm_watchdog(int replica);
  void look_for_accepting(int replica);
  void on_exit(int replica, const siginfo_t& info);
  void start_failed(int replica, int error, const char* call);
  void finish_exit(int replica, ExitRecord record);
  void signal_group(int replica, int signal);
  void arm_timer(int replica, Duration delay, PolicyEventKind event);
  void grow_to(int size);
  void next_replacement();

  boost::asio::io_context& io_;
  ServiceConfig config_;
  ChildReaper& reaper_;
  Guardian& guardian_;
  ServiceObserver& observer_;
  std::string notify_socket_;
  RestartPolicy policy_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  bool idle_reported_ = false;
  RollingRestart rolling_;
  boost::asio::steady_timer retry_timer_;  // a failed service's cool-off
  ProcessHub* hub_ = nullptr;
  ino_t listen_inode_ = 0;  // listen_fds: what look_for_accepting looks for
};

}  // namespace occasional::supervisor
