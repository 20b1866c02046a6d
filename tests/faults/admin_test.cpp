// Admin misuse against the real coordinator (issue 20, item 4): no token, a
// wrong token, a cross-origin POST, a 10 MB body, 200 slow connections while
// /healthz must answer within 100 ms. For each: the coordinator stays up, the
// data plane still serves, and /metrics says what happened.
#include <dirent.h>
#include <signal.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <thread>

#include "tests/integration/coordinator_process.hpp"
#include "tests/integration/http_client.hpp"

namespace occasional::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::string kWorkers = OCCASIONAL_WORKERS_DIR;

// The coordinator of these tests: one http_hello_worker service, "web".
struct Coordinator : RunningCoordinator {
  explicit Coordinator(std::vector<std::string> extra)
      : RunningCoordinator(args(std::move(extra)), 1) {}
  static std::vector<std::string> args(std::vector<std::string> extra) {
    std::vector<std::string> a{"run", "--listen", "127.0.0.1:0", "--name", "web"};
    a.insert(a.end(), extra.begin(), extra.end());
    a.insert(a.end(), {"--", kWorkers + "/http_hello_worker"});
    return a;
  }
  // The coordinator is up and its data plane serves.
  void expect_serving() {
    EXPECT_TRUE(process_alive(c.pid()));
    EXPECT_EQ(http_request(port, "GET", "/").status, 200);
    EXPECT_EQ(http_request(admin, "GET", "/healthz").status, 200);
  }
  // The value of one series in /metrics, e.g. `occasional_admin_refused_total{reason="x"}`;
  // -1 when it is absent.
  double metric(const std::string& series) { return testing::metric(admin, series, -1); }
  int open_fds() {
    int n = 0;
    DIR* d = ::opendir(("/proc/" + std::to_string(c.pid()) + "/fd").c_str());
    if (!d) return -1;
    while (::readdir(d)) ++n;
    ::closedir(d);
    return n - 2;
  }
};

std::string refused(const char* reason) {
  return std::string("occasional_admin_refused_total{reason=\"") + reason + "\"}";
}

TEST(AdminFaultTest, PostsWithoutOrWithAWrongTokenAreRefusedAndCounted) {
  Coordinator g({"--token", "s3cret"});
  const std::string kStop = "/v1/services/web/stop";
  EXPECT_EQ(http_request(g.admin, "POST", kStop).status, 401);
  EXPECT_EQ(http_request(g.admin, "POST", kStop, "X-Occasional-Admin: 1\r\n").status, 401);
  EXPECT_EQ(http_request(g.admin, "POST", kStop, "Authorization: Bearer wrong\r\n").status, 401);
  EXPECT_EQ(http_request(g.admin, "POST", kStop, "Authorization: Basic czNjcmV0\r\n").status, 401);
  EXPECT_EQ(g.metric(refused("no_token")), 2);
  EXPECT_EQ(g.metric(refused("wrong_token")), 2);
  EXPECT_EQ(g.metric("occasional_admin_requests_total{code=\"401\"}"), 4);
  EXPECT_EQ(g.c.events("admin_action").size(), 0u) << "a refused POST reached the supervisor";
  g.expect_serving();
}

TEST(AdminFaultTest, ACrossOriginPostToALoopbackEndpointIsRefused) {
  Coordinator g({});
  const std::string kStop = "/v1/services/web/stop";
  // What a page on another origin can send without a preflight: a form post.
  EXPECT_EQ(http_request(g.admin, "POST", kStop,
                         "Origin: https://evil.example\r\nContent-Type: text/plain\r\n", "x")
                .status,
            403);
  // And with the custom header, as if the preflight had been skipped.
  EXPECT_EQ(http_request(g.admin, "POST", kStop,
                         "Origin: https://evil.example\r\nX-Occasional-Admin: 1\r\n")
                .status,
            403);
  // Without the custom header, even with no Origin (a client that is not a browser).
  EXPECT_EQ(http_request(g.admin, "POST", kStop).status, 403);
  // The preflight itself is not approved.
  const HttpReply pre = http_request(g.admin, "OPTIONS", kStop,
                                     "Origin: https://evil.example\r\n"
                                     "Access-Control-Request-Method: POST\r\n");
  EXPECT_EQ(pre.head.find("Access-Control-Allow"), std::string::npos) << pre.head;
  EXPECT_EQ(g.metric(refused("cross_origin")), 2);
  EXPECT_EQ(g.metric(refused("no_csrf_header")), 1);
  EXPECT_EQ(g.c.events("admin_action").size(), 0u);
  g.expect_serving();
}

TEST(AdminFaultTest, ATenMegabyteBodyGets413AndTheServerKeepsServing) {
  Coordinator g({"--token", "s3cret"});
  const auto start = Clock::now();
  const HttpReply r =
      http_request(g.admin, "POST", "/v1/services/web/stop", "Authorization: Bearer s3cret\r\n",
                   std::string(10 * 1024 * 1024, 'x'), 20s);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  std::printf("10 MB body: %d in %lld ms\n", r.status, static_cast<long long>(took.count()));
  EXPECT_EQ(r.status, 413) << r.head;
  EXPECT_EQ(g.metric("occasional_admin_requests_total{code=\"413\"}"), 1);
  EXPECT_EQ(g.metric(refused("body_too_large")), 1);
  EXPECT_EQ(g.c.events("admin_action").size(), 0u);
  g.expect_serving();
}

TEST(AdminFaultTest, HealthzAnswersWithin100msUnder200SlowConnections) {
  Coordinator g({"--token", "s3cret"});
  const int fds_before = g.open_fds();
  // Half send nothing; half send a request head a byte at a time (slowloris).
  std::vector<UniqueFd> slow;
  const auto opened = Clock::now();
  for (int i = 0; i < 200; ++i) {
    slow.push_back(connect_loopback(g.admin));
    ASSERT_TRUE(slow.back()) << i;
  }
  const std::string head = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ";
  std::vector<std::chrono::microseconds> lat;
  for (int round = 0; round < 50; ++round) {
    for (size_t i = 0; i < slow.size(); i += 2)
      ::send(slow[i].get(), head.data() + (round % head.size()), 1, MSG_NOSIGNAL);
    const auto sent = Clock::now();
    const HttpReply h = http_request(g.admin, "GET", "/healthz", "", "", 2s);
    lat.push_back(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - sent));
    EXPECT_EQ(h.status, 200) << "round " << round;
    EXPECT_EQ(http_request(g.port, "GET", "/").status, 200) << "round " << round;
    std::this_thread::sleep_for(20ms);  // the pace of the slow writers, not a wait for an event
  }
  std::sort(lat.begin(), lat.end());
  std::printf(
      "/healthz under 200 slow connections: p50 %lld us, p90 %lld us, max %lld us (%zu probes)\n",
      static_cast<long long>(lat[lat.size() / 2].count()),
      static_cast<long long>(lat[lat.size() * 9 / 10].count()),
      static_cast<long long>(lat.back().count()), lat.size());
  // Starved probes would all be slow; one scheduler stall on a shared CI
  // machine (seen under ASan with the host at load 10) makes only one slow.
  // So 90% of the probes, not the slowest, must answer within 100 ms.
  EXPECT_LT(lat[lat.size() * 9 / 10], 100ms);
  // /readyz has the same reserve; other paths do not.
  EXPECT_EQ(http_request(g.admin, "GET", "/readyz").status, 200);
  // The clients stay connected and silent: the coordinator closes every one
  // of them itself, within the 10 s it gives a request (2 s on a probe
  // connection), and its fds return to their count before.
  const auto released = Clock::now() + 15s;
  while (g.open_fds() > fds_before && Clock::now() < released) std::this_thread::sleep_for(50ms);
  EXPECT_LE(g.open_fds(), fds_before);
  std::printf("slow connections all closed by the coordinator %.1f s after they opened\n",
              std::chrono::duration<double>(Clock::now() - opened).count());
  const double capped = g.metric(refused("connection_cap"));
  const double timed_out = g.metric(refused("timeout"));
  std::printf("closed at the cap: %.0f, timed out: %.0f\n", capped, timed_out);
  EXPECT_GT(capped, 0);
  EXPECT_GE(timed_out, 64);
  slow.clear();
  g.expect_serving();
}

}  // namespace
}  // namespace occasional::testing
