#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace occasional::metrics {

// A snapshot of what the coordinator runs, taken when /metrics, /readyz or
// /v1/status is asked for. Plain values: the metrics module knows nothing
// of the supervisor.

struct WorkerStatus {
  int replica = 0;
  int64_t pid = -1;
  std::string state;  // running, backoff, stopping, stopped
  bool ready = false;
  double uptime_seconds = 0;
  uint32_t open_connections = 0;  // handoff: handed off and not yet `closed`
  std::string status_text{};      // the worker's last `status` / STATUS=; empty if none
  double restart_in_seconds = 0;  // backoff: until its restart
};

struct ExitSummary {
  int replica = 0;
  int64_t pid = -1;
  std::string started_at;  // RFC 3339
  std::string exited_at;
  double uptime_seconds = 0;
  std::string outcome;  // exited, killed, start_failed
  int code = 0;
  std::string signal;  // killed: SIGKILL, ...
  bool core_dumped = false;
  std::string description;
  std::string stated_reason;
};

struct ServiceStatus {
  std::string name;
  std::string mode;
  int replicas = 0;  // wanted
  bool failed = false;
  double retry_in_seconds = -1;  // failed: until it is started again; -1: not until asked
  bool stopped = false;          // stopped by an operator (or at shutdown)
  int ready_workers = 0;
  bool rolling_restart = false;
  std::vector<WorkerStatus> workers;
  std::vector<ExitSummary> recent_exits;  // newest last, at most 20
  // Restarts (starts that replaced an exited process) in each of the last
  // 60 minutes, oldest first; the last is the minute under way.
  std::vector<uint32_t> restarts_per_minute;
};

struct ListenerStatus {
  std::string name;
  std::string address;
  uint64_t accepted = 0;
  uint64_t handed_off = 0;
  uint64_t rejected = 0;  // closed by the gateway itself, any reason
};

// The process hub's figures (processes and messages, docs/messages.md), for
// a coordinator that runs one.
struct ProcessesStatus {
  uint64_t alive = 0;
  uint64_t spawned = 0;
  std::map<std::string, uint64_t> exits;  // by reason kind
  uint64_t channels = 0;
  uint64_t sends_dropped = 0;
  uint64_t monitors = 0;
  uint64_t links = 0;
  uint64_t protocol_errors = 0;
  uint64_t notices_dropped = 0;
  uint64_t connect_failures = 0;
};

struct Status {
  std::vector<ServiceStatus> services;
  std::vector<ListenerStatus> listeners;
  // Absent (and not exported) where no process hub runs.
  std::optional<ProcessesStatus> processes;
  uint64_t notify_rejected = 0;
  uint64_t orphans_reaped = 0;
  // The supervisor's own failures on the loop, by reason (logged, retried).
  std::map<std::string, uint64_t> supervisor_errors;
  uint64_t log_lines_dropped = 0;
};

}  // namespace occasional::metrics
