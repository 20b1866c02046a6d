#include "app/upgrade_state.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>

namespace occasional::gateway {
namespace {

using namespace std::chrono_literals;

UpgradeState sample() {
  UpgradeState st;
  st.from_version = "0.1.0";
  st.listeners = {{"main", 7}, {"other listener", 8}};
  st.admin = 9;
  st.guardian = {1234, 10, 11, {2001, 2002}};
  supervisor::Service::CarriedWorker w;
  w.replica = 1;
  w.pid = 2001;
  w.pidfd = 12;
  w.control = 13;
  w.counter = 14;
  w.takes_batches = true;
  w.handed = 500;
  w.counted = 490;
  w.started_wall = supervisor::WallTime(1'700'000'000'123'456'789ns);
  w.started_mono = supervisor::MonoTime(987'654'321ns);
  w.status_text = "serving 3 clients, 100% ok\nsecond line";
  w.consecutive = 2;
  w.restarts = {supervisor::MonoTime(1s), supervisor::MonoTime(2s)};
  w.process_id = 42;
  w.process_fd = 17;
  UpgradeState::CarriedService s{"web", {w}, {{1, Balancer::Carried{10, 480}}}};
  supervisor::Service::CarriedWorker bare;
  bare.replica = 0;
  bare.pid = 2002;
  bare.pidfd = 15;
  bare.control = 16;
  s.workers.insert(s.workers.begin(), bare);
  st.services.push_back(s);
  st.listener_counts["main"] = {100, 95, 5};
  st.counters = "c occasional_upgrades_total - 3\nh x - 1 0.5 1:1;inf:1\n";
  supervisor::ProcessHub::Carried hub;
  hub.creation = 1'765'000'000;
  hub.next_id = 57;
  hub.next_ref = 1ull << 40;
  st.processes = hub;
  return st;
}

TEST(UpgradeStateTest, WhatIsWrittenIsReadBack) {
  const UpgradeState st = decode_upgrade_state(encode_upgrade_state(sample()));
  EXPECT_EQ(st.from_version, "0.1.0");
  EXPECT_EQ(st.listeners, (std::map<std::string, int>{{"main", 7}, {"other listener", 8}}));
  EXPECT_EQ(st.admin, 9);
  EXPECT_EQ(st.guardian.pid, 1234);
  EXPECT_EQ(st.guardian.pipe, 10);
  EXPECT_EQ(st.guardian.pidfd, 11);
  EXPECT_EQ(st.guardian.groups, (std::vector<pid_t>{2001, 2002}));
  ASSERT_EQ(st.services.size(), 1u);
  const auto& s = st.services[0];
  EXPECT_EQ(s.name, "web");
  ASSERT_EQ(s.workers.size(), 2u);
  EXPECT_EQ(s.workers[0].counter, -1);
  EXPECT_TRUE(s.workers[0].status_text.empty());
  const auto& w = s.workers[1];
  EXPECT_EQ(w.replica, 1);
  EXPECT_EQ(w.pid, 2001);
  EXPECT_EQ(w.pidfd, 12);
  EXPECT_EQ(w.control, 13);
  EXPECT_EQ(w.counter, 14);
  EXPECT_TRUE(w.takes_batches);
  EXPECT_EQ(w.handed, 500u);
  EXPECT_EQ(w.counted, 490u);
  EXPECT_EQ(w.started_wall, supervisor::WallTime(1'700'000'000'123'456'789ns));
  EXPECT_EQ(w.started_mono, supervisor::MonoTime(987'654'321ns));
  EXPECT_EQ(w.status_text, "serving 3 clients, 100% ok\nsecond line");
  EXPECT_EQ(w.consecutive, 2);
  EXPECT_EQ(w.restarts.size(), 2u);
  EXPECT_EQ(s.balance.at(1).outstanding, 10u);
  EXPECT_EQ(s.balance.at(1).counted_base, 480u);
  EXPECT_EQ(st.listener_counts.at("main").handed_off, 95u);
  EXPECT_EQ(st.counters, "c occasional_upgrades_total - 3\nh x - 1 0.5 1:1;inf:1\n");
  EXPECT_EQ(s.workers[0].process_fd, -1);
  EXPECT_EQ(w.process_id, 42u);
  EXPECT_EQ(w.process_fd, 17);
  ASSERT_TRUE(st.processes);
  EXPECT_EQ(st.processes->creation, 1'765'000'000u);
  EXPECT_EQ(st.processes->next_id, 57u);
  EXPECT_EQ(st.processes->next_ref, 1ull << 40);
  EXPECT_EQ(st.fds(), (std::vector<int>{7, 8, 9, 10, 11, 15, 16, 12, 13, 14, 17}));
}

// A version 1 state (a coordinator from before the process hub) is still
// read: its workers come without a process channel, the hub afresh.
TEST(UpgradeStateTest, AVersionOneStateIsReadWithoutProcesses) {
  std::string text = encode_upgrade_state(sample());
  std::string v1;
  size_t at = 0;
  bool first = true;
  while (at < text.size()) {
    const size_t end = text.find('\n', at);
    std::string line = text.substr(at, end - at);
    at = end + 1;
    if (line.starts_with("counters")) {
      v1 += text.substr(at - line.size() - 1);
      break;
    }
    if (line.starts_with("processes ")) continue;
    if (line.starts_with("worker "))  // without its last two fields
      for (int i = 0; i < 2; ++i) line.erase(line.rfind(' '));
    if (first) line.back() = '1';  // the header: "<magic> 2"
    first = false;
    v1 += line + "\n";
  }
  ASSERT_NE(v1.find(" 1\nfrom"), std::string::npos) << v1;
  const UpgradeState st = decode_upgrade_state(v1);
  EXPECT_FALSE(st.processes);
  ASSERT_EQ(st.services.size(), 1u);
  ASSERT_EQ(st.services[0].workers.size(), 2u);
  EXPECT_EQ(st.services[0].workers[1].status_text, "serving 3 clients, 100% ok\nsecond line");
  EXPECT_EQ(st.services[0].workers[1].process_fd, -1);
  EXPECT_EQ(st.counters, "c occasional_upgrades_total - 3\nh x - 1 0.5 1:1;inf:1\n");
  // A version 2 worker line read as version 1 has too many fields.
  std::string mixed = text;
  mixed.replace(mixed.find(" 2\n"), 3, " 1\n");
  EXPECT_THROW(decode_upgrade_state(mixed), UpgradeStateError);
}

TEST(UpgradeStateTest, AnotherVersionOrBadTextIsRefusedWithAReason) {
  std::string text = encode_upgrade_state(sample());
  std::string other = text;
  other.replace(other.find(" 2\n"), 3, " 3\n");
  try {
    decode_upgrade_state(other);
    FAIL() << "version 3 was read";
  } catch (const UpgradeStateError& e) {
    EXPECT_NE(std::string(e.what()).find("version 3, this binary reads versions 1 to 2"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(decode_upgrade_state(""), UpgradeStateError);
  EXPECT_THROW(decode_upgrade_state("something else 1\n"), UpgradeStateError);
  // Cut before its end: no counters record.
  EXPECT_THROW(decode_upgrade_state(text.substr(0, text.find("counters"))), UpgradeStateError);
  std::string bad_number = text;
  bad_number.replace(bad_number.find("admin 9"), 7, "admin x");
  EXPECT_THROW(decode_upgrade_state(bad_number), UpgradeStateError);
  EXPECT_THROW(decode_upgrade_state(std::string(text).insert(text.find("admin"), "what 1\n")),
               UpgradeStateError);
}

TEST(UpgradeStateTest, TheEnvironmentHandsTheStateOverOnce) {
  int memfd = -1;
  ::unsetenv(kUpgradeStateEnv);
  EXPECT_FALSE(take_upgrade_state(memfd));
  UniqueFd fd = write_upgrade_state(encode_upgrade_state(sample()));
  ::setenv(kUpgradeStateEnv, std::to_string(fd.get()).c_str(), 1);
  const int raw = fd.release();
  std::optional<UpgradeState> st = take_upgrade_state(memfd);
  ASSERT_TRUE(st);
  EXPECT_EQ(memfd, raw);
  EXPECT_EQ(st->admin, 9);
  EXPECT_EQ(std::getenv(kUpgradeStateEnv), nullptr);
  // The memfd was closed.
  EXPECT_EQ(::fcntl(raw, F_GETFD), -1);
  ::setenv(kUpgradeStateEnv, "not-an-fd", 1);
  EXPECT_THROW(take_upgrade_state(memfd), UpgradeStateError);
}

}  // namespace
}  // namespace occasional::gateway
