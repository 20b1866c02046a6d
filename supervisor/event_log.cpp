#include "supervisor/event_log.hpp"

#include "workers/json.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace occasional::supervisor {

using workers::append_json_string;

std::string rfc3339(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  auto secs = time_point_cast<seconds>(t);
  auto micros = duration_cast<microseconds>(t - secs).count();
  std::time_t tt = system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long>(micros));
  return buf;
}

namespace {
const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::debug:
      return "debug";
    case LogLevel::info:
      return "info";
    case LogLevel::warn:
      return "warn";
    case LogLevel::error:
      return "error";
  }
  return "?";
}

bool needs_quotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v)
    if (c == ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) < 0x20) return true;
  return false;
}
}  // namespace

namespace {
void json_head(std::string& out, const std::string& ts, LogLevel level, std::string_view event) {
  out += "{\"ts\":\"";
  out += ts;
  out += "\",\"level\":\"";
  out += level_name(level);
  out += "\",\"event\":";
  append_json_string(out, event);
}
}  // namespace

EventLog::Line::Line(const EventLog& log, LogLevel level, std::string_view event) : log_(log) {
  buf_.reserve(256);
  const std::string ts = rfc3339_now();
  if (log_.format_ == LogFormat::json) {
    json_head(buf_, ts, level, event);
  } else {
    tapped_text_ = static_cast<bool>(log_.tap_);
    if (tapped_text_) json_head(json_, ts, level, event);
    buf_ += ts;
    buf_ += ' ';
    std::string lv = level_name(level);
    lv.resize(5, ' ');
    buf_ += lv;
    buf_ += ' ';
    buf_ += event;
  }
}

EventLog::EventLog(LogFormat format, int fd) : format_(format), fd_(fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || S_ISREG(st.st_mode)) return;  // a file does not fill up
  if (S_ISSOCK(st.st_mode)) {
    socket_ = true;
    return;
  }
  // Opening a pipe or a terminal through /proc makes a new open file
  // description: O_NONBLOCK on it is ours alone.
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  own_.reset(::open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (own_) fd_ = own_.get();
}

void EventLog::write_line(const std::string& line) const {
  // One write per line keeps lines whole when several processes share stderr
  // (atomic up to PIPE_BUF bytes on a pipe).
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = socket_ ? ::send(fd_, p, left, MSG_DONTWAIT | MSG_NOSIGNAL) : ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      ++dropped_;
      return;
    }
    if (n <= 0) return;  // stderr is gone; the log cannot report its own failure
    p += n;
    left -= static_cast<size_t>(n);
  }
}

EventLog::Line::~Line() {
  buf_ += log_.format_ == LogFormat::json ? "}\n" : "\n";
  log_.write_line(buf_);
  if (tapped_text_) {
    json_ += "}\n";
    log_.tap_(json_);
  } else if (log_.tap_ && log_.format_ == LogFormat::json) {
    log_.tap_(buf_);
  }
}

void EventLog::Line::json_key(std::string& out, std::string_view k) {
  out.push_back(',');
  append_json_string(out, k);
  out.push_back(':');
}

void EventLog::Line::key(std::string_view k) {
  if (tapped_text_) json_key(json_, k);
  if (log_.format_ == LogFormat::json) {
    json_key(buf_, k);
  } else {
    buf_.push_back(' ');
    buf_ += k;
    buf_.push_back('=');
  }
}

EventLog::Line& EventLog::Line::str(std::string_view k, std::string_view value) {
  key(k);
  if (tapped_text_) append_json_string(json_, value);
  if (log_.format_ == LogFormat::json || needs_quotes(value))
    append_json_string(buf_, value);
  else
    buf_ += value;
  return *this;
}

EventLog::Line& EventLog::Line::num(std::string_view k, int64_t value) {
  key(k);
  buf_ += std::to_string(value);
  if (tapped_text_) json_ += std::to_string(value);
  return *this;
}

EventLog::Line& EventLog::Line::real(std::string_view k, double value) {
  key(k);
  char tmp[32];
  std::snprintf(tmp, sizeof tmp, "%.6f", value);
  buf_ += tmp;
  if (tapped_text_) json_ += tmp;
  return *this;
}

EventLog::Line& EventLog::Line::flag(std::string_view k, bool value) {
  key(k);
  buf_ += value ? "true" : "false";
  if (tapped_text_) json_ += value ? "true" : "false";
  return *this;
}

}  // namespace occasional::supervisor
