#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "workers/unique_fd.hpp"

namespace occasional::supervisor {

enum class LogFormat { json, text };
enum class LogLevel { debug, info, warn, error };

// The event log: one line per lifecycle step on stderr (or any fd), either a
// JSON object {"ts":..., "level":..., "event":..., fields...} or readable text.
// Timestamps are UTC RFC 3339 with microseconds.
class EventLog {
 public:
  // Builds one line; written with a single write() when it goes out of scope.
  class Line {
   public:
    Line(const EventLog& log, LogLevel level, std::string_view event);
    Line(const Line&) = delete;
    Line& operator=(const Line&) = delete;
    ~Line();

    Line& str(std::string_view key, std::string_view value);
    Line& num(std::string_view key, int64_t value);
    Line& real(std::string_view key, double value);
    Line& flag(std::string_view key, bool value);

   private:
    void key(std::string_view k);
    void json_key(std::string& out, std::string_view k);
    const EventLog& log_;
    std::string buf_;
    // The JSON form for the tap when the log itself is text; empty otherwise.
    std::string json_;
    bool tapped_text_ = false;
  };

  // Writes never block the loop: a line that does not fit into a full pipe
  // or socket is dropped and counted. `fd` itself is left as it is (its
  // O_NONBLOCK flag is shared with every process that inherited it, workers
  // included): a pipe or terminal is reopened through /proc/self/fd as a
  // non-blocking file of our own, a socket is written with MSG_DONTWAIT.
  explicit EventLog(LogFormat format, int fd = 2);

  Line event(LogLevel level, std::string_view name) const { return Line(*this, level, name); }
  LogFormat format() const { return format_; }
  // Lines dropped because the log's reader did not keep up.
  uint64_t dropped() const { return dropped_; }
  // Also hands every line, as one JSON object (whatever the format), to
  // `tap` (the admin endpoint's /v1/events). The tap must not log.
  void set_tap(std::function<void(std::string_view json_line)> tap) { tap_ = std::move(tap); }

 private:
  void write_line(const std::string& line) const;

  LogFormat format_;
  int fd_;
  UniqueFd own_;  // the reopened non-blocking file, when there is one
  bool socket_ = false;
  mutable uint64_t dropped_ = 0;
  std::function<void(std::string_view)> tap_;
};

// "2026-11-23T22:04:49.123456Z": UTC, microseconds.
std::string rfc3339(std::chrono::system_clock::time_point t);
inline std::string rfc3339_now() {
  return rfc3339(std::chrono::system_clock::now());
}

}  // namespace occasional::supervisor
