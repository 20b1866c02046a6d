#include "gateway/dispatcher.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <memory>
#include <vector>

#include "workers/control_channel.hpp"

namespace occasional::gateway {
namespace {

// The Dispatcher keeps each Balancer's ready set in step with what the
// supervisor reports; each worker is the other end of a real socket pair.
class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dispatcher_.add_service(io_, "a", BalancerConfig{.queue_max = 4}, log_);
    dispatcher_.add_service(io_, "b", BalancerConfig{}, log_);
  }

  supervisor::WorkerLink* worker(int i) {
    while (static_cast<int>(links_.size()) <= i) {
      int sv[2];
      EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
      ends_.emplace_back(sv[1]);
      links_.push_back(std::make_unique<supervisor::WorkerLink>(
          io_, UniqueFd(sv[0]), supervisor::WorkerLink::Handlers{}));
    }
    return links_[i].get();
  }

  void dispatch(const std::string& service) {
    workers::ConnHeader h;
    h.id = next_id_++;
    dispatcher_.dispatch(service, UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC)),
                         std::move(h));
  }

  // Connections worker `i` received since the last call.
  size_t received(int i) {
    size_t n = 0;
    for (;;) {
      workers::Received r = workers::receive_datagram(ends_[i].get(), 8);
      if (r.status != workers::ReceiveStatus::message) return n;
      n += r.fds.size();
    }
  }

  boost::asio::io_context io_;
  metrics::ConnectionStats stats_;
  supervisor::EventLog log_{supervisor::LogFormat::json, -1};
  Dispatcher dispatcher_{stats_};
  std::vector<UniqueFd> ends_;
  std::vector<std::unique_ptr<supervisor::WorkerLink>> links_;
  uint64_t next_id_ = 1;
};

TEST_F(DispatcherTest, AnUnknownServiceIsCountedAndHasNoQueue) {
  dispatch("nope");
  EXPECT_EQ(stats_.rejected["no_service"], 1u);
  EXPECT_EQ(dispatcher_.queue("nope"), nullptr);
  EXPECT_EQ(dispatcher_.find("nope"), nullptr);
  EXPECT_NE(dispatcher_.queue("a"), nullptr);
}

TEST_F(DispatcherTest, EachServiceGetsOnlyItsOwnReadyWorkers) {
  dispatcher_.on_ready("a", 0, worker(0));
  dispatcher_.on_ready("b", 0, worker(1));
  dispatch("a");
  dispatch("a");
  dispatch("b");
  EXPECT_EQ(received(0), 2u);
  EXPECT_EQ(received(1), 1u);
  EXPECT_EQ(stats_.handed_off, 3u);
}

TEST_F(DispatcherTest, ConnectionsWaitWhileNoWorkerIsReadyAndGoOutWhenOneIs) {
  dispatch("a");
  dispatch("a");
  EXPECT_EQ(dispatcher_.find("a")->queued(), 2u);
  EXPECT_EQ(stats_.pending, 2u);
  dispatcher_.on_ready("a", 0, worker(0));
  EXPECT_EQ(received(0), 2u);
  EXPECT_EQ(stats_.pending, 0u);
}

TEST_F(DispatcherTest, UnreadyAndExitedWorkersGetNothingMore) {
  dispatcher_.on_ready("a", 0, worker(0));
  dispatcher_.on_ready("a", 1, worker(1));
  dispatcher_.on_unready("a", 0);
  dispatch("a");
  dispatch("a");
  EXPECT_EQ(received(0), 0u);
  EXPECT_EQ(received(1), 2u);
  supervisor::ExitRecord exit;
  exit.service = "a";
  exit.replica = 1;
  dispatcher_.on_exited(exit);
  dispatch("a");
  EXPECT_EQ(received(1), 0u);
  EXPECT_EQ(dispatcher_.find("a")->queued(), 1u);
  // A ready report without a link (a listen_fds worker) adds nothing.
  dispatcher_.on_ready("a", 2, nullptr);
  EXPECT_EQ(dispatcher_.find("a")->ready_workers(), 0u);
}

TEST_F(DispatcherTest, ClosedReportsReachTheRightBalancer) {
  dispatcher_.on_ready("a", 0, worker(0));
  dispatch("a");
  dispatch("a");
  EXPECT_EQ(dispatcher_.find("a")->outstanding(0), 2u);
  dispatcher_.on_conn_closed("b", 0, 1);
  EXPECT_EQ(dispatcher_.find("a")->outstanding(0), 2u);
  dispatcher_.on_conn_closed("a", 0, 1);
  EXPECT_EQ(dispatcher_.find("a")->outstanding(0), 1u);
}

TEST_F(DispatcherTest, QueueRoomIsReportedForEveryServiceAndCloseQueuesCountsShutdown) {
  int rooms = 0;
  dispatcher_.on_queue_room([&rooms] { ++rooms; });
  for (int i = 0; i < 4; ++i) dispatch("a");
  EXPECT_TRUE(dispatcher_.queue("a")->full());
  dispatcher_.on_ready("a", 0, worker(0));
  EXPECT_EQ(rooms, 1);
  dispatcher_.on_unready("a", 0);
  dispatch("a");
  dispatch("b");
  dispatcher_.close_queues();
  EXPECT_EQ(stats_.rejected["shutdown"], 2u);
  EXPECT_EQ(stats_.pending, 0u);
}

TEST_F(DispatcherTest, ABurstIsStagedUntilItEnds) {
  worker(0)->set_takes_batches(true);
  dispatcher_.on_ready("a", 0, worker(0));
  dispatcher_.begin_burst();
  dispatch("a");
  dispatch("a");
  EXPECT_EQ(received(0), 0u);
  dispatcher_.end_burst();
  EXPECT_EQ(received(0), 2u);
  EXPECT_EQ(stats_.handoff_batches, 1u);
}

}  // namespace
}  // namespace occasional::gateway
