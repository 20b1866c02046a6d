#include "workers/inbox.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <vector>

namespace occasional {
namespace {

using namespace std::chrono_literals;

Inbox::Match equals(Value v) {
  return [v = std::move(v)](const Value& m) { return m == v; };
}

// A scripted source of messages: each call of wait_for_more delivers the
// next batch; when the script is over it says the deadline has passed.
struct Script {
  std::deque<std::vector<Value>> batches;
  int calls = 0;
  std::vector<Inbox::Deadline> deadlines;

  Inbox::WaitForMore waiter(Inbox& inbox) {
    return [this, &inbox](Inbox::Deadline d) {
      ++calls;
      deadlines.push_back(d);
      if (batches.empty()) return false;
      for (Value& v : batches.front()) inbox.push(std::move(v));
      batches.pop_front();
      return true;
    };
  }
};

TEST(Inbox, ReceiveTakesTheOldestMessage) {
  Inbox inbox;
  inbox.push(1);
  inbox.push(2);
  Script script;
  EXPECT_EQ(inbox.receive(nullptr, std::nullopt, script.waiter(inbox)), Value(1));
  EXPECT_EQ(inbox.receive(nullptr, std::nullopt, script.waiter(inbox)), Value(2));
  EXPECT_EQ(script.calls, 0) << "no wait while something matches";
}

TEST(Inbox, UnmatchedMessagesBeforeAndAfterAMatchStayInOrder) {
  Inbox inbox;
  for (Value v : {Value("a"), Value("b"), Value("match"), Value("c"), Value("d")}) inbox.push(v);
  Script script;
  EXPECT_EQ(inbox.receive(equals("match"), std::nullopt, script.waiter(inbox)), Value("match"));
  ASSERT_EQ(inbox.size(), 4u);
  for (const char* expected : {"a", "b", "c", "d"})
    EXPECT_EQ(inbox.receive(nullptr, std::nullopt, script.waiter(inbox)), Value(expected));
}

TEST(Inbox, AMessageThatArrivesLateIsWaitedFor) {
  Inbox inbox;
  inbox.push("early");
  Script script;
  script.batches = {{Value("x")}, {Value("y"), Value("late"), Value("z")}};
  EXPECT_EQ(inbox.receive(equals("late"), std::nullopt, script.waiter(inbox)), Value("late"));
  EXPECT_EQ(script.calls, 2);
  for (const char* expected : {"early", "x", "y", "z"})
    EXPECT_EQ(inbox.receive(nullptr, std::nullopt, script.waiter(inbox)), Value(expected));
}

TEST(Inbox, TimeoutWithUnmatchedMessagesLeavesThemAll) {
  Inbox inbox;
  inbox.push("u1");
  Script script;
  script.batches = {{Value("u2")}};
  const Inbox::Deadline deadline = deadline_after(10ms);
  EXPECT_EQ(inbox.receive(equals("never"), deadline, script.waiter(inbox)), std::nullopt);
  EXPECT_EQ(inbox.size(), 2u);
  EXPECT_EQ(script.deadlines.front(), deadline) << "the waiter is given the deadline";
}

TEST(Inbox, WhatArrivesInTheLastWaitIsStillLookedAt) {
  Inbox inbox;
  bool called = false;
  auto waiter = [&](Inbox::Deadline) {
    called = true;
    inbox.push("just in time");
    return false;  // the deadline has passed, but this arrived first
  };
  EXPECT_EQ(inbox.receive(nullptr, deadline_after(0ms), waiter), Value("just in time"));
  EXPECT_TRUE(called);
}

TEST(Inbox, ZeroTimeoutLooksOnceAndDoesNotWait) {
  Inbox inbox;
  inbox.push("other");
  Script script;
  EXPECT_EQ(inbox.receive(equals("x"), deadline_after(0ms), script.waiter(inbox)), std::nullopt);
  EXPECT_EQ(script.calls, 1) << "one poll of the sockets";
  EXPECT_EQ(inbox.size(), 1u);
}

TEST(Inbox, InfiniteWaitKeepsWaiting) {
  Inbox inbox;
  Script script;
  for (int i = 0; i < 100; ++i) script.batches.push_back({Value(i)});
  script.batches.push_back({Value("end")});
  EXPECT_EQ(inbox.receive(equals("end"), std::nullopt, script.waiter(inbox)), Value("end"));
  EXPECT_EQ(script.calls, 101);
  EXPECT_EQ(inbox.size(), 100u);
  EXPECT_FALSE(script.deadlines.front().has_value());
}

TEST(Inbox, EachMessageIsOfferedToThePredicateOncePerReceive) {
  Inbox inbox;
  inbox.push(1);
  inbox.push(2);
  Script script;
  script.batches = {{Value(3)}, {Value(4)}, {Value("end")}};
  int looked = 0;
  auto match = [&](const Value& v) {
    ++looked;
    return v == Value("end");
  };
  EXPECT_EQ(inbox.receive(match, std::nullopt, script.waiter(inbox)), Value("end"));
  EXPECT_EQ(looked, 5);
}

TEST(Inbox, RemoveIfTakesOutEveryMatch) {
  Inbox inbox;
  for (int i = 0; i < 6; ++i) inbox.push(i % 2);
  EXPECT_EQ(inbox.remove_if(equals(1)), 3u);
  EXPECT_EQ(inbox.size(), 3u);
}

}  // namespace
}  // namespace occasional
