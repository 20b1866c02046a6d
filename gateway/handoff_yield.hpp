#pragma once

namespace occasional::gateway {

// Whether to yield the CPU right after a lone handoff (one connection in a
// wake-up, given to a worker at once).
//
// The worker we just woke does not preempt us: on a CPU it shares with the
// coordinator it runs only once we have re-armed the listener, returned to
// the event loop and gone to sleep, and all of that sits between the accept
// and the worker holding the connection. A sched_yield right after the
// handoff lets it go first. When the worker runs on another CPU, the yield
// finds nothing else runnable and returns at once: a syscall for nothing.
// One such free yield proves little (a worker that has had more than its
// share of the CPU lately is not run before us even on a shared CPU), so
// after kFreeInARow free yields in a row the next kSkipAfterFree lone
// handoffs do not yield, and the one after tries again. A coordinator whose
// affinity is one CPU knows its workers share it (they inherit the mask):
// it yields after every lone handoff.
class HandoffYield {
 public:
  explicit HandoffYield(bool always = false) : always_(always) {}

  // Called once per lone handoff: true when this one should yield.
  bool due() {
    if (always_ || skip_ == 0) return true;
    --skip_;
    return false;
  }

  // After a yield: whether other work ran meanwhile.
  void yielded(bool shared) {
    free_in_a_row_ = shared ? 0 : free_in_a_row_ + 1;
    if (free_in_a_row_ >= kFreeInARow) {
      free_in_a_row_ = 0;
      skip_ = kSkipAfterFree;
    }
  }

  static constexpr int kFreeInARow = 3;
  static constexpr int kSkipAfterFree = 63;

 private:
  bool always_;
  int skip_ = 0;  // lone handoffs left before the next yield
  int free_in_a_row_ = 0;
};

}  // namespace occasional::gateway
