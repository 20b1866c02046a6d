#include "supervisor/worker_protocol.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "tests/supervisor/real_peers.hpp"
#include "workers/control_channel.hpp"

namespace occasional::supervisor {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Observed : ServiceObserver {
  std::vector<uint64_t> closed_ids;
  std::vector<std::string> counter_unavailable;
  void on_conn_closed(const std::string& service, int replica, uint64_t id) override {
    EXPECT_EQ(service, "svc");
    EXPECT_EQ(replica, 2);
    closed_ids.push_back(id);
  }
  void on_closed_counter_unavailable(const std::string&, int, const std::string& error) override {
    counter_unavailable.push_back(error);
  }
};

// A WorkerProtocol on one end of a SOCK_SEQPACKET pair; the test is the
// worker on the other end.
struct WorkerProtocolTest : ::testing::Test {
  boost::asio::io_context io;
  UniqueFd worker_end;
  Observed observer;
  std::vector<bool> readiness;
  std::vector<std::string> statuses;
  std::vector<std::string> broken;  // "reason: error"
  Clock::time_point broken_at{};
  bool exited = false;
  std::unique_ptr<WorkerProtocol> protocol;

  void make(Duration grace) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
    worker_end = UniqueFd(sv[1]);
    protocol = std::make_unique<WorkerProtocol>(
        io, UniqueFd(sv[0]), grace, "svc", 2, observer,
        WorkerProtocol::Handlers{[this](bool ready) { readiness.push_back(ready); },
                                 [this](const std::string& text) { statuses.push_back(text); },
                                 [this](const char* reason, const std::string& error) {
                                   broken.push_back(std::string(reason) + ": " + error);
                                   broken_at = Clock::now();
                                 },
                                 [this] { return exited; }});
  }

  void send(const std::string& message) {
    ASSERT_FALSE(workers::send_datagram(worker_end.get(), message));
  }

  // What the coordinator sent to the worker, waiting at most 5 s.
  workers::Message receive(workers::FdList* fds = nullptr) {
    pollfd p{worker_end.get(), POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 5000), 1);
    workers::Received r = workers::receive_datagram(worker_end.get());
    EXPECT_EQ(r.status, workers::ReceiveStatus::message) << r.error;
    std::string reason, error;
    auto m = workers::decode_message(r.payload, reason, error);
    EXPECT_TRUE(m) << error;
    if (fds) *fds = std::move(r.fds);
    return m.value_or(workers::Message{});
  }

  template <class Pred>
  bool wait_for(Pred pred, Duration timeout = 5s) {
    return real_peers::run_until(io, pred, timeout);
  }
};

TEST_F(WorkerProtocolTest, TheCoordinatorSaysHelloFirst) {
  make(1s);
  protocol->start();
  const workers::Message m = receive();
  EXPECT_EQ(m.type, workers::MessageType::hello);
  EXPECT_EQ(m.version, workers::kProtocolVersion);
}

TEST_F(WorkerProtocolTest, WhatTheWorkerSaysBecomesEvents) {
  make(1s);
  send(workers::encode_status("warming up"));
  send(workers::encode_ready());
  send(workers::encode_closed(7));
  send(workers::encode_pong(1));
  ASSERT_TRUE(wait_for([&] { return !observer.closed_ids.empty(); }));
  EXPECT_EQ(statuses, std::vector<std::string>{"warming up"});
  EXPECT_EQ(readiness, std::vector<bool>{true});
  EXPECT_EQ(observer.closed_ids, std::vector<uint64_t>{7});
  EXPECT_TRUE(broken.empty());
}

TEST_F(WorkerProtocolTest, AHelloAskingForBatchesAndACounterGetsThem) {
  make(1s);
  EXPECT_FALSE(protocol->link().takes_batches());
  send(workers::encode_hello_worker(::getpid(), /*closed_counter=*/true, /*conn_batches=*/true));
  ASSERT_TRUE(wait_for([&] { return protocol->link().takes_batches(); }));
  workers::FdList fds;
  const workers::Message m = receive(&fds);
  EXPECT_EQ(m.type, workers::MessageType::closed_counter);
  EXPECT_EQ(fds.size(), 1u);
  EXPECT_TRUE(observer.counter_unavailable.empty());
}

TEST_F(WorkerProtocolTest, ACoordinatorToWorkerMessageIsAProtocolError) {
  make(1s);
  send(workers::encode_ping(1));
  ASSERT_TRUE(wait_for([&] { return !broken.empty(); }));
  EXPECT_EQ(broken.at(0), "wrong_direction: \"ping\" is a coordinator-to-worker message");
}

// An `exit` sent just before the worker exits is still read once the exit
// is known, though the loop never ran in between.
TEST_F(WorkerProtocolTest, TheStatedReasonIsReadAtTheExit) {
  make(1s);
  send(workers::encode_exit_error("database gone", "connection refused"));
  worker_end.reset();
  EXPECT_EQ(protocol->finish(), "error: database gone: connection refused");
  EXPECT_EQ(readiness, std::vector<bool>{false});
}

TEST_F(WorkerProtocolTest, AWorkerThatSaidExitAndLivesOnIsBrokenAfterTheGrace) {
  make(100ms);
  send(workers::encode_exit_reason("done"));
  ASSERT_TRUE(wait_for([&] { return !readiness.empty(); }));
  const auto said_at = Clock::now();
  EXPECT_EQ(readiness, std::vector<bool>{false});
  ASSERT_TRUE(wait_for([&] { return !broken.empty(); }));
  EXPECT_GE(broken_at - said_at, 90ms);
  EXPECT_EQ(broken.at(0), "exit_overdue: the worker sent exit and was still running 100 ms later");
  EXPECT_EQ(protocol->finish(), "done");
}

TEST_F(WorkerProtocolTest, AWorkerThatSaidExitAndExitedIsNotBroken) {
  make(20ms);
  send(workers::encode_exit_reason("done"));
  exited = true;
  EXPECT_FALSE(wait_for([&] { return !broken.empty(); }, 200ms));
}

// Closing fd 3 and living on is a protocol error once the short grace has passed.
TEST_F(WorkerProtocolTest, ClosingTheChannelWhileRunningIsBrokenAfterAShortGrace) {
  make(10s);
  const auto closed_at = Clock::now();
  worker_end.reset();
  ASSERT_TRUE(wait_for([&] { return !readiness.empty(); }));
  EXPECT_EQ(readiness, std::vector<bool>{false});
  ASSERT_TRUE(wait_for([&] { return !broken.empty(); }));
  EXPECT_GE(broken_at - closed_at, kChannelClosedGrace);
  EXPECT_EQ(broken.at(0),
            "channel_closed: the worker closed its control socket and was still running " +
                std::to_string(kChannelClosedGrace.count()) + " ms later");
}

// Asked to drain, a worker closing its socket is on its way out: the
// caller's grace deadline applies, not the channel_closed one.
TEST_F(WorkerProtocolTest, ClosingTheChannelWhileDrainingIsExpected) {
  make(10s);
  ASSERT_TRUE(protocol->drain());
  const workers::Message m = receive();
  EXPECT_EQ(m.type, workers::MessageType::drain);
  EXPECT_EQ(m.deadline_ms, 10'000);
  worker_end.reset();
  ASSERT_TRUE(wait_for([&] { return !readiness.empty(); }));
  EXPECT_FALSE(wait_for([&] { return !broken.empty(); }, 3 * kChannelClosedGrace));
}

TEST_F(WorkerProtocolTest, AClosedProtocolCannotDrain) {
  make(1s);
  protocol->close();
  EXPECT_FALSE(protocol->drain());
}

// A deadline under way when the worker's exit is handled must not fire on
// what is gone.
TEST_F(WorkerProtocolTest, APendingDeadlineDiesWithTheProtocol) {
  make(20ms);
  send(workers::encode_exit_reason("done"));
  ASSERT_TRUE(wait_for([&] { return !readiness.empty(); }));
  EXPECT_EQ(protocol->finish(), "done");
  protocol.reset();
  EXPECT_FALSE(wait_for([&] { return !broken.empty(); }, 200ms));
}

}  // namespace
}  // namespace occasional::supervisor
