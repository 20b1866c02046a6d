#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "supervisor/child_reaper.hpp"
#include "supervisor/exit_record.hpp"
#include "supervisor/guardian.hpp"
#include "supervisor/process_spec.hpp"
#include "supervisor/restart_policy.hpp"
#include "supervisor/rolling_restart.hpp"
#include "supervisor/service_observer.hpp"
#include "supervisor/watchdog.hpp"
#include "supervisor/worker_link.hpp"
#include "workers/worker_mode.hpp"

namespace occasional::supervisor {

// When a listen_fds worker starts taking connections, as systemd's Type=.
enum class Readiness {
  notify,     // on READY=1 (Type=notify)
  started,    // once it runs (Type=exec)
  accepting,  // on READY=1, or once it is seen waiting to accept on the listener
};

const char* readiness_name(Readiness readiness);
// The readiness of that name (notify, started, accepting), or nullopt.
std::optional<Readiness> parse_readiness(std::string_view name);

// How long a running worker that closed its control socket without saying
// `exit` may take to exit before it counts as a protocol error
// (channel_closed) and is killed: enough for an exit already under way.
inline constexpr std::chrono::milliseconds kChannelClosedGrace{200};

struct ServiceConfig {
  std::string name;
  ProcessSpec process;
  workers::WorkerMode mode = workers::WorkerMode::plain;
  int replicas = 1;
  RestartConfig restart;
  // Between SIGTERM (or `drain`) and SIGKILL of the process group when stopping.
  Duration grace = std::chrono::seconds(10);
  // listen_fds: the listening socket (borrowed) and its name for LISTEN_FDNAMES.
  int listen_fd = -1;
  std::string listener_name;
  // listen_fds: once it has sent READY=1, the worker must send WATCHDOG=1 at
  // least this often; zero: no watchdog.
  Duration watchdog{};
  // listen_fds: gunicorn says READY=1; uvicorn and Python's http.server do not.
  Readiness readiness = Readiness::accepting;
  // readiness `accepting`: a worker not seen waiting to accept by then is
  // taken as ready and no longer looked at (docs/gateway.md).
  Duration accept_probe_for = std::chrono::seconds(60);
};

// A pool of replicas of one command, kept running by its RestartPolicy.
// Carries out the policy's actions: spawns, timers, signals, exit records;
// tracks readiness and the worker's control socket.
class Service {
 public:
  Service(boost::asio::io_context& io, ServiceConfig config, ChildReaper& reaper,
          Guardian& guardian, ServiceObserver& observer, std::string notify_socket = {});
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
        : timer(io), watchdog(io), probe(io), overdue(io) {}
    pid_t pid = -1;
    WallTime started_wall{};
    MonoTime started_mono{};
    bool ready = false;
    std::unique_ptr<WorkerLink> link;  // handoff mode
    std::optional<std::string> stated_reason;
    std::string status_text;
    boost::asio::steady_timer timer;  // backoff or grace, never both
    Watchdog watchdog;                // listen_fds with a watchdog
    boost::asio::steady_timer probe;  // listen_fds, readiness `accepting`
    Duration probe_every{};
    // A running worker that said `exit` or closed its control socket must
    // exit by this deadline (exit_overdue, channel_closed).
    // Also: the retry of a spawn deferred for the coordinator's own
    // exhaustion (start_failed), `deferrals` in a row so far.
    boost::asio::steady_timer overdue;
    int deferrals = 0;
  };

  void handle(int replica, PolicyEvent event);
  void report_idle();
  void apply(const std::vector<Action>& actions);
  void spawn(int replica);
  void terminate(int replica);
  void set_ready(int replica, bool ready);
  void on_message(int replica, const workers::Message& message);
  void on_protocol_error(int replica, const char* reason, const std::string& error);
  void on_channel_closed(int replica);
  void expect_exit(int replica, Duration within, const char* reason);
  void arm_watchdog(int replica);
  void look_for_accepting(int replica);
  void on_exit(int replica, const siginfo_t& info);
  void start_failed(int replica, int error, const char* call);
  void record_start_failure(int replica, int error, const char* call);
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
  ino_t listen_inode_ = 0;                 // listen_fds: what look_for_accepting looks for
};

}  // namespace occasional::supervisor
