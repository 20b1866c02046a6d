#include "gateway/listener.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <gtest/gtest.h>
#include <chrono>
#include <stdexcept>
#include <vector>

#include "tests/integration/http_client.hpp"

namespace occasional::gateway {
namespace {

using namespace std::chrono_literals;
using testing::connect_loopback;

TEST(ListenerTest, AHandlerThatThrowsClosesThatConnectionAndAcceptingGoesOn) {
  boost::asio::io_context io;
  metrics::ConnectionStats stats;
  supervisor::EventLog log(supervisor::LogFormat::json, -1);
  Listener listener(io, "l", parse_listen_address("127.0.0.1:0"), false, stats, log);
  std::vector<UniqueFd> kept;
  listener.start([&kept](UniqueFd fd, workers::ConnHeader header) {
    // As a routing step that runs out of memory would.
    if (header.id % 2 == 1) throw std::bad_alloc();
    kept.push_back(std::move(fd));
  });
  UniqueFd first = connect_loopback(listener.port());
  UniqueFd second = connect_loopback(listener.port());
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (stats.accepted < 2 && std::chrono::steady_clock::now() < deadline) {
    ASSERT_NO_THROW(io.run_one_for(10ms));
  }
  ASSERT_EQ(stats.accepted, 2u);
  EXPECT_EQ(stats.rejected["internal_error"], 1u);
  EXPECT_EQ(kept.size(), 1u);
  // The connection whose handler threw was closed, not leaked.
  int closed = 0;
  for (int fd : {first.get(), second.get()}) {
    pollfd p{fd, POLLIN, 0};
    char b;
    if (::poll(&p, 1, 0) == 1 && ::recv(fd, &b, 1, MSG_DONTWAIT) == 0) ++closed;
  }
  EXPECT_EQ(closed, 1);
}

}  // namespace
}  // namespace occasional::gateway
