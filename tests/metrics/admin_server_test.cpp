#include "metrics/admin_server.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <thread>

#include "tests/integration/http_client.hpp"

namespace occasional::metrics {
namespace {

using testing::http_request;
using testing::HttpReply;
using testing::raw_exchange;

TEST(EventStreamTest, KeepsTheLastLinesAndHandsNewOnesToSubscribers) {
  EventStream events(3);
  std::vector<std::string> got;
  events.publish("{\"n\":1}\n");
  auto handle = events.subscribe([&](std::string_view line) { got.emplace_back(line); });
  for (int i = 2; i <= 5; ++i) events.publish("{\"n\":" + std::to_string(i) + "}\n");
  events.unsubscribe(handle);
  events.publish("{\"n\":6}");
  EXPECT_EQ(got, (std::vector<std::string>{"{\"n\":2}", "{\"n\":3}", "{\"n\":4}", "{\"n\":5}"}));
  EXPECT_EQ(std::vector<std::string>(events.backlog().begin(), events.backlog().end()),
            (std::vector<std::string>{"{\"n\":4}", "{\"n\":5}", "{\"n\":6}"}));
  EXPECT_EQ(events.published(), 6u);
}

TEST(AdminServerTest, TokenComparisonNeedsTheWholeToken) {
  EXPECT_TRUE(token_matches("s3cret", "s3cret"));
  EXPECT_FALSE(token_matches("s3cre", "s3cret"));
  EXPECT_FALSE(token_matches("s3cretX", "s3cret"));
  EXPECT_FALSE(token_matches("", "s3cret"));
  EXPECT_FALSE(token_matches("S3cret", "s3cret"));
}

TEST(AdminServerTest, MetricsExpositionHasTheCatalogue) {
  ConnectionStats stats;
  stats.accepted = 3;
  stats.reject("queue_full");
  stats.handoff_duration.observe(0.00002);
  Metrics m(stats, [] {
    Status st;
    ServiceStatus s;
    s.name = "web";
    s.ready_workers = 1;
    s.workers.push_back({0, 42, "running", true, 1.0, 0});
    st.services.push_back(s);
    return st;
  });
  m.worker_started("web", false);
  m.worker_exited("web", "killed", "SIGKILL", false, 137, 2.5, 1.7e9);
  const std::string text = m.exposition();
  for (const char* line :
       {"occasional_connections_accepted_total 3",
        "occasional_connections_rejected_total{reason=\"queue_full\"} 1",
        "occasional_handoff_duration_seconds_bucket{le=\"2.5e-05\"} 1",
        "occasional_worker_exits_total{reason=\"killed\",service=\"web\",signal=\"SIGKILL\"} 1",
        "occasional_worker_last_exit_code{service=\"web\"} 137",
        "occasional_workers{service=\"web\",state=\"ready\"} 1",
        "occasional_service_ready{service=\"web\"} 1", "process_open_fds "})
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
}

TEST(MetricsTest, CarriedCountersContinueInTheNextCoordinator) {
  ConnectionStats before_stats;
  before_stats.accepted = 7;
  before_stats.reject("queue_full");
  before_stats.handoff_duration.observe(0.00002);
  Metrics before(before_stats, [] { return Status{}; });
  before.worker_started("web", false);
  before.worker_exited("web", "killed", "SIGKILL", false, 137, 2.5, 1.7e9);
  before.admin_refused("timeout");
  before.upgrade_failed("self_test");
  const std::string carried = before.carried_counters();
  EXPECT_EQ(carried.find("process_"), std::string::npos) << carried;

  // The next coordinator counts from zero; what it exports adds what was carried.
  ConnectionStats after_stats;
  after_stats.accepted = 2;
  Metrics after(after_stats, [] { return Status{}; });
  after.carry_counters(carried);
  after.worker_started("web", true);
  after.upgrade_done();
  const std::string text = after.exposition();
  for (const char* line :
       {"occasional_connections_accepted_total 9",
        "occasional_connections_rejected_total{reason=\"queue_full\"} 1",
        "occasional_handoff_duration_seconds_bucket{le=\"2.5e-05\"} 1",
        "occasional_handoff_duration_seconds_count 1",
        "occasional_worker_starts_total{service=\"web\"} 2",
        "occasional_worker_restarts_total{service=\"web\"} 1",
        "occasional_worker_exits_total{reason=\"killed\",service=\"web\",signal=\"SIGKILL\"} 1",
        "occasional_worker_uptime_seconds_count{service=\"web\"} 1",
        "occasional_admin_refused_total{reason=\"timeout\"} 1",
        "occasional_upgrade_failures_total{reason=\"self_test\"} 1", "occasional_upgrades_total 1"})
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
  // Carried again (the next upgrade), nothing is counted twice.
  ConnectionStats third_stats;
  Metrics third(third_stats, [] { return Status{}; });
  third.carry_counters(after.carried_counters());
  EXPECT_NE(third.exposition().find("occasional_connections_accepted_total 9\n"),
            std::string::npos);
  EXPECT_THROW(third.carry_counters("x y\n"), std::invalid_argument);
}

TEST(AdminServerTest, EverySeriesWithKnownLabelsStartsAtZero) {
  ConnectionStats stats;
  Metrics m(stats, [] { return Status{}; });
  m.declare_service("web");
  const std::string text = m.exposition();
  for (const char* line :
       {"occasional_worker_starts_total{service=\"web\"} 0",
        "occasional_worker_restarts_total{service=\"web\"} 0",
        "occasional_worker_core_dumps_total{service=\"web\"} 0",
        "occasional_service_failures_total{service=\"web\"} 0",
        "occasional_worker_killed_at_grace_total{service=\"web\"} 0",
        "occasional_worker_watchdog_timeouts_total{service=\"web\"} 0",
        "occasional_worker_accept_probe_failures_total{service=\"web\"} 0",
        "occasional_worker_exits_total{reason=\"exited\",service=\"web\",signal=\"none\"} 0",
        "occasional_worker_exits_total{reason=\"killed\",service=\"web\",signal=\"SIGKILL\"} 0",
        "occasional_worker_exits_total{reason=\"killed\",service=\"web\",signal=\"SIGSEGV\"} 0",
        "occasional_worker_protocol_errors_total{reason=\"not_json\",service=\"web\"} 0",
        "occasional_worker_uptime_seconds_count{service=\"web\"} 0",
        "occasional_connections_rejected_total{reason=\"no_route\"} 0",
        "occasional_connections_rejected_total{reason=\"queue_timeout\"} 0",
        "occasional_accept_errors_total{reason=\"emfile\"} 0",
        "occasional_handoff_retries_total{reason=\"worker_gone\"} 0",
        "occasional_admin_refused_total{reason=\"cross_origin\"} 0"})
    EXPECT_NE(text.find(std::string(line) + "\n"), std::string::npos) << line << "\n" << text;
  m.worker_started("web", true);
  EXPECT_NE(m.exposition().find("occasional_worker_restarts_total{service=\"web\"} 1\n"),
            std::string::npos);
}

// Records the operations it is asked for.
struct FakeBackend : AdminBackend {
  std::vector<std::string> acted;
  Status status() override { return {}; }
  ActionResult act(const std::string& service, const std::string& action, int) override {
    acted.push_back(service + "/" + action);
    return {200, "done"};
  }
};

// A real AdminServer on 127.0.0.1:0 (or `config`), run on its own thread;
// the test talks to it over real sockets.
struct Served {
  ConnectionStats stats;
  Metrics metrics{stats, [] { return Status{}; }};
  FakeBackend backend;
  boost::asio::io_context io;
  std::unique_ptr<AdminServer> server;
  std::thread thread;
  int port = 0;

  explicit Served(AdminConfig config = {}) {
    config.endpoint.port(0);
    server = std::make_unique<AdminServer>(io, config, backend, metrics);
    port = server->port();
    server->start();
    thread = std::thread([this] { io.run(); });
  }
  ~Served() {
    io.stop();
    if (thread.joinable()) thread.join();
  }
  // Only once the loop has stopped (the thread owns everything before).
  std::vector<std::string> acted() {
    io.stop();
    if (thread.joinable()) thread.join();
    return backend.acted;
  }
};

AdminConfig with_token(std::string token) {
  AdminConfig c;
  c.token = std::move(token);
  return c;
}

TEST(AdminServerTest, BearerSchemeIsCaseInsensitive) {
  Served s(with_token("s3cret"));
  for (const char* scheme : {"Bearer", "bearer", "BEARER", "bEaReR"})
    EXPECT_EQ(http_request(s.port, "POST", "/v1/services/web/stop",
                           std::string("Authorization: ") + scheme + " s3cret\r\n")
                  .status,
              200)
        << scheme;
  EXPECT_EQ(http_request(s.port, "POST", "/v1/services/web/stop", "Authorization: Basic s3cret\r\n")
                .status,
            401);
  EXPECT_EQ(http_request(s.port, "POST", "/v1/services/web/stop", "Authorization: Bearers3cret\r\n")
                .status,
            401);
  EXPECT_EQ(s.acted().size(), 4u);
}

TEST(AdminServerTest, BearerCredentialsParsesTheScheme) {
  EXPECT_EQ(bearer_credentials("Bearer abc"), "abc");
  EXPECT_EQ(bearer_credentials("bearer abc"), "abc");
  EXPECT_EQ(bearer_credentials("BEARER   abc"), "abc");
  EXPECT_EQ(bearer_credentials("Bearer"), std::nullopt);
  EXPECT_EQ(bearer_credentials("Bearerabc"), std::nullopt);
  EXPECT_EQ(bearer_credentials("Basic abc"), std::nullopt);
  EXPECT_EQ(bearer_credentials(""), std::nullopt);
}

TEST(AdminServerTest, HeadGetsTheHeadersButNoBody) {
  Served s;
  const std::string out =
      raw_exchange(s.port, "HEAD /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  ASSERT_TRUE(out.starts_with("HTTP/1.1 200")) << out;
  const auto end = out.find("\r\n\r\n");
  ASSERT_NE(end, std::string::npos) << out;
  EXPECT_EQ(out.substr(end + 4), "") << out;
  // The length the GET would have, as RFC 9110 §9.3.2 asks.
  EXPECT_NE(out.find("Content-Length: 3\r\n"), std::string::npos) << out;
}

// With no token on loopback, a POST needs the custom header and no Origin:
// a page in a browser cannot send either without the browser asking first
// (a CORS preflight this server never approves).
TEST(AdminServerTest, WithoutATokenAPostNeedsTheCsrfHeaderAndNoOrigin) {
  Served s;
  const std::string kPath = "/v1/services/web/stop";
  HttpReply bare = http_request(s.port, "POST", kPath);
  EXPECT_EQ(bare.status, 403) << bare.body;
  EXPECT_NE(bare.body.find("X-Occasional-Admin"), std::string::npos) << bare.body;
  HttpReply cross = http_request(s.port, "POST", kPath,
                                 "X-Occasional-Admin: 1\r\nOrigin: https://evil.example\r\n");
  EXPECT_EQ(cross.status, 403) << cross.body;
  // A form post from a page: the simple content type, an Origin.
  EXPECT_EQ(
      http_request(s.port, "POST", kPath,
                   "Origin: null\r\nContent-Type: application/x-www-form-urlencoded\r\n", "a=b")
          .status,
      403);
  EXPECT_EQ(http_request(s.port, "POST", kPath, "X-Occasional-Admin: 1\r\n").status, 200);
  EXPECT_NE(http_request(s.port, "GET", "/metrics")
                .body.find("occasional_admin_refused_total{reason=\"cross_origin\"} 2"),
            std::string::npos);
  EXPECT_EQ(s.acted(), std::vector<std::string>{"web/stop"});
}

TEST(AdminServerTest, WithATokenTheTokenIsWhatCounts) {
  Served s(with_token("s3cret"));
  const std::string kPath = "/v1/services/web/stop";
  EXPECT_EQ(http_request(s.port, "POST", kPath, "X-Occasional-Admin: 1\r\n").status, 401);
  EXPECT_EQ(http_request(s.port, "POST", kPath, "Authorization: Bearer s3cret\r\n").status, 200);
  // A browser cannot send the Authorization header cross-origin unprompted,
  // but a page that holds the token is refused anyway.
  EXPECT_EQ(http_request(s.port, "POST", kPath,
                         "Authorization: Bearer s3cret\r\nOrigin: https://evil.example\r\n")
                .status,
            403);
  EXPECT_EQ(s.acted().size(), 1u);
}

TEST(AdminServerTest, ANonLoopbackAddressWithoutATokenRefusesToStart) {
  ConnectionStats stats;
  Metrics metrics(stats, [] { return Status{}; });
  FakeBackend backend;
  boost::asio::io_context io;
  AdminConfig c;
  c.endpoint = {boost::asio::ip::make_address("0.0.0.0"), 0};
  try {
    AdminServer server(io, c, backend, metrics);
    ADD_FAILURE() << "started on 0.0.0.0 without a token";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("0.0.0.0"), std::string::npos) << what;
    EXPECT_NE(what.find("--token-file"), std::string::npos) << what;
    EXPECT_NE(what.find("--admin-insecure"), std::string::npos) << what;
  }
  c.token = "s3cret";
  EXPECT_NO_THROW(AdminServer(io, c, backend, metrics));
  c.token.clear();
  c.insecure = true;
  EXPECT_NO_THROW(AdminServer(io, c, backend, metrics));
}

// Connections that send nothing fill the general cap; probes still answer
// from their own reserve, and the oldest silent reserve connection makes
// room for a new one.
TEST(AdminServerTest, ProbesAnswerWhenTheConnectionCapIsFull) {
  AdminConfig c;
  c.max_connections = 4;
  Served s(c);
  std::vector<UniqueFd> silent;
  for (int i = 0; i < 40; ++i) silent.push_back(testing::connect_loopback(s.port));
  for (int i = 0; i < 5; ++i) {
    const auto start = std::chrono::steady_clock::now();
    HttpReply h = http_request(s.port, "GET", "/healthz");
    EXPECT_EQ(h.status, 200) << i;
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(500));
    EXPECT_EQ(http_request(s.port, "GET", "/readyz").status, 200);
  }
  // The reserve is for probes only.
  EXPECT_EQ(http_request(s.port, "GET", "/v1/status").status, 503);
  silent.clear();
}

TEST(AdminServerTest, ASilentConnectionIsClosedAtTheTimeout) {
  AdminConfig c;
  c.timeout = std::chrono::milliseconds(200);
  Served s(c);
  const auto start = std::chrono::steady_clock::now();
  const std::string out = raw_exchange(s.port, "", std::chrono::seconds(5), false);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(out, "");
  EXPECT_GE(took, std::chrono::milliseconds(150));
  EXPECT_LT(took, std::chrono::seconds(2));
}

// Prometheus keeps its scrape connection open between scrapes: a wait for a
// next request that never starts is no refusal, and is not counted as one
// (the documented alert is on any increase). A request cut off half-way is.
TEST(AdminServerTest, AnIdleKeptAliveConnectionIsClosedQuietly) {
  AdminConfig c;
  c.timeout = std::chrono::milliseconds(200);
  Served s(c);
  const std::string out = raw_exchange(s.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                                       std::chrono::seconds(5), false);
  EXPECT_TRUE(out.starts_with("HTTP/1.1 200")) << out;
  EXPECT_EQ(out.find("408"), std::string::npos) << out;
  const std::string cut = raw_exchange(s.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /he",
                                       std::chrono::seconds(5), false);
  EXPECT_TRUE(cut.starts_with("HTTP/1.1 200")) << cut;
  const std::string metrics = http_request(s.port, "GET", "/metrics").body;
  EXPECT_NE(metrics.find("occasional_admin_refused_total{reason=\"timeout\"} 1"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("occasional_admin_requests_total{code=\"408\"} 1"), std::string::npos)
      << metrics;
}

}  // namespace
}  // namespace occasional::metrics
