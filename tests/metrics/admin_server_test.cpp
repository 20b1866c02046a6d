#include "metrics/admin_server.hpp"

#include <gtest/gtest.h>

namespace occasional::metrics {
namespace {

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

}  // namespace
}  // namespace occasional::metrics
