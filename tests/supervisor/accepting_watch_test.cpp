#include "supervisor/accepting_watch.hpp"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "tests/supervisor/real_peers.hpp"

namespace occasional::supervisor {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using real_peers::Child;
using real_peers::Listener;

struct AcceptingWatchTest : ::testing::Test {
  boost::asio::io_context io;
  AcceptingWatch watch{io};
  std::vector<std::string> said;  // "accepting" or "gave up: why"
  Clock::time_point said_at{};

  AcceptingWatch::Handlers handlers(const std::string& tag = "") {
    return {[this, tag] {
              said.push_back(tag + "accepting");
              said_at = Clock::now();
            },
            [this, tag](const std::string& why) {
              said.push_back(tag + "gave up: " + why);
              said_at = Clock::now();
            }};
  }

  template <class Pred>
  bool wait_for(Pred pred, Duration timeout = 10s) {
    return real_peers::run_until(io, pred, timeout);
  }
};

TEST_F(AcceptingWatchTest, SaysOnceWhenTheWorkerWaitsToAccept) {
  Listener l;
  Child c([&] { ::accept(l.fd, nullptr, nullptr); });
  watch.start(c.pid, l.inode, Clock::now() + 60s, handlers());
  ASSERT_TRUE(wait_for([&] { return !said.empty(); }));
  EXPECT_EQ(said, std::vector<std::string>{"accepting"});
  // Nothing more: the watch is over.
  EXPECT_FALSE(wait_for([&] { return said.size() > 1; }, 100ms));
}

// One never seen waiting (an io_uring server, one always busy) is given up
// on at the deadline, not looked at for as long as it runs.
TEST_F(AcceptingWatchTest, GivesUpOnAWorkerNotSeenAcceptingByTheDeadline) {
  Listener l;
  Child c([] { ::pause(); });
  const auto started = Clock::now();
  watch.start(c.pid, l.inode, started + 300ms, handlers());
  ASSERT_TRUE(wait_for([&] { return !said.empty(); }));
  EXPECT_EQ(said, std::vector<std::string>{"gave up: not seen waiting to accept in time"});
  EXPECT_GE(said_at - started, 300ms);
}

TEST_F(AcceptingWatchTest, ACancelledWatchSaysNothing) {
  Listener l;
  Child c([&] { ::accept(l.fd, nullptr, nullptr); });
  watch.start(c.pid, l.inode, Clock::now() + 60s, handlers());
  watch.cancel();
  EXPECT_FALSE(wait_for([&] { return !said.empty(); }, 300ms));
}

// A new process in the replica replaces the watch of the one before.
TEST_F(AcceptingWatchTest, AStartReplacesTheWatchUnderWay) {
  Listener l;
  Child sleeper([] { ::pause(); });
  Child acceptor([&] { ::accept(l.fd, nullptr, nullptr); });
  watch.start(sleeper.pid, l.inode, Clock::now() + 50ms, handlers("old "));
  watch.start(acceptor.pid, l.inode, Clock::now() + 60s, handlers("new "));
  ASSERT_TRUE(wait_for([&] { return !said.empty(); }));
  EXPECT_FALSE(wait_for([&] { return said.size() > 1; }, 200ms));
  EXPECT_EQ(said, std::vector<std::string>{"new accepting"});
}

}  // namespace
}  // namespace occasional::supervisor
