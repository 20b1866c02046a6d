// Issue 24 point 5: monitors and links, with Erlang's semantics.
#include "workers/process.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>

#include "tests/process/process_testing.hpp"

namespace occasional {
namespace {

using namespace std::chrono_literals;
using testing::expect_message;
using testing::field;
using testing::kind;
using testing::kWait;
using testing::run_system;
using testing::wait_down;

Value wait_for_stop(Process& c) {
  c.receive([](const Value& m) { return m == Value("stop"); });
  return "stopped";
}

TEST(Monitor, DownCarriesTheReferenceTheAddressAndTheReason) {
  run_system([](Process& p) {
    Address child = p.spawn(wait_for_stop);
    Reference ref = p.monitor(child);
    p.send(child, "stop");
    std::optional<Value> down = p.receive(kWait);
    ASSERT_TRUE(down);
    EXPECT_EQ(*down, tuple("DOWN", ref, child, Map{{"kind", "normal"}, {"value", "stopped"}}));
  });
}

TEST(Monitor, AnExitedOrUnknownProcessGivesNoprocAtOnce) {
  run_system([](Process& p) {
    auto [dead, ref] = p.spawn_monitor([](Process&) {});
    ASSERT_EQ(kind(wait_down(p, ref)), "normal");
    EXPECT_EQ(kind(wait_down(p, p.monitor(dead), 5s)), "noproc");
    Address unknown = p.self();
    unknown.id += 100'000;
    EXPECT_EQ(kind(wait_down(p, p.monitor(unknown), 5s)), "noproc");
  });
}

TEST(Monitor, DemonitoredGivesNoDown) {
  run_system([](Process& p) {
    Address child = p.spawn(wait_for_stop);
    Reference dropped = p.monitor(child);
    Reference kept = p.monitor(child);
    p.demonitor(dropped);
    p.send(child, "stop");
    EXPECT_EQ(kind(wait_down(p, kept)), "normal");
    // Both DOWNs would have been sent together: the kept one is here, so
    // the dropped one would be too.
    EXPECT_EQ(wait_down(p, dropped, 0ms), std::nullopt);
  });
}

TEST(Monitor, DemonitorRemovesADownAlreadyInTheInbox) {
  run_system([](Process& p) {
    auto [child, ref] = p.spawn_monitor([](Process&) {});
    Reference second = p.monitor(child);  // noproc if it is gone, else a second DOWN
    ASSERT_TRUE(wait_down(p, second));
    // Both DOWNs are in (the first before the second); now drop the first.
    p.demonitor(ref);
    EXPECT_EQ(wait_down(p, ref, 0ms), std::nullopt);
  });
}

TEST(Monitor, DownComesAfterTheProcessesLastMessages) {
  run_system([](Process& p) {
    const Address self = p.self();
    constexpr int kCount = 5'000;
    auto [child, ref] = p.spawn_monitor([self](Process& c) {
      for (int i = 0; i < kCount; ++i) c.send(self, i);
    });
    for (int i = 0; i < kCount; ++i) {
      std::optional<Value> m = p.receive(kWait);
      ASSERT_TRUE(m);
      ASSERT_EQ(*m, Value(i)) << "the DOWN overtook message " << i;
    }
    EXPECT_EQ(kind(wait_down(p, ref, 5s)), "normal");
  });
}

TEST(Link, AnAbnormalExitKillsALinkedProcess) {
  run_system([](Process& p) {
    const Address self = p.self();
    auto [a, a_ref] = p.spawn_monitor([self](Process& c) {
      Address b = c.spawn_link([](Process& d) -> Value {
        d.receive();
        throw std::runtime_error("b failed");
      });
      c.send(self, b);
      for (;;) c.receive();
    });
    std::optional<Value> b = p.receive(kWait);
    ASSERT_TRUE(b && b->as_address());
    p.send(*b->as_address(), "fail now");
    std::optional<Map> reason = wait_down(p, a_ref);
    EXPECT_EQ(kind(reason), "linked");
    ASSERT_TRUE(reason);
    EXPECT_EQ(*reason->find("from"), *b);
    EXPECT_EQ(kind(*reason->find("reason")->as_map()), "error");
  });
}

TEST(Link, ATrappingProcessGetsExitInstead) {
  run_system([](Process& p) {
    const Address self = p.self();
    Address a = p.spawn([self](Process& c) {
      c.trap_exits(true);
      Address b = c.spawn_link([](Process&) -> Value { throw std::runtime_error("b failed"); });
      std::optional<Value> exit = c.receive(kWait);
      c.send(self, tuple(b, exit ? *exit : Value()));
      c.receive();
    });
    std::optional<Value> m = p.receive(kWait);
    ASSERT_TRUE(m);
    const Tuple& t = *m->as_tuple();
    EXPECT_EQ(t[1],
              tuple("EXIT", t[0],
                    Map{{"kind", "error"}, {"type", "std::runtime_error"}, {"what", "b failed"}}));
    p.send(a, "done");
  });
}

TEST(Link, SpawnLinkedChildNormalExitLeavesTheParentAlone) {
  run_system([](Process& p) {
    const Address self = p.self();
    auto [a, a_ref] = p.spawn_monitor([self](Process& c) {
      auto b = c.spawn_link([](Process&) -> Value { return 1; });
      std::optional<Map> reason = testing::wait_exit(c, b);  // noproc or normal
      c.send(self, "still alive");
      c.receive();
      return reason ? Value(*reason) : Value();
    });
    expect_message(p, "still alive");
    p.send(a, "stop");
    EXPECT_EQ(kind(wait_down(p, a_ref)), "normal");
  });
}

TEST(Link, LinkingToAnExitedProcessIsNoproc) {
  run_system([](Process& p) {
    auto [dead, ref] = p.spawn_monitor([](Process&) {});
    ASSERT_EQ(kind(wait_down(p, ref)), "normal");
    const Address self = p.self();
    // Trapping: an EXIT with noproc.
    p.spawn([self, dead](Process& c) {
      c.trap_exits(true);
      c.link(dead);
      std::optional<Value> m = c.receive(kWait);
      c.send(self, m ? *m : Value());
    });
    expect_message(p, tuple("EXIT", dead, Map{{"kind", "noproc"}}));
    // Not trapping: killed, the reason says why.
    auto [victim, victim_ref] = p.spawn_monitor([dead](Process& c) {
      c.link(dead);
      c.receive();
    });
    std::optional<Map> reason = wait_down(p, victim_ref);
    ASSERT_EQ(kind(reason), "linked");
    EXPECT_EQ(*reason->find("from"), Value(dead));
  });
}

TEST(Link, UnlinkedProcessesNoLongerFollowEachOther) {
  run_system([](Process& p) {
    const Address self = p.self();
    Address a = p.spawn([self](Process& c) {
      Address b = c.spawn_link([](Process& d) -> Value {
        d.receive();
        throw std::runtime_error("b failed");
      });
      c.unlink(b);
      c.send(self, b);
      for (;;)
        if (c.receive() == Value("ping")) c.send(self, "pong");
    });
    std::optional<Value> b = p.receive(kWait);
    ASSERT_TRUE(b && b->as_address());
    Reference b_ref = p.monitor(*b->as_address());
    p.send(*b->as_address(), "fail now");
    EXPECT_EQ(kind(wait_down(p, b_ref)), "error");
    p.send(a, "ping");
    expect_message(p, "pong");
  });
}

}  // namespace
}  // namespace occasional
