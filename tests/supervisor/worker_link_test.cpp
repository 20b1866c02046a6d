#include "supervisor/worker_link.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <vector>

#include "workers/control_channel.hpp"

namespace occasional::supervisor {
namespace {

using namespace std::chrono_literals;

// A WorkerLink on one end of a SOCK_SEQPACKET pair, the test as the worker
// on the other: every message sent must reach the handler, however the link
// batches its reads.
struct WorkerLinkTest : ::testing::Test {
  boost::asio::io_context io;
  UniqueFd worker_end;
  std::vector<uint64_t> closed_ids;
  std::vector<std::string> errors;
  std::unique_ptr<WorkerLink> link;
  uint64_t next_id = 1;

  void SetUp() override {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    worker_end = UniqueFd(sv[1]);
    link = std::make_unique<WorkerLink>(
        io, UniqueFd(sv[0]),
        WorkerLink::Handlers{
            [this](const workers::Message& m) { closed_ids.push_back(m.id); },
            [this](const char* reason, const std::string&) { errors.emplace_back(reason); }});
  }

  void send_closed(int n) {
    for (int i = 0; i < n; ++i)
      ASSERT_FALSE(workers::send_datagram(worker_end.get(), workers::encode_closed(next_id++)));
  }

  // Runs the loop until every message sent so far has arrived, or 5 s.
  ::testing::AssertionResult all_arrive() {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (closed_ids.size() < next_id - 1 && std::chrono::steady_clock::now() < deadline)
      io.run_one_for(100ms);
    for (uint64_t i = 0; i < closed_ids.size(); ++i)
      if (closed_ids[i] != i + 1)
        return ::testing::AssertionFailure() << "message " << i << " has id " << closed_ids[i];
    if (closed_ids.size() != next_id - 1)
      return ::testing::AssertionFailure()
             << closed_ids.size() << " of " << next_id - 1 << " messages arrived within 5 s";
    return ::testing::AssertionSuccess();
  }
};

TEST_F(WorkerLinkTest, MessagesOneAtATimeAndInBurstsAllArriveInOrder) {
  for (int round = 0; round < 3; ++round) {
    // Singly, long enough to pass through one-per-wake-up mode and its full drain.
    for (int i = 0; i < 40; ++i) {
      send_closed(1);
      ASSERT_TRUE(all_arrive()) << "round " << round << ", single " << i;
    }
    // A burst queued at once while the link reads one per wake-up.
    send_closed(25);
    ASSERT_TRUE(all_arrive()) << "round " << round << ", burst";
    send_closed(2);
    ASSERT_TRUE(all_arrive()) << "round " << round << ", pair";
  }
  EXPECT_TRUE(errors.empty());
}

}  // namespace
}  // namespace occasional::supervisor
