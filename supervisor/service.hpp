#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <string>
#include <vector>

#include "supervisor/child_reaper.hpp"
#include "supervisor/exit_record.hpp"
#include "supervisor/guardian.hpp"
#include "supervisor/process_spec.hpp"
#include "supervisor/restart_policy.hpp"
#include "supervisor/service_observer.hpp"

namespace occasional::supervisor {

struct ServiceConfig {
  std::string name;
  ProcessSpec process;
  int replicas = 1;
  RestartConfig restart;
  // Between SIGTERM and SIGKILL of the process group when stopping.
  Duration grace = std::chrono::seconds(10);
};

// A pool of replicas of one command, kept running by its RestartPolicy.
// Carries out the policy's actions: spawns, timers, signals, exit records.
class Service {
 public:
  Service(boost::asio::io_context& io, ServiceConfig config, ChildReaper& reaper,
          Guardian& guardian, ServiceObserver& observer);
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // Starts every replica; also clears a failed state.
  void start();
  // SIGTERM to every process group, SIGKILL at the grace deadline.
  void stop();
  // SIGKILL to every process group now.
  void kill_all();
  void scale(int replicas);

  const std::string& name() const { return config_.name; }
  bool failed() const { return policy_.failed(); }
  // No process and nothing scheduled.
  bool idle() const;
  int replica_count() const { return policy_.desired_replicas(); }
  ReplicaState replica_state(int replica) const { return policy_.state(replica); }
  pid_t replica_pid(int replica) const { return replicas_.at(static_cast<size_t>(replica))->pid; }

 private:
  struct Replica {
    explicit Replica(boost::asio::io_context& io) : timer(io) {}
    pid_t pid = -1;
    WallTime started_wall{};
    MonoTime started_mono{};
    boost::asio::steady_timer timer;  // backoff or grace, never both
  };

  void handle(int replica, PolicyEvent event);
  void report_idle();
  void apply(const std::vector<Action>& actions);
  void spawn(int replica);
  void on_exit(int replica, const siginfo_t& info);
  void record_start_failure(int replica, int error, const char* call);
  void finish_exit(int replica, ExitRecord record);
  void signal_group(int replica, int signal);
  void arm_timer(int replica, Duration delay, PolicyEventKind event);
  void grow_to(int size);

  boost::asio::io_context& io_;
  ServiceConfig config_;
  ChildReaper& reaper_;
  Guardian& guardian_;
  ServiceObserver& observer_;
  RestartPolicy policy_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  bool idle_reported_ = false;
};

}  // namespace occasional::supervisor
