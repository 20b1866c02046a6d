#include "supervisor/event_log.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <regex>
#include <string>
#include <vector>

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

TEST(EventLogTest, TheTapGetsEachLineAsJsonWhateverTheFormat) {
  for (LogFormat format : {LogFormat::json, LogFormat::text}) {
    std::vector<std::string> tapped;
    const std::string out = capture(format, [&](EventLog& log) {
      log.set_tap([&](std::string_view line) { tapped.emplace_back(line); });
      log.event(LogLevel::warn, "exit")
          .str("service", "two words")
          .num("pid", 42)
          .real("uptime", 1.5)
          .flag("core", false);
    });
    ASSERT_EQ(tapped.size(), 1u);
    std::regex shape(
        R"re(\{"ts":"[0-9T:.Z-]+","level":"warn","event":"exit","service":"two words","pid":42,"uptime":1.500000,"core":false\}
)re");
    EXPECT_TRUE(std::regex_match(tapped[0], shape)) << tapped[0];
    // The log itself keeps its format, with the same timestamp.
    EXPECT_EQ(out.substr(format == LogFormat::json ? 7 : 0, 27), tapped[0].substr(7, 27)) << out;
    if (format == LogFormat::json) {
      EXPECT_EQ(out, tapped[0]);
    } else {
      EXPECT_NE(out.find("service=\"two words\" pid=42"), out.npos) << out;
    }
  }
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

// A full stderr pipe (a stuck log reader) must not stop the loop: lines
// are dropped and counted. The pipe's own file stays blocking, since the
// workers share it and expect their writes to wait.
TEST(EventLogTest, AFullPipeDropsAndCountsLinesWithoutBlockingOrChangingTheFd) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  {
    // Fill it through a file of our own, so `wr` stays as it is.
    UniqueFd filler(::open(("/proc/self/fd/" + std::to_string(wr.get())).c_str(),
                           O_WRONLY | O_NONBLOCK | O_CLOEXEC));
    ASSERT_TRUE(filler);
    const std::string chunk(4096, 'x');
    while (::write(filler.get(), chunk.data(), chunk.size()) > 0) {
    }
    ASSERT_EQ(errno, EAGAIN);
  }
  const int flags_before = ::fcntl(wr.get(), F_GETFL);
  // In a child with a deadline: before, the first line blocked for ever.
  int done[2];
  ASSERT_EQ(::pipe2(done, O_CLOEXEC), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    EventLog log(LogFormat::json, wr.get());
    for (int i = 0; i < 1000; ++i) log.event(LogLevel::info, "spam").num("i", i);
    const uint64_t dropped = log.dropped();
    (void)!::write(done[1], &dropped, sizeof dropped);
    ::_exit(0);
  }
  ::close(done[1]);
  pollfd pf{done[0], POLLIN, 0};
  const bool finished = ::poll(&pf, 1, 5000) == 1;
  uint64_t dropped = 0;
  if (finished) {
    EXPECT_EQ(::read(done[0], &dropped, sizeof dropped), ssize_t(sizeof dropped));
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(done[0]);
  ASSERT_TRUE(finished) << "logging to a full pipe blocked";
  EXPECT_EQ(dropped, 1000u);
  EXPECT_EQ(::fcntl(wr.get(), F_GETFL), flags_before);
  EXPECT_EQ(flags_before & O_NONBLOCK, 0);

  // Once the reader catches up, lines go through again.
  char buf[65536];
  pollfd in{rd.get(), POLLIN, 0};
  while (::poll(&in, 1, 0) == 1 && ::read(rd.get(), buf, sizeof buf) > 0) {
  }
  EventLog log(LogFormat::text, wr.get());
  log.event(LogLevel::info, "again");
  EXPECT_EQ(log.dropped(), 0u);
  wr.reset();
}

}  // namespace
}  // namespace occasional::supervisor
