#include "app/metrics_feed.hpp"

#include <gtest/gtest.h>

#include <numeric>

namespace occasional::gateway {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

TEST(MetricsFeedTest, RestartsPerMinuteCoverTheLastHourOldestFirst) {
  metrics::ConnectionStats stats;
  metrics::Metrics m(stats, [] { return metrics::Status{}; });
  MetricsFeed feed(m);
  const auto t0 = std::chrono::steady_clock::time_point(std::chrono::hours(1000));
  EXPECT_EQ(feed.restarts_per_minute("web", t0), std::vector<uint32_t>(60, 0));
  feed.count_restart("web", t0);
  feed.count_restart("web", t0 + seconds(10));
  feed.count_restart("web", t0 + minutes(5));
  feed.count_restart("other", t0);
  std::vector<uint32_t> at = feed.restarts_per_minute("web", t0 + minutes(5));
  ASSERT_EQ(at.size(), 60u);
  EXPECT_EQ(at[59], 1u);  // the minute under way
  EXPECT_EQ(at[54], 2u);
  EXPECT_EQ(at[0] + at[1] + at[53] + at[55], 0u);
  // An hour on, those minutes have left the window; their slots are reused.
  feed.count_restart("web", t0 + minutes(60));
  at = feed.restarts_per_minute("web", t0 + minutes(60));
  EXPECT_EQ(at[59], 1u);
  EXPECT_EQ(at[4], 1u) << "minute 5 is 55 minutes ago";
  EXPECT_EQ(std::accumulate(at.begin(), at.end(), 0u), 2u) << "minute 0 has left";
  EXPECT_EQ(at[0], 0u);
  at = feed.restarts_per_minute("web", t0 + minutes(200));
  EXPECT_EQ(at, std::vector<uint32_t>(60, 0));
}

}  // namespace
}  // namespace occasional::gateway
