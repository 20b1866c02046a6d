// The process hub's metrics (docs/metrics.md, "Processes"), from a real
// system of processes through to the exposition text.
#include "app/process_metrics.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <optional>
#include <stdexcept>
#include <string>

#include "metrics/connection_stats.hpp"
#include "metrics/metrics.hpp"
#include "supervisor/process_run.hpp"
#include "workers/process.hpp"

namespace occasional::gateway {
namespace {

using namespace std::chrono_literals;

// Waits for the DOWN of `ref` (process zero cannot use GoogleTest).
bool down(Process& p, const Reference& ref) {
  const Value r(ref);
  return p
      .receive(
          [&r](const Value& m) {
            const Tuple* t = m.as_tuple();
            return t && t->size() == 4 && (*t)[0] == Value("DOWN") && (*t)[1] == r;
          },
          20s)
      .has_value();
}

TEST(ProcessMetrics, CountSpawnsExitsByKindChannelsDropsMonitorsAndLinks) {
  std::optional<metrics::ProcessesStatus> seen;
  const Map reason = supervisor::run_for_reason(
      [](Process& p) -> Value {
        bool ok = true;
        // One exit of each kind but linked and start_failed.
        auto [returned, r1] = p.spawn_monitor([](Process&) {});
        auto [threw, r2] = p.spawn_monitor([](Process&) { throw std::runtime_error("x"); });
        auto [exited, r3] = p.spawn_monitor([](Process&) { ::_exit(3); });
        auto [killed, r4] = p.spawn_monitor([](Process&) { ::raise(SIGKILL); });
        for (const Reference& r : {r1, r2, r3, r4}) ok = down(p, r) && ok;
        // Never talked to, and gone: the coordinator answers noproc.
        p.send(returned, "lost");
        ok = ok && p.dropped_sends() == 1;
        // Alive when process zero ends: b monitors and links a.
        const Address self = p.self();
        Address a = p.spawn([](Process& c) { c.receive(); });
        p.spawn([self, a](Process& c) {
          c.monitor(a);
          c.link(a);
          c.send(self, "set");  // the one channel
          c.receive();
        });
        ok = ok && p.receive(20s) == Value("set");
        return ok ? "ok" : "failed";
      },
      [&seen](const supervisor::ProcessHub& hub) { seen = processes_status(hub); });
  ASSERT_EQ(Value(reason), Value(Map{{"kind", "normal"}, {"value", "ok"}}));
  ASSERT_TRUE(seen);
  const metrics::ProcessesStatus& s = *seen;
  EXPECT_EQ(s.alive, 2u);    // a and b; process zero has exited
  EXPECT_EQ(s.spawned, 7u);  // zero, four that exited, a, b
  EXPECT_EQ(s.exits.at("normal"), 2u) << "the returning child and process zero";
  EXPECT_EQ(s.exits.at("error"), 1u);
  EXPECT_EQ(s.exits.at("exit_code"), 1u);
  EXPECT_EQ(s.exits.at("signal"), 1u);
  EXPECT_EQ(s.channels, 1u);
  EXPECT_EQ(s.sends_dropped, 1u);
  EXPECT_EQ(s.monitors, 1u) << "b's on a; zero's fired or went with it";
  EXPECT_EQ(s.links, 1u);
  EXPECT_EQ(s.protocol_errors, 0u);

  metrics::ConnectionStats connections;
  metrics::Metrics m(connections, [&s] {
    metrics::Status st;
    st.processes = s;
    return st;
  });
  const std::string text = m.exposition();
  for (const char* line :
       {"occasional_processes 2\n", "occasional_processes_spawned_total 7\n",
        "occasional_process_exits_total{reason=\"normal\"} 2\n",
        "occasional_process_exits_total{reason=\"linked\"} 0\n",
        "occasional_process_exits_total{reason=\"start_failed\"} 0\n",
        "occasional_process_channels_total 1\n", "occasional_process_sends_dropped_total 1\n",
        "occasional_process_monitors 1\n", "occasional_process_links 1\n",
        "occasional_process_protocol_errors_total 0\n",
        "occasional_process_notices_dropped_total 0\n",
        "occasional_process_connect_failures_total 0\n"})
    EXPECT_NE(text.find(line), std::string::npos) << line << "not in\n" << text;
}

TEST(ProcessMetrics, NotExportedWhereNoHubRuns) {
  metrics::ConnectionStats connections;
  metrics::Metrics m(connections, [] { return metrics::Status{}; });
  EXPECT_EQ(m.exposition().find("occasional_process"), std::string::npos);
}

}  // namespace
}  // namespace occasional::gateway
