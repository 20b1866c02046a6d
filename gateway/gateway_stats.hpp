#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace occasional::gateway {

// The gateway's counters, by reason where a path is degraded. The metrics
// module exports them; tests read them through the event log and /proc.
struct GatewayStats {
  uint64_t accepted = 0;
  uint64_t handed_off = 0;
  uint64_t pending = 0;  // gauge: waiting in service queues now
  uint64_t peeking = 0;  // gauge: being routed now
  // Connections the gateway closed itself: peek_timeout, too_large, malformed,
  // no_route, closed_before_route, queue_full, queue_timeout, no_service, shutdown.
  std::map<std::string, uint64_t> rejected;
  // accept4() failures: emfile, enfile, enobufs, enomem, other.
  std::map<std::string, uint64_t> accept_errors;
  // Handoffs that failed and were retried elsewhere: worker_busy, worker_gone.
  std::map<std::string, uint64_t> handoff_retries;

  void reject(const std::string& reason) { ++rejected[reason]; }
};

}  // namespace occasional::gateway
