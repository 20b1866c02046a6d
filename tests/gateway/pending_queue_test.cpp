#include "gateway/pending_queue.hpp"

#include <sys/socket.h>

#include <gtest/gtest.h>

#include <stdexcept>

namespace occasional::gateway {
namespace {

UniqueFd some_fd() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  ::close(sv[1]);
  return UniqueFd(sv[0]);
}

TEST(PendingQueueTest, FullAtMaxAndRoomIsReportedOnceWhenItLeavesFull) {
  boost::asio::io_context io;
  metrics::ConnectionStats stats;
  PendingQueue q(io, QueueConfig{2, std::chrono::seconds(5)}, stats);
  int rooms = 0;
  q.on_room([&rooms] { ++rooms; });
  q.push(some_fd(), {});
  EXPECT_FALSE(q.full());
  q.push(some_fd(), {});
  EXPECT_TRUE(q.full());
  int taken = 0;
  auto take_one = [&taken](UniqueFd& fd, const workers::ConnHeader&) {
    if (taken++ > 0) return false;
    fd.reset();
    return true;
  };
  q.hand_out(take_one);
  EXPECT_FALSE(q.full());
  EXPECT_EQ(rooms, 1);
  taken = 0;
  q.hand_out(take_one);  // from one to none: it was not full
  EXPECT_EQ(rooms, 1);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(stats.pending, 0u);
}

TEST(PendingQueueTest, ExpiryOfAFullQueueReportsRoom) {
  boost::asio::io_context io;
  metrics::ConnectionStats stats;
  PendingQueue q(io, QueueConfig{1, std::chrono::milliseconds(1)}, stats);
  int rooms = 0;
  q.on_room([&rooms] { ++rooms; });
  q.push(some_fd(), {});
  ASSERT_TRUE(q.full());
  io.run_for(std::chrono::seconds(5));  // returns once the expiry timer ran
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(rooms, 1);
  EXPECT_EQ(stats.rejected["queue_timeout"], 1u);
}

// What the expiry timer's work throws (here the listeners' resume) is
// counted and does not leave the Asio handler: the loop goes on, and what
// else has expired still expires.
TEST(PendingQueueTest, AThrowAtExpiryStaysInTheHandler) {
  boost::asio::io_context io;
  metrics::ConnectionStats stats;
  PendingQueue q(io, QueueConfig{1, std::chrono::milliseconds(1)}, stats);
  int rooms = 0;
  q.on_room([&rooms] {
    ++rooms;
    throw std::runtime_error("resume failed");
  });
  q.push(some_fd(), {});
  ASSERT_TRUE(q.full());
  EXPECT_NO_THROW(io.run_for(std::chrono::seconds(5)));
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(rooms, 1);
  EXPECT_EQ(stats.rejected["queue_timeout"], 1u);
  EXPECT_EQ(stats.rejected["internal_error"], 1u);
  q.push(some_fd(), {});
  q.push(some_fd(), {});  // full: queue_full
  io.restart();
  EXPECT_NO_THROW(io.run_for(std::chrono::seconds(5)));
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(stats.rejected["queue_timeout"], 2u);
  EXPECT_EQ(stats.rejected["internal_error"], 2u);
}

TEST(PendingQueueTest, WithoutAQueueItIsNeverFullSoListenersNeverHold) {
  boost::asio::io_context io;
  metrics::ConnectionStats stats;
  PendingQueue q(io, QueueConfig{0, std::chrono::seconds(5)}, stats);
  EXPECT_FALSE(q.full());
  q.push(some_fd(), {});
  EXPECT_TRUE(q.empty());
  EXPECT_FALSE(q.full());
  EXPECT_EQ(stats.rejected["queue_full"], 1u);
}

TEST(PendingQueueTest, ATakerThatThrowsClosesThatConnectionAndTheHandOutGoesOn) {
  boost::asio::io_context io;
  metrics::ConnectionStats stats;
  PendingQueue q(io, QueueConfig{4, std::chrono::seconds(5)}, stats);
  q.push(some_fd(), {});
  q.push(some_fd(), {});
  int calls = 0;
  EXPECT_NO_THROW(q.hand_out([&calls](UniqueFd& fd, workers::ConnHeader&) {
    if (calls++ == 0) throw std::bad_alloc();
    fd.reset();
    return true;
  }));
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(stats.rejected["internal_error"], 1u);
  EXPECT_EQ(stats.pending, 0u);
}

TEST(PendingQueueTest, AnHttpRoutedConnectionThatTimesOutIsAnswered503OthersAreClosedBare) {
  boost::asio::io_context io;
  metrics::ConnectionStats stats;
  PendingQueue q(io, QueueConfig{4, std::chrono::milliseconds(1)}, stats);
  int http[2], other[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, http), 0);
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, other), 0);
  UniqueFd http_client(http[0]), other_client(other[0]);
  workers::ConnHeader h;
  h.route = "http";
  q.push(UniqueFd(http[1]), h);
  h.route = "default";
  q.push(UniqueFd(other[1]), h);
  io.run_for(std::chrono::seconds(5));
  EXPECT_EQ(stats.rejected["queue_timeout"], 2u);
  char buf[512];
  ssize_t n = ::recv(http_client.get(), buf, sizeof buf, 0);
  ASSERT_GT(n, 0);
  EXPECT_TRUE(std::string(buf, static_cast<size_t>(n)).starts_with("HTTP/1.1 503 "));
  EXPECT_EQ(::recv(other_client.get(), buf, sizeof buf, 0), 0);
}

}  // namespace
}  // namespace occasional::gateway
