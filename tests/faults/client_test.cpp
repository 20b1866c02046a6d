// Hostile clients against the real coordinator on a routed (HTTP) listener:
// silent connections by the ten thousand, a flood past the fd limit,
// slowloris on the peek, and header lines of 64 KiB. Each test checks that
// the coordinator stays up, that a normal client is served meanwhile, and
// that the reject counters say what happened; the figures are printed
// (FIGURE lines) for docs/reliability.md.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/coordinator_process.hpp"
#include "tests/integration/http_client.hpp"

namespace occasional::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::string kWorkers = OCCASIONAL_WORKERS_DIR;

// Everything the server sends until it closes, or the timeout.
std::string read_all(int fd, std::chrono::milliseconds timeout = 5s) {
  std::string out;
  const auto deadline = Clock::now() + timeout;
  char buf[4096];
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 1))) <= 0) break;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

bool send_all(int fd, const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

std::string write_config(const std::string& json) {
  char path[] = "/tmp/occasional-faults-XXXXXX";
  int fd = ::mkstemp(path);
  EXPECT_EQ(::write(fd, json.data(), json.size()), static_cast<ssize_t>(json.size()));
  ::close(fd);
  return path;
}

// One HTTP listener routing Host "app" to http_hello_worker (and nothing
// else), with `peek` as its peek settings.
std::string http_config(const std::string& peek) {
  return write_config(R"({
    "listeners": [{"name": "web", "address": "127.0.0.1:0", "peek": )" +
                      peek + R"(,
                   "routes": [{"kind": "http", "host": "app", "service": "app"}]}],
    "services": {"app": {"command": [")" +
                      kWorkers + R"(/http_hello_worker"]}}})");
}

bool poll_until(const std::function<bool()>& holds, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!holds()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

const std::string kRequest = "GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n";

// A normal client's request on a fresh connection: whether it was served,
// and how long that took.
std::pair<bool, std::chrono::microseconds> normal_client(int port) {
  const auto t0 = Clock::now();
  UniqueFd fd = connect_loopback(port, true);
  if (!fd || !send_all(fd.get(), kRequest)) return {false, {}};
  const std::string reply = read_all(fd.get());
  return {reply.starts_with("HTTP/1.1 200 "),
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0)};
}

// Raises this process's soft fd limit to its hard limit for the test's own
// client sockets (the coordinator it starts inherits it), and puts it back.
struct RaisedFdLimit {
  rlimit old{};
  RaisedFdLimit() {
    ::getrlimit(RLIMIT_NOFILE, &old);
    rlimit raised = old;
    raised.rlim_cur = old.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &raised);
  }
  ~RaisedFdLimit() { ::setrlimit(RLIMIT_NOFILE, &old); }
  rlim_t hard() const { return old.rlim_max; }
};

TEST(ClientFaultsTest, TenThousandSilentConnectionsToARoutedListener) {
  RaisedFdLimit limit;
  constexpr int kSilent = 10000;
  // The test's own sockets, pipes and the coordinator's fds all come out of
  // the same hard limit (20000 on the CI machine): leave room for them.
  if (limit.hard() != RLIM_INFINITY && limit.hard() < kSilent + 512)
    GTEST_SKIP() << "hard fd limit " << limit.hard() << " is below " << kSilent + 512;
  const std::string cfg = http_config(R"({"timeout": 60})");
  RunningCoordinator g({"run", "--config", cfg}, 1);
  ::unlink(cfg.c_str());
  const double cap = metric(g.admin, "occasional_connections_routing_max");
  ASSERT_GT(cap, 0);

  const auto t0 = Clock::now();
  std::vector<UniqueFd> silent;
  silent.reserve(kSilent);
  for (int i = 0; i < kSilent; ++i) {
    silent.push_back(connect_loopback(g.port, true));
    ASSERT_TRUE(silent.back()) << "connection " << i << ": " << std::strerror(errno);
  }
  const auto opened = Clock::now() - t0;
  const double expected_routing = std::min<double>(kSilent, cap);
  ASSERT_TRUE(poll_until(
      [&] { return metric(g.admin, "occasional_connections_accepted_total") >= kSilent; }, 30s));
  EXPECT_EQ(metric(g.admin, "occasional_connections_routing"), expected_routing);

  // A client that sends its request at once is served while they sit there.
  auto [served, took] = normal_client(g.port);
  EXPECT_TRUE(served);
  EXPECT_LT(took, 1s);
  EXPECT_TRUE(process_alive(g.c.pid()));
  EXPECT_EQ(metric(g.admin, "occasional_accept_errors_total{reason=\"emfile\"}"), 0);
  // The routing bound is half the fd limit: at it, each newcomer closes the oldest.
  const double evicted =
      metric(g.admin, "occasional_connections_rejected_total{reason=\"routing_cap\"}");
  EXPECT_EQ(evicted, std::max<double>(0, kSilent + 1 - cap));
  std::printf(
      "FIGURE silent=%d routing_max=%.0f open_all_ms=%lld normal_client_us=%lld "
      "evicted=%.0f\n",
      kSilent, cap,
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(opened).count()),
      static_cast<long long>(took.count()), evicted);
  silent.clear();
  ASSERT_TRUE(
      poll_until([&] { return metric(g.admin, "occasional_connections_routing") == 0; }, 30s));
  g.c.signal(SIGTERM);
  EXPECT_EQ(g.c.wait_exit(), 0);
}

TEST(ClientFaultsTest, ASilentFloodPastTheFdLimitEvictsTheOldestAndNewClientsAreServed) {
  // A coordinator allowed 1024 fds (a container's default): routing is
  // bounded at 512, so 1500 silent clients never exhaust its fds, and a
  // client that speaks at once is served at once instead of waiting in the
  // backlog until silent ones time out.
  const std::string cfg = http_config(R"({"timeout": 60})");
  RunningCoordinator g({"run", "--config", cfg}, 1, {"prlimit", "--nofile=1024:1024", "--"});
  ::unlink(cfg.c_str());
  EXPECT_EQ(g.c.events("fd_limit").at(0)["hard"], "1024");
  ASSERT_EQ(metric(g.admin, "occasional_connections_routing_max"), 512);
  constexpr int kSilent = 1500;
  std::vector<UniqueFd> silent;
  for (int i = 0; i < kSilent; ++i) {
    silent.push_back(connect_loopback(g.port, true));
    ASSERT_TRUE(silent.back()) << i;
  }
  ASSERT_TRUE(poll_until(
      [&] { return metric(g.admin, "occasional_connections_accepted_total") >= kSilent; }, 20s));
  auto [served, took] = normal_client(g.port);
  EXPECT_TRUE(served);
  EXPECT_LT(took, 1s);
  EXPECT_EQ(metric(g.admin, "occasional_accept_errors_total{reason=\"emfile\"}"), 0);
  // The normal client took the place of the oldest silent one, then was handed off.
  EXPECT_EQ(metric(g.admin, "occasional_connections_routing"), 511);
  EXPECT_EQ(metric(g.admin, "occasional_connections_rejected_total{reason=\"routing_cap\"}"),
            kSilent + 1 - 512);
  // The evicted clients were told, not left hanging: a 503, then the close.
  EXPECT_TRUE(read_all(silent.front().get(), 2s).starts_with("HTTP/1.1 503 "));
  std::printf("FIGURE fd_limit=1024 silent=%d normal_client_us=%lld\n", kSilent,
              static_cast<long long>(took.count()));
  EXPECT_TRUE(process_alive(g.c.pid()));
}

TEST(ClientFaultsTest, SlowlorisOnThePeekIsCutAtThePeekTimeoutWhileOthersAreServed) {
  const std::string cfg = http_config(R"({"timeout": 1})");
  RunningCoordinator g({"run", "--config", cfg}, 1);
  ::unlink(cfg.c_str());
  // Each sends a byte of a head that never reaches Host every 50 ms.
  constexpr int kSlow = 200;
  const std::string drip = "GET / HTTP/1.1\r\nX-Padding: " + std::string(200, 'p');
  std::vector<UniqueFd> slow;
  for (int i = 0; i < kSlow; ++i) {
    slow.push_back(connect_loopback(g.port, true));
    ASSERT_TRUE(slow.back());
  }
  const auto t0 = Clock::now();
  std::vector<std::chrono::microseconds> served_in;
  size_t at = 0;
  while (Clock::now() - t0 < 1500ms && at < drip.size()) {
    for (auto& fd : slow) ::send(fd.get(), &drip[at], 1, MSG_NOSIGNAL);
    ++at;
    auto [served, took] = normal_client(g.port);
    EXPECT_TRUE(served);
    served_in.push_back(took);
    std::this_thread::sleep_for(50ms);  // the attack's pace, not a synchronisation
  }
  // Cut at the peek timeout (1 s), with a 408.
  for (auto& fd : slow) EXPECT_TRUE(read_all(fd.get(), 3s).starts_with("HTTP/1.1 408 "));
  EXPECT_EQ(metric(g.admin, "occasional_connections_rejected_total{reason=\"peek_timeout\"}"),
            kSlow);
  EXPECT_EQ(metric(g.admin, "occasional_connections_routing"), 0);
  EXPECT_TRUE(process_alive(g.c.pid()));
  std::sort(served_in.begin(), served_in.end());
  std::printf("FIGURE slowloris=%d normal_clients=%zu median_us=%lld max_us=%lld\n", kSlow,
              served_in.size(), static_cast<long long>(served_in[served_in.size() / 2].count()),
              static_cast<long long>(served_in.back().count()));
}

TEST(ClientFaultsTest, HeaderLinesOf64KiBAreAnswered431OrRoutedOnceHostIsIn) {
  const std::string cfg = http_config(R"({"timeout": 3})");
  RunningCoordinator g({"run", "--config", cfg}, 1);
  ::unlink(cfg.c_str());
  const std::string big(64 * 1024, 'b');
  // Before Host: the peek limit (16 KiB) is reached first.
  constexpr int kBig = 20;
  for (int i = 0; i < kBig; ++i) {
    UniqueFd fd = connect_loopback(g.port, true);
    ASSERT_TRUE(fd);
    // The gateway may close before all is sent: that is the point.
    send_all(fd.get(), "GET / HTTP/1.1\r\nX-Big: " + big + "\r\nHost: app\r\n\r\n");
    EXPECT_TRUE(read_all(fd.get()).starts_with("HTTP/1.1 431 ")) << i;
    auto [served, took] = normal_client(g.port);
    EXPECT_TRUE(served) << i;
  }
  EXPECT_EQ(metric(g.admin, "occasional_connections_rejected_total{reason=\"too_large\"}"), kBig);
  // After Host the connection is routed: the worker has the rest to judge.
  UniqueFd fd = connect_loopback(g.port, true);
  ASSERT_TRUE(fd);
  send_all(fd.get(), "GET / HTTP/1.1\r\nHost: app\r\nCookie: " + std::string(5 * 1024, 'c') +
                         "\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(read_all(fd.get()).starts_with("HTTP/1.1 200 "));
  EXPECT_EQ(metric(g.admin, "occasional_connections_handed_off_total"), kBig + 1);
  EXPECT_TRUE(process_alive(g.c.pid()));
}

}  // namespace
}  // namespace occasional::testing
