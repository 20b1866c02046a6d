// Issue 24 points 3, 4 and 7: send, selective receive, per-sender order,
// sends to processes that are not there, back-pressure.
#include "workers/process.hpp"

#include <gtest/gtest.h>

#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>

#include "tests/process/process_testing.hpp"

namespace occasional {
namespace {

using namespace std::chrono_literals;
using testing::expect_message;
using testing::kind;
using testing::kWait;
using testing::run_system;

std::function<bool(const Value&)> equals(Value v) {
  return [v = std::move(v)](const Value& m) { return m == v; };
}

TEST(Messages, SendAndReceiveBetweenProcesses) {
  run_system([](Process& p) {
    Address echo = p.spawn([](Process& c) {
      for (;;) {
        Value m = c.receive();
        const Tuple* t = m.as_tuple();
        if (!t || t->size() != 2) return;
        c.send(*(*t)[0].as_address(), (*t)[1]);
      }
    });
    const Value values[] = {Value(),
                            true,
                            42,
                            -7'000'000'000LL,
                            2.5,
                            "text",
                            binary("\x00\xff"),
                            list(1, "a"),
                            tuple(),
                            Value(Map{{"k", list()}}),
                            p.self()};
    for (const Value& v : values) {
      p.send(echo, tuple(p.self(), v));
      std::optional<Value> back = p.receive(kWait);
      ASSERT_TRUE(back);
      EXPECT_EQ(*back, v);
    }
  });
}

TEST(Messages, OneSendersMessagesArriveInOrder) {
  run_system([](Process& p) {
    const Address self = p.self();
    constexpr int kCount = 20'000;
    for (int sender = 0; sender < 2; ++sender)
      p.spawn([self, sender](Process& c) {
        for (int i = 0; i < kCount; ++i) c.send(self, tuple(sender, i));
      });
    int next[2] = {0, 0};
    for (int n = 0; n < 2 * kCount; ++n) {
      std::optional<Value> m = p.receive(kWait);
      ASSERT_TRUE(m);
      const Tuple& t = *m->as_tuple();
      const int sender = static_cast<int>(*t[0].as_int());
      ASSERT_EQ(*t[1].as_int(), next[sender]) << "from sender " << sender;
      ++next[sender];
    }
  });
}

TEST(Messages, SendToSelfGoesToTheInbox) {
  run_system([](Process& p) {
    p.send(p.self(), "to me");
    EXPECT_EQ(p.receive(0ms), Value("to me"));
  });
}

TEST(Messages, SelectiveReceiveLeavesUnmatchedMessagesInOrder) {
  run_system([](Process& p) {
    const Address self = p.self();
    p.spawn([self](Process& c) {
      for (const char* m : {"a", "x1", "b", "x2", "sync"}) c.send(self, m);
    });
    expect_message(p, "sync");  // all five have arrived; four are left
    EXPECT_EQ(p.receive(equals("b"), 0ms), Value("b"));
    EXPECT_EQ(p.receive(0ms), Value("a"));
    EXPECT_EQ(p.receive(0ms), Value("x1"));
    EXPECT_EQ(p.receive(0ms), Value("x2"));
    EXPECT_EQ(p.receive(0ms), std::nullopt);
  });
}

TEST(Messages, SelectiveReceiveWaitsForALateMessage) {
  run_system([](Process& p) {
    const Address self = p.self();
    Address child = p.spawn([self](Process& c) {
      c.receive();  // "go": sent after the receive below has started waiting... or just before
      c.send(self, "early");
      c.send(self, "late");
    });
    p.send(child, "go");
    EXPECT_EQ(p.receive(equals("late"), kWait), Value("late"));
    EXPECT_EQ(p.receive(0ms), Value("early"));
  });
}

TEST(Messages, TimeoutWithUnmatchedMessagesPresent) {
  run_system([](Process& p) {
    const Address self = p.self();
    p.spawn([self](Process& c) {
      c.send(self, "u1");
      c.send(self, "sync");
      c.send(self, "u2");
    });
    expect_message(p, "sync");
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(p.receive(equals("never"), 100ms), std::nullopt);
    const auto waited = std::chrono::steady_clock::now() - start;
    EXPECT_GE(waited, 100ms);
    EXPECT_LT(waited, 5s);
    EXPECT_EQ(p.receive(0ms), Value("u1"));
    EXPECT_EQ(p.receive(kWait), Value("u2"));
  });
}

TEST(Messages, ZeroTimeoutPollsWithoutWaiting) {
  run_system([](Process& p) {
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(p.receive(0ms), std::nullopt);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 50ms);
    // A poll reads what has arrived on the sockets, not only what is queued.
    const Address self = p.self();
    p.spawn([self](Process& c) { c.send(self, "polled"); });
    std::optional<Value> got;
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    while (!got && std::chrono::steady_clock::now() < deadline) got = p.receive(0ms);
    EXPECT_EQ(got, Value("polled"));
  });
}

TEST(Messages, SendToAnExitedProcessIsDroppedAndCounted) {
  run_system([](Process& p) {
    const Address self = p.self();
    // One that never talked to us, and one with a channel to us.
    auto [quiet, quiet_ref] = p.spawn_monitor([](Process&) {});
    auto [talker, talker_ref] = p.spawn_monitor([self](Process& c) { c.send(self, "hi"); });
    EXPECT_EQ(kind(testing::wait_down(p, quiet_ref)), "normal");
    EXPECT_EQ(kind(testing::wait_down(p, talker_ref)), "normal");
    expect_message(p, "hi");
    EXPECT_EQ(p.dropped_sends(), 0u);
    p.send(quiet, 1);
    EXPECT_EQ(p.dropped_sends(), 1u);
    p.send(talker, 2);
    EXPECT_EQ(p.dropped_sends(), 2u);
    EXPECT_FALSE(p.send_sync(quiet, 3));
    EXPECT_FALSE(p.send_sync(talker, 4));
    EXPECT_EQ(p.dropped_sends(), 4u);
  });
}

TEST(Messages, SendToAnAddressThatNeverExistedIsDropped) {
  run_system([](Process& p) {
    Address never = p.self();
    never.id += 100'000;
    Address other_run = p.self();
    other_run.creation -= 1;
    p.send(never, 1);
    p.send(other_run, 2);
    EXPECT_FALSE(p.send_sync(never, 3));
    EXPECT_EQ(p.dropped_sends(), 3u);
    p.send("no such name", 4);
    EXPECT_EQ(p.dropped_sends(), 4u);
  });
}

TEST(Messages, SendSyncToALiveProcessIsTrue) {
  run_system([](Process& p) {
    Address child = p.spawn([](Process& c) { c.receive(); });
    EXPECT_TRUE(p.send_sync(child, "x"));
    EXPECT_EQ(p.dropped_sends(), 0u);
  });
}

TEST(Messages, AValueThatIsNotEncodableThrows) {
  run_system([](Process& p) {
    Address child = p.spawn([](Process& c) { c.receive(); });
    EXPECT_THROW(p.send(child, std::string("\xff\xfe")), std::invalid_argument);
    p.send(child, "stop");
  });
}

// Sends are batched (docs/messages.md, "When messages leave"): a process
// that returns, or throws, right after sending still delivers every
// message, before its DOWN.
TEST(Messages, BatchedMessagesAreWrittenWhenTheProcessReturnsOrThrows) {
  run_system([](Process& p) {
    const Address self = p.self();
    auto [returns, returns_ref] = p.spawn_monitor([self](Process& c) {
      for (int i = 0; i < 3; ++i) c.send(self, tuple("returns", i));
    });
    auto [throws, throws_ref] = p.spawn_monitor([self](Process& c) {
      for (int i = 0; i < 3; ++i) c.send(self, tuple("throws", i));
      throw std::runtime_error("after sending");
    });
    // The DOWNs first: the messages must already be in the inbox then.
    EXPECT_EQ(kind(testing::wait_down(p, returns_ref)), "normal");
    EXPECT_EQ(kind(testing::wait_down(p, throws_ref)), "error");
    for (const char* who : {"returns", "throws"})
      for (int i = 0; i < 3; ++i)
        EXPECT_EQ(p.receive(equals(tuple(who, i)), 0ms), tuple(who, i)) << who << " " << i;
  });
}

// flush() writes what is batched without waiting for anything: the child
// then waits outside occasional (on a flag in memory shared across the
// fork; a spawned process keeps no inherited fd) until zero has its message.
TEST(Messages, FlushWritesBatchedMessagesAtOnce) {
  void* shared = ::mmap(nullptr, sizeof(std::atomic<int>), PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(shared, MAP_FAILED);
  auto* got = new (shared) std::atomic<int>(0);
  run_system([got](Process& p) {
    const Address self = p.self();
    auto [child, ref] = p.spawn_monitor([self, got](Process& c) {
      c.send(self, "flushed");
      c.flush();
      const auto deadline = std::chrono::steady_clock::now() + kWait;
      while (got->load() == 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(1ms);
      EXPECT_EQ(got->load(), 1) << "zero never had the flushed message";
    });
    EXPECT_EQ(p.receive(kWait), Value("flushed"));
    got->store(1);
    EXPECT_EQ(kind(testing::wait_down(p, ref)), "normal");
  });
  ::munmap(shared, sizeof(std::atomic<int>));
}

// Both send more than any socket buffer holds before reading: each send
// reads its own incoming messages while it waits, so neither deadlocks.
TEST(Messages, TwoProcessesFloodingEachOtherDoNotDeadlock) {
  run_system([](Process& p) {
    constexpr int kCount = 20'000;
    const Value payload = binary(std::string(1024, 'x'));
    auto flood = [payload](Process& c, Address peer) {
      for (int i = 0; i < kCount; ++i) c.send(peer, tuple(i, payload));
      for (int i = 0; i < kCount; ++i) {
        std::optional<Value> m = c.receive(kWait);
        if (!m || (*m->as_tuple())[0] != Value(i))
          return tuple("failed at", i, m ? (*m->as_tuple())[0] : Value(), c.dropped_sends());
      }
      return Value("all");
    };
    const Address self = p.self();
    // The peer may start its flood before our message with its address
    // arrives (two senders, no order between them): wait for the address.
    auto is_address = [](const Value& v) { return v.as_address() != nullptr; };
    Address a = p.spawn([self, flood, is_address](Process& c) {
      Address peer = *c.receive(is_address).as_address();
      c.send(self, tuple("a", flood(c, peer)));
    });
    Address b = p.spawn([self, flood, is_address](Process& c) {
      Address peer = *c.receive(is_address).as_address();
      c.send(self, tuple("b", flood(c, peer)));
    });
    const Reference ref_a = p.monitor(a);
    const Reference ref_b = p.monitor(b);
    p.send(a, b);
    p.send(b, a);
    // Each reports ({name, result}) before it exits; without a report, a
    // DOWN says how one ended early.
    auto is_report = [](const Value& v) { return v.as_tuple() && v.as_tuple()->size() == 2; };
    for (int n = 0; n < 2; ++n) {
      std::optional<Value> m = p.receive(is_report, 2 * kWait);
      if (!m) {
        std::optional<Value> down = p.receive(0ms);
        FAIL() << "a flooding process is stuck or ended early: "
               << (down ? down->to_string() : "no DOWN");
      }
      EXPECT_EQ((*m->as_tuple())[1], Value("all")) << m->to_string();
    }
    EXPECT_EQ(kind(testing::wait_down(p, ref_a)), "normal");
    EXPECT_EQ(kind(testing::wait_down(p, ref_b)), "normal");
  });
}

TEST(Messages, LargeValuesArriveWhole) {
  run_system([](Process& p) {
    const Address self = p.self();
    p.spawn([self](Process& c) { c.send(self, binary(std::string(3 << 20, 'y'))); });
    std::optional<Value> m = p.receive(kWait);
    ASSERT_TRUE(m);
    ASSERT_TRUE(m->as_binary());
    EXPECT_EQ(m->as_binary()->bytes.size(), 3u << 20);
  });
}

TEST(Messages, SendToARegisteredName) {
  run_system([](Process& p) {
    const Address self = p.self();
    p.spawn([self](Process& c) {
      EXPECT_TRUE(c.register_name("greeter"));
      c.send(self, "registered");
      Value m = c.receive();
      c.send(self, tuple("got", m));
    });
    expect_message(p, "registered");
    std::optional<Address> a = p.whereis("greeter");
    ASSERT_TRUE(a);
    p.send("greeter", "by name");
    expect_message(p, tuple("got", "by name"));
  });
}

}  // namespace
}  // namespace occasional
