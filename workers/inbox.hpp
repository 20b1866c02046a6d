#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <optional>
#include <vector>

#include "workers/value.hpp"

namespace occasional {

// A process's one queue of incoming messages, with Erlang's selective
// receive: the first message a predicate accepts is taken out, the others
// stay where they were, in arrival order. It does no I/O: whoever owns it
// supplies `wait_for_more`, which adds messages (a process reads its channels
// there), so the queue's rules are tested without processes.
class Inbox {
 public:
  using Clock = std::chrono::steady_clock;
  using Deadline = std::optional<Clock::time_point>;  // nullopt: wait for ever
  using Match = std::function<bool(const Value&)>;
  // Adds what has arrived. Returns false once the deadline has passed: what
  // it added by then is still looked at once more. With a deadline already
  // past it must still look once, without blocking (a timeout of 0 polls).
  using WaitForMore = std::function<bool(Deadline)>;

  void push(Value message) { messages_.push_back(std::move(message)); }
  // The oldest message; the inbox must not be empty.
  Value pop_front() {
    Value out = std::move(messages_.front());
    messages_.pop_front();
    return out;
  }
  size_t size() const { return messages_.size(); }
  bool empty() const { return messages_.empty(); }

  // The first message from position `from` on that `match` accepts (any
  // message when `match` is empty), taken out. When none does, `from` is
  // set to size(): a later call with the same predicate skips what it has
  // already refused.
  std::optional<Value> take(const Match& match, size_t& from);

  // Selective receive: take, and while nothing matches, wait for more.
  std::optional<Value> receive(const Match& match, Deadline deadline,
                               const WaitForMore& wait_for_more);

  // Removes every message `match` accepts; returns how many (demonitor's flush).
  size_t remove_if(const Match& match);
  // Takes out every message `match` accepts, in arrival order (a socket's
  // messages, when it is handed to another process).
  std::vector<Value> extract_if(const Match& match);

 private:
  std::deque<Value> messages_;
};

// A deadline `timeout` from now; negative timeouts are 0.
inline Inbox::Deadline deadline_after(std::chrono::milliseconds timeout) {
  return Inbox::Clock::now() + std::max(timeout, std::chrono::milliseconds(0));
}

}  // namespace occasional
