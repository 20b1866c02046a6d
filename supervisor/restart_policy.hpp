#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "supervisor/exit_record.hpp"

namespace occasional::supervisor {

enum class RestartMode { always, on_failure, never };

const char* restart_mode_name(RestartMode mode);
// The mode of that name (always, on-failure, never), or nullopt.
std::optional<RestartMode> parse_restart_mode(std::string_view name);

struct RestartConfig {
  RestartMode mode = RestartMode::always;
  // The first restart after a stable run is immediate; the k-th restart in a
  // row waits backoff_initial * 2^(k-2), at most backoff_max, shortened by up
  // to `jitter` (a fraction) at random so replicas do not restart in step.
  Duration backoff_initial = std::chrono::milliseconds(100);
  Duration backoff_max = std::chrono::seconds(30);
  double jitter = 0.2;
  // A worker that ran this long before exiting resets its backoff.
  Duration stable_after = std::chrono::seconds(10);
  // More than max_restarts restarts of one replica within `window` mark the
  // service failed: nothing restarts until a retry or start_service(). Per
  // replica, so that kills spread over many replicas are not a crash loop.
  int max_restarts = 10;
  Duration window = std::chrono::seconds(60);
  // A failed service is started again after `cooloff`, doubled for each
  // failure in a row up to kCooloffCap (Kubernetes' CrashLoopBackOff never
  // gives up either). Zero: failed stays failed (systemd's way).
  Duration cooloff = std::chrono::seconds(10);
};

// The longest cool-off of a failed service (unless `cooloff` is longer).
inline constexpr Duration kCooloffCap = std::chrono::minutes(5);

enum class ReplicaState {
  stopped,   // not running, nothing scheduled
  running,   // a process exists (starting or serving)
  backoff,   // waiting for a scheduled restart
  stopping,  // asked to stop, waiting for the exit
};

const char* replica_state_name(ReplicaState state);

enum class PolicyEventKind {
  start,            // operator or startup wants the replica running
  exited,           // the replica's process ended (or failed to start)
  backoff_elapsed,  // the scheduled restart is due
  stop,             // operator or shutdown wants it stopped
  grace_elapsed,    // stop grace is over and the process is still there
};

struct PolicyEvent {
  PolicyEventKind kind;
  bool clean_exit = false;  // exited: exit code 0
  Duration uptime{};        // exited: how long the process ran
};

enum class ActionKind {
  spawn,             // start a process for the replica now
  schedule_restart,  // arm a timer for `delay`, then send backoff_elapsed
  cancel_restart,    // disarm that timer
  terminate,         // ask the process to stop (SIGTERM / drain), arm the grace timer
  kill,              // SIGKILL the process group
  service_failed,    // intensity exceeded: the service is now failed
  schedule_retry,    // arm the service's timer for `delay`, then call retry_service()
};

struct Action {
  int replica;
  ActionKind kind;
  Duration delay{};

  bool operator==(const Action&) const = default;
};

// The restart policy of one service as a pure state machine:
// (replica state, event, now) -> (new state, actions). It performs no I/O and
// reads no clock; `unit_random` returns values in [0, 1) for the jitter.
class RestartPolicy {
 public:
  RestartPolicy(RestartConfig config, int replicas, std::function<double()> unit_random);

  std::vector<Action> on(int replica, PolicyEvent event, MonoTime now);
  // Clears a failed state and the restart history; starts stopped replicas.
  std::vector<Action> start_service();
  // The cool-off of a failed service is over: as start_service(), but a
  // failure soon after (within `window`) doubles the next cool-off.
  std::vector<Action> retry_service(MonoTime now);
  // The scheduled retry is off (the service is being stopped).
  void cancel_retry() { retry_pending_ = false; }
  bool retry_pending() const { return retry_pending_; }
  // The cool-off before the retry after the k-th failure in a row (k >= 1).
  Duration cooloff_delay(int k) const;
  // Grows or shrinks the replica set; new replicas start, removed ones stop.
  // Growing reuses the lowest stopped slots that are not wanted; shrinking
  // removes the highest wanted ones. Removed replicas stay in the table
  // (stopping/stopped) so their exit still lands.
  std::vector<Action> scale(int replicas);
  // One more wanted replica (a rolling restart's replacement); its spawn
  // action names the slot.
  std::vector<Action> add_replica();
  // `replica` is no longer wanted: it stops and is not restarted.
  std::vector<Action> retire(int replica);

  // A replica whose process was carried over a coordinator upgrade
  // (docs/supervision.md, "Upgrade"), with its restart history.
  struct Carried {
    int replica = 0;
    int consecutive = 0;
    std::vector<MonoTime> restarts{};
  };
  // Replaces the table: the carried replicas are running and wanted, every
  // other slot is stopped and not wanted; the service is not failed.
  void adopt(const std::vector<Carried>& carried);
  // The restarts of `replica` within the intensity window (for an upgrade).
  const std::deque<MonoTime>& restart_times(int replica) const {
    return replicas_.at(replica).restarts;
  }

  ReplicaState state(int replica) const { return replicas_.at(replica).state; }
  bool wanted(int replica) const { return replicas_.at(replica).wanted; }
  int consecutive_restarts(int replica) const { return replicas_.at(replica).consecutive; }
  bool failed() const { return failed_; }
  int desired_replicas() const { return desired_; }
  int table_size() const { return static_cast<int>(replicas_.size()); }
  const RestartConfig& config() const { return config_; }

  // The delay before the k-th consecutive restart (k >= 1), with jitter `u`.
  Duration backoff_delay(int k, double u) const;

 private:
  struct Replica {
    ReplicaState state = ReplicaState::stopped;
    int consecutive = 0;
    bool wanted = true;
    std::deque<MonoTime> restarts{};  // within the intensity window
  };

  int wanted_count() const;
  int free_slot();  // a stopped slot not wanted, else a new one
  void unwant(int replica, std::vector<Action>& actions);

  std::vector<Action> on_exited(int replica, PolicyEvent event, MonoTime now);

  RestartConfig config_;
  std::function<double()> unit_random_;
  std::vector<Replica> replicas_;
  int desired_;
  bool failed_ = false;
  bool retry_pending_ = false;
  int failures_in_row_ = 0;
  MonoTime retried_at_{};
};

}  // namespace occasional::supervisor
