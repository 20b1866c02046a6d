#include "supervisor/event_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <regex>
#include <string>

namespace occasional::supervisor {
namespace {

std::string capture(LogFormat format, auto&& write) {
  int p[2];
  EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
  {
    EventLog log(format, p[1]);
    write(log);
  }
  ::close(p[1]);
  std::string out;
  char buf[1024];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(p[0]);
  return out;
}

TEST(EventLogTest, JsonLineHasTimestampLevelEventAndEscapedFields) {
  std::string out = capture(LogFormat::json, [](EventLog& log) {
    log.event(LogLevel::warn, "exit").str("service", "we\"b\n").num("pid", 42).flag("core", true);
  });
  std::regex shape(
      R"re(\{"ts":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z","level":"warn","event":"exit","service":"we\\"b\\n","pid":42,"core":true\}
)re");
  EXPECT_TRUE(std::regex_match(out, shape)) << out;
}

TEST(EventLogTest, TextLineIsReadable) {
  std::string out = capture(LogFormat::text, [](EventLog& log) {
    log.event(LogLevel::info, "spawn").str("service", "web").num("pid", 7).str("note", "two words");
  });
  std::regex shape(
      R"re(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z info  spawn service=web pid=7 note="two words"
)re");
  EXPECT_TRUE(std::regex_match(out, shape)) << out;
}

TEST(EventLogTest, Rfc3339IsUtcWithMicroseconds) {
  std::chrono::system_clock::time_point t{std::chrono::microseconds(1'700'000'000'123'456)};
  EXPECT_EQ(rfc3339(t), "2023-11-14T22:13:20.123456Z");
}

}  // namespace
}  // namespace occasional::supervisor
