#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "workers/process.hpp"
#include "workers/value.hpp"

// GoogleTest support for code that runs in processes (issue 24, point 9).
namespace occasional::testing {

inline constexpr std::chrono::milliseconds kWait{20'000};

// Runs `zero` as process zero of a new system, the test process being its
// coordinator (occasional::run). A failed EXPECT_* or ASSERT_* in any
// process of the system, process zero included, fails the current test
// with its file:line (it is written to a file the moment it happens, so a
// process killed afterwards still reports it). Process zero ending other
// than normally fails the test too. Returns process zero's exit reason.
Map run_system(const std::function<void(Process&)>& zero);

// run_system's parts, for testing run_system itself: failures in the
// processes are collected, not reported.
struct ForwardedFailure {
  std::string file;
  int line = 0;
  std::string pid;
  std::string message;
};
struct SystemRun {
  Map reason;  // process zero's
  std::vector<ForwardedFailure> failures;
};
SystemRun run_system_collecting(const std::function<void(Process&)>& zero);
// Reports each as a failure of the current test, at its file:line.
void report(const std::vector<ForwardedFailure>& failures);

// The exit reason of `a` (it monitors `a`): its DOWN's reason, nullopt
// after `timeout`. Other messages stay in the inbox. For a process that may
// have exited already, spawn_and_wait: a monitor set after the exit gets
// noproc, as in Erlang.
std::optional<Map> wait_exit(Process& p, const Address& a,
                             std::chrono::milliseconds timeout = kWait);
// The reason in the DOWN of monitor `ref`, nullopt after `timeout`.
std::optional<Map> wait_down(Process& p, const Reference& ref,
                             std::chrono::milliseconds timeout = kWait);

// Spawns fn(args...) monitored and waits for its exit reason.
template <class F, class... A>
std::optional<Map> spawn_and_wait(Process& p, F&& fn, A&&... args) {
  auto spawned = p.spawn_monitor(std::forward<F>(fn), std::forward<A>(args)...);
  return wait_down(p, spawned.second);
}

// A reason's "kind" ("" if none) and a field of it as text, for EXPECT_EQ.
std::string kind(const std::optional<Map>& reason);
std::string field(const std::optional<Map>& reason, const char* key);

// Blocks until a message equal to `v` arrives (others stay), or fails the test.
void expect_message(Process& p, const Value& v, std::chrono::milliseconds timeout = kWait);

}  // namespace occasional::testing
