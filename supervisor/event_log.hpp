#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

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
    const EventLog& log_;
    std::string buf_;
  };

  explicit EventLog(LogFormat format, int fd = 2) : format_(format), fd_(fd) {}

  Line event(LogLevel level, std::string_view name) const { return Line(*this, level, name); }
  LogFormat format() const { return format_; }

 private:
  LogFormat format_;
  int fd_;
};

// "2026-11-23T22:04:49.123456Z": UTC, microseconds.
std::string rfc3339(std::chrono::system_clock::time_point t);
inline std::string rfc3339_now() {
  return rfc3339(std::chrono::system_clock::now());
}

}  // namespace occasional::supervisor
