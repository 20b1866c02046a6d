#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "metrics/connection_stats.hpp"
#include "supervisor/event_log.hpp"

namespace occasional::gateway {

// Failures on the event loop that close a connection (the reactor refuses
// its fd, a handler throws): each is counted by reason; a `route_failed`
// line is logged at most once a second, with how many went unlogged, so
// that a flood of them cannot flood the log.
class LoopFailures {
 public:
  // `listener`, if not empty, is named in each line.
  LoopFailures(metrics::ConnectionStats& stats, const supervisor::EventLog& log,
               std::string listener = {})
      : stats_(stats), log_(log), listener_(std::move(listener)) {}

  void record(const char* reason, const char* error) {
    stats_.reject(reason);
    ++unlogged_;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_line_ < std::chrono::seconds(1)) return;
    auto line = log_.event(supervisor::LogLevel::error, "route_failed");
    if (!listener_.empty()) line.str("listener", listener_);
    line.str("reason", reason)
        .str("error", error)
        .num("failures_since_last_line", static_cast<int64_t>(unlogged_))
        .str("action", "connection closed");
    last_line_ = now;
    unlogged_ = 0;
  }

 private:
  metrics::ConnectionStats& stats_;
  const supervisor::EventLog& log_;
  std::string listener_;
  std::chrono::steady_clock::time_point last_line_{};
  uint64_t unlogged_ = 0;
};

}  // namespace occasional::gateway
