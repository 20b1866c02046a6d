#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace occasional::metrics {

// A histogram with fixed bucket bounds, cheap to observe on the hot path
// (no allocation, no lock: the coordinator has one thread).
struct DurationHistogram {
  static constexpr std::array<double, 12> kBounds{
      0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.025, 0.1, 1.0};
  std::array<uint64_t, kBounds.size()> counts{};  // not cumulative; +Inf is `count`
  uint64_t count = 0;
  double sum = 0;

  void observe(double seconds) {
    for (size_t i = 0; i < kBounds.size(); ++i)
      if (seconds <= kBounds[i]) {
        ++counts[i];
        break;
      }
    ++count;
    sum += seconds;
  }
};

// One listener's share of the counters below (for /v1/status).
struct ListenerCounts {
  std::string address;
  uint64_t accepted = 0;
  uint64_t handed_off = 0;
  uint64_t rejected = 0;
};

// The data plane's counters, by reason where a path is degraded. The
// gateway bumps them; /metrics reads them at scrape time.
struct ConnectionStats {
  uint64_t accepted = 0;
  uint64_t handed_off = 0;
  uint64_t handoff_batches = 0;  // `conns` messages: several connections in one
  uint64_t pending = 0;          // gauge: waiting in service queues now
  uint64_t peeking = 0;          // gauge: being routed now
  uint64_t routing_max = 0;      // the bound on `peeking`, from the fd limit
  // Connections the gateway closed itself: peek_timeout, too_large, malformed,
  // bad_host, no_route, closed_before_route, peek_error, routing_cap,
  // register_failed, internal_error, queue_full, queue_timeout, no_service,
  // no_worker, spawn_failed, shutdown.
  std::map<std::string, uint64_t> rejected;
  // accept4() failures: emfile, enfile, enobufs, enomem, other.
  std::map<std::string, uint64_t> accept_errors;
  // Times a listener stopped accepting because every service it feeds had a
  // full pending queue, and how many listeners are holding now (a gauge).
  uint64_t accept_holds = 0;
  uint64_t listeners_held = 0;
  // Yields of the CPU between two sweeps (accept4 until EAGAIN) of one wake-up, by whether other
  // work ran meanwhile (shared) or not (free): docs/gateway.md, "Batches".
  uint64_t accept_yields_shared = 0;
  uint64_t accept_yields_free = 0;
  // Handoffs that failed and were retried elsewhere: worker_busy, worker_gone.
  std::map<std::string, uint64_t> handoff_retries;
  // Accept to handed off (the worker's socket holds the fd), queue wait included.
  DurationHistogram handoff_duration;

  // By listener name; a node's address stays put, so a Listener keeps a pointer to its own.
  std::map<std::string, ListenerCounts, std::less<>> listeners;

  // `listener`: the connection's listener (header.listener), if known.
  void reject(const std::string& reason, std::string_view listener = {}) {
    ++rejected[reason];
    if (auto it = listeners.find(listener); it != listeners.end()) ++it->second.rejected;
  }
  void handed(std::string_view listener) {
    ++handed_off;
    if (auto it = listeners.find(listener); it != listeners.end()) ++it->second.handed_off;
  }
};

}  // namespace occasional::metrics
