#include "supervisor/worker_link.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstring>
#include <functional>
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
  std::vector<std::string> clamped;
  int channel_closed = 0;
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
            [this](const char* reason, const std::string&) { errors.emplace_back(reason); },
            [this](const char* reason, uint64_t, uint64_t) { clamped.emplace_back(reason); },
            [this] { ++channel_closed; }});
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
    // Singly, long enough to pass through one-per-wake-up mode and its sweep.
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

// A burst is read at most kMaxMessagesPerWakeup at a time: other handlers
// run in between, and nothing is lost.
TEST_F(WorkerLinkTest, ABurstIsReadInSlicesThatLetOthersRun) {
  // As many as the socket holds.
  while (!workers::send_datagram(worker_end.get(), workers::encode_closed(next_id), -1) &&
         next_id < 100000)
    ++next_id;
  const size_t queued = next_id - 1;
  ASSERT_GT(queued, 3u * WorkerLink::kMaxMessagesPerWakeup);
  int others = 0;
  std::function<void()> other = [&] {
    ++others;
    if (closed_ids.size() < queued) boost::asio::post(io, other);
  };
  boost::asio::post(io, other);
  size_t most_between = 0, last = 0;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (closed_ids.size() < queued && std::chrono::steady_clock::now() < deadline) {
    io.run_one_for(100ms);
    most_between = std::max(most_between, closed_ids.size() - last);
    last = closed_ids.size();
  }
  EXPECT_TRUE(all_arrive());
  EXPECT_LE(most_between, static_cast<size_t>(WorkerLink::kMaxMessagesPerWakeup));
  EXPECT_GE(others, static_cast<int>(queued) / WorkerLink::kMaxMessagesPerWakeup);
}

// The worker writes the shared counter page: a value it could not have
// reached (more finished than handed off, or fewer than before) is clamped
// and reported once per run of bad reads.
TEST_F(WorkerLinkTest, ClosedCounterIsClampedToWhatWasHandedAndNeverGoesBack) {
  ASSERT_FALSE(link->share_closed_counter());
  // Sent before share_closed_counter() returned: already queued.
  workers::Received got = workers::receive_datagram(worker_end.get());
  ASSERT_EQ(got.status, workers::ReceiveStatus::message) << got.error;
  ASSERT_EQ(got.fds.size(), 1u);
  UniqueFd memfd = std::move(got.fds[0]);
  void* page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0);
  ASSERT_NE(page, MAP_FAILED);
  auto* value = static_cast<uint64_t*>(page);

  // Three connections handed off (any fds will do), two finished.
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  UniqueFd a(pipe_fds[0]), b(pipe_fds[1]);
  for (int i = 0; i < 3; ++i) ASSERT_FALSE(link->send("{\"type\":\"conn\"}", a.get()));
  *value = 2;
  EXPECT_EQ(link->counted_closed(), 2u);
  EXPECT_TRUE(clamped.empty());
  // More than were handed.
  *value = uint64_t{1} << 62;
  EXPECT_EQ(link->counted_closed(), 3u);
  EXPECT_EQ(link->counted_closed(), 3u);
  ASSERT_EQ(clamped, std::vector<std::string>{"beyond_handed"});  // once per run
  // Backwards (the page zeroed).
  *value = 0;
  EXPECT_EQ(link->counted_closed(), 3u);
  EXPECT_EQ(clamped.back(), "beyond_handed");  // still one run of bad reads
  *value = 3;
  EXPECT_EQ(link->counted_closed(), 3u);
  *value = 1;
  EXPECT_EQ(link->counted_closed(), 3u);
  EXPECT_EQ(clamped.back(), "backwards");
  EXPECT_EQ(clamped.size(), 2u);
  ::munmap(page, 4096);
}

TEST_F(WorkerLinkTest, EndOfFileIsReportedOnce) {
  worker_end.reset();
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (channel_closed == 0 && std::chrono::steady_clock::now() < deadline) io.run_one_for(100ms);
  EXPECT_EQ(channel_closed, 1);
  // Not waited on again: a socket at EOF is readable for ever.
  io.restart();
  EXPECT_EQ(io.run_for(50ms), 0u);
  EXPECT_EQ(channel_closed, 1);
  EXPECT_TRUE(errors.empty());
}

}  // namespace
}  // namespace occasional::supervisor
