#include "supervisor/watchdog.hpp"

#include <gtest/gtest.h>

namespace occasional::supervisor {
namespace {

using namespace std::chrono_literals;

// Runs the loop until `done` or a deadline far beyond any timer here.
template <typename Done>
void run_until(boost::asio::io_context& io, Done done) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!done() && std::chrono::steady_clock::now() < deadline) io.run_one_for(10ms);
}

TEST(WatchdogTest, TimesOutOnceWhenNotKickedInTime) {
  boost::asio::io_context io;
  Watchdog w(io);
  EXPECT_FALSE(w.armed());
  int timeouts = 0;
  w.kick(1ms, [&] { ++timeouts; });
  EXPECT_TRUE(w.armed());
  run_until(io, [&] { return timeouts > 0; });
  io.poll();
  EXPECT_EQ(timeouts, 1);
}

// A kick replaces the deadline and the callback of the one before it.
TEST(WatchdogTest, AKickPostponesTheTimeout) {
  boost::asio::io_context io;
  Watchdog w(io);
  int early = 0, late = 0;
  w.kick(1ms, [&] { ++early; });
  w.kick(1h, [&] { ++late; });
  // The first deadline has long passed when this returns.
  io.run_for(50ms);
  EXPECT_EQ(early, 0);
  EXPECT_EQ(late, 0);
  EXPECT_TRUE(w.armed());
}

TEST(WatchdogTest, DisarmedItNeverTimesOut) {
  boost::asio::io_context io;
  Watchdog w(io);
  int timeouts = 0;
  w.kick(1ms, [&] { ++timeouts; });
  w.disarm();
  EXPECT_FALSE(w.armed());
  io.run_for(50ms);
  EXPECT_EQ(timeouts, 0);
}

}  // namespace
}  // namespace occasional::supervisor
