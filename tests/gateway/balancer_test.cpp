#include "gateway/balancer.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <memory>
#include <vector>

#include "workers/control_channel.hpp"

namespace occasional::gateway {
namespace {

// Four ready workers that take `conns` messages, each a real socket pair:
// the balancer sends on the link, the test reads what the worker would.
class BalancerTest : public ::testing::Test {
 protected:
  static constexpr int kWorkers = 4;

  void SetUp() override { start(BalancerConfig{}); }

  void start(BalancerConfig config) {
    worker_ends_.clear();
    links_.clear();
    balancer_ = std::make_unique<Balancer>(io_, "svc", config, stats_, log_);
    for (int i = 0; i < kWorkers; ++i) {
      int sv[2];
      ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
      worker_ends_.emplace_back(sv[1]);
      links_.push_back(std::make_unique<supervisor::WorkerLink>(
          io_, UniqueFd(sv[0]), supervisor::WorkerLink::Handlers{}));
      links_.back()->set_takes_batches(true);
      balancer_->add(i, links_.back().get());
    }
  }

  // One burst of `count` connections, as a listener's sweep makes it.
  void burst(size_t count) {
    balancer_->begin_burst();
    for (size_t i = 0; i < count; ++i) {
      workers::ConnHeader h;
      h.id = next_id_++;
      h.peer = "127.0.0.1:1";
      balancer_->dispatch(UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC)), std::move(h));
    }
    balancer_->end_burst();
  }

  // `count` connections one at a time, outside any burst.
  void one_by_one(size_t count) {
    for (size_t i = 0; i < count; ++i) {
      workers::ConnHeader h;
      h.id = next_id_++;
      h.peer = "127.0.0.1:1";
      balancer_->dispatch(UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC)), std::move(h));
    }
  }

  size_t total(int worker) {
    size_t n = 0;
    for (size_t m : received(worker)) n += m;
    return n;
  }

  // The number of connections in each message a worker has received since
  // the last call; each connection's fd is checked to have arrived.
  std::vector<size_t> received(int worker) {
    std::vector<size_t> sizes;
    for (;;) {
      workers::Received r =
          workers::receive_datagram(worker_ends_[worker].get(), workers::kMaxConnsPerMessage);
      if (r.status == workers::ReceiveStatus::would_block) return sizes;
      EXPECT_EQ(r.status, workers::ReceiveStatus::message) << r.error;
      if (r.status != workers::ReceiveStatus::message) return sizes;
      std::string reason, error;
      workers::Message m;
      EXPECT_TRUE(workers::decode_message(r.payload, m, reason, error)) << error;
      const size_t n = m.type == workers::MessageType::conns ? m.conns.size() : 1;
      EXPECT_EQ(r.fds.size(), n);
      sizes.push_back(n);
    }
  }

  boost::asio::io_context io_;
  metrics::ConnectionStats stats_;
  supervisor::EventLog log_{supervisor::LogFormat::json, -1};
  std::vector<UniqueFd> worker_ends_;
  std::vector<std::unique_ptr<supervisor::WorkerLink>> links_;
  std::unique_ptr<Balancer> balancer_;
  uint64_t next_id_ = 1;
};

TEST_F(BalancerTest, ABurstIsSpreadByLeastConnectionsInOneMessagePerWorker) {
  burst(16);
  for (int w = 0; w < kWorkers; ++w) {
    EXPECT_EQ(received(w), std::vector<size_t>{4}) << "worker " << w;
    EXPECT_EQ(balancer_->outstanding(w), 4u);
  }
  EXPECT_EQ(stats_.handed_off, 16u);
  EXPECT_EQ(stats_.handoff_batches, 4u);
}

TEST_F(BalancerTest, ABurstLargerThanAMessagePerWorkerGoesOutInMessagesOfAtMostEight) {
  burst(40);
  for (int w = 0; w < kWorkers; ++w) {
    EXPECT_EQ(received(w), (std::vector<size_t>{8, 2})) << "worker " << w;
    EXPECT_EQ(balancer_->outstanding(w), 10u);
  }
  EXPECT_EQ(stats_.handed_off, 40u);
}

TEST_F(BalancerTest, InRunsAWorkerTakesAFullMessageBeforeTheNextGetsAny) {
  start(BalancerConfig{.burst = BurstMode::runs});
  burst(12);
  // The first least loaded worker takes 8, the next least loaded the rest;
  // the other two are not woken.
  EXPECT_EQ(received(0), std::vector<size_t>{8});
  EXPECT_EQ(received(1), std::vector<size_t>{4});
  EXPECT_EQ(received(2), std::vector<size_t>{});
  EXPECT_EQ(received(3), std::vector<size_t>{});
  // The next burst starts at the least loaded workers: runs balance out.
  burst(12);
  EXPECT_EQ(received(2), std::vector<size_t>{8});
  EXPECT_EQ(received(3), std::vector<size_t>{4});
  for (int w = 0; w < kWorkers; ++w) EXPECT_EQ(balancer_->outstanding(w), w % 2 ? 4u : 8u);
  EXPECT_EQ(stats_.handed_off, 24u);
  EXPECT_EQ(stats_.handoff_batches, 4u);
}

TEST_F(BalancerTest, InRunsALargeBurstStillEndsUpEvenAcrossWorkers) {
  start(BalancerConfig{.burst = BurstMode::runs});
  burst(64);
  for (int w = 0; w < kWorkers; ++w) {
    EXPECT_EQ(received(w), (std::vector<size_t>{8, 8})) << "worker " << w;
    EXPECT_EQ(balancer_->outstanding(w), 16u);
  }
}

TEST_F(BalancerTest, InRunsARunStopsAtTheWorkersCap) {
  start(BalancerConfig{.max_connections = 3, .burst = BurstMode::runs});
  burst(10);
  EXPECT_EQ(received(0), std::vector<size_t>{3});
  EXPECT_EQ(received(1), std::vector<size_t>{3});
  EXPECT_EQ(received(2), std::vector<size_t>{3});
  EXPECT_EQ(received(3), std::vector<size_t>{1});
}

TEST_F(BalancerTest, BurstModesHaveTheirConfigNames) {
  EXPECT_STREQ(burst_mode_name(BurstMode::automatic), "auto");
  EXPECT_STREQ(burst_mode_name(BurstMode::spread), "spread");
  EXPECT_STREQ(burst_mode_name(BurstMode::runs), "runs");
  for (BurstMode mode : {BurstMode::automatic, BurstMode::spread, BurstMode::runs})
    EXPECT_EQ(parse_burst_mode(burst_mode_name(mode)), mode);
  EXPECT_EQ(parse_burst_mode("pack"), std::nullopt);
  EXPECT_EQ(parse_burst_mode(""), std::nullopt);
}

TEST_F(BalancerTest, AWorkerWhoseEndIsGoneIsRetriedElsewhereAndCounted) {
  worker_ends_[0].reset();
  one_by_one(8);
  EXPECT_EQ(total(1) + total(2) + total(3), 8u);
  EXPECT_GE(stats_.handoff_retries["worker_gone"], 1u);
  EXPECT_EQ(stats_.handoff_retries["worker_busy"], 0u);
  EXPECT_EQ(stats_.handed_off, 8u);
  EXPECT_EQ(balancer_->queued(), 0u);
}

TEST_F(BalancerTest, ABusyWorkerIsSkippedAndTheQueueIsRetriedOnceItCatchesUp) {
  for (int w = 1; w < kWorkers; ++w) balancer_->remove(w);
  // Until its socket buffer is full: the rest wait in the queue.
  size_t sent = 0;
  while (balancer_->queued() == 0 && sent < 10000) {
    one_by_one(1);
    ++sent;
  }
  ASSERT_EQ(balancer_->queued(), 1u);
  EXPECT_EQ(stats_.handoff_retries["worker_busy"], 1u);
  one_by_one(2);  // behind the first: no retry of their own
  EXPECT_EQ(balancer_->queued(), 3u);
  EXPECT_EQ(stats_.handoff_retries["worker_busy"], 1u);
  // The worker reads; nothing tells the balancer, its retry timer does.
  EXPECT_EQ(total(0), sent - 1);
  io_.run_for(std::chrono::milliseconds(50));
  EXPECT_EQ(balancer_->queued(), 0u);
  EXPECT_EQ(total(0), 3u);
  EXPECT_EQ(stats_.handed_off, sent + 2);
}

TEST_F(BalancerTest, ConnectionsStagedForAWorkerThatLeavesGoToAnother) {
  balancer_->begin_burst();
  one_by_one(8);  // two staged for each worker
  balancer_->remove(0);
  // Its two went out at once, one by one, to the least loaded others.
  EXPECT_EQ(total(1) + total(2) + total(3), 2u);
  balancer_->end_burst();
  EXPECT_EQ(total(1) + total(2) + total(3), 6u);
  EXPECT_EQ(stats_.handed_off, 8u);
}

TEST_F(BalancerTest, ABatchAWorkerRefusesIsRedispatchedElsewhereOneByOne) {
  worker_ends_[0].reset();
  burst(8);
  EXPECT_EQ(stats_.handoff_retries["worker_gone"], 2u);  // the batch of two, counted each
  EXPECT_EQ(total(1) + total(2) + total(3), 8u);
  EXPECT_EQ(balancer_->outstanding(0), 0u);
  EXPECT_EQ(stats_.handed_off, 8u);
}

TEST_F(BalancerTest, WithEveryWorkerGoneConnectionsQueueUntilOneIsAdded) {
  for (int w = 0; w < kWorkers; ++w) worker_ends_[w].reset();
  one_by_one(2);
  EXPECT_EQ(balancer_->queued(), 2u);
  EXPECT_EQ(stats_.handoff_retries["worker_gone"], 4u);  // every worker once, for the first
  for (int w = 0; w < kWorkers; ++w) balancer_->remove(w);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd end(sv[1]);
  supervisor::WorkerLink link(io_, UniqueFd(sv[0]), supervisor::WorkerLink::Handlers{});
  balancer_->add(7, &link);
  EXPECT_EQ(balancer_->queued(), 0u);
  size_t got = 0;
  for (;;) {
    workers::Received r = workers::receive_datagram(end.get(), 8);
    if (r.status != workers::ReceiveStatus::message) break;
    got += r.fds.size();
  }
  EXPECT_EQ(got, 2u);
  balancer_->remove(7);
}

}  // namespace
}  // namespace occasional::gateway
