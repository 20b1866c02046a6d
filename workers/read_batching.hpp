#pragma once

namespace occasional::workers {

// How much to read per wake-up of a non-blocking descriptor that an Asio
// async_wait watches: the listener's accept queue, a control socket.
//
// Reading until EAGAIN costs one syscall more than the items read, and that
// last call sits between the work just done (a handoff, a `closed`) and the
// process going to sleep; a peer on the same CPU waits for that sleep. When
// items come one at a time, it is cheaper to take one per wake-up and wait
// again at once. Nothing is left behind: async_wait re-arms the descriptor
// in epoll (EPOLL_CTL_MOD; Asio's epoll_reactor::start_op issues it for
// every operation that is not speculative), and epoll reports a descriptor
// that still has data at once. WorkerLinkTest and the gateway test that
// queues connections behind a stopped coordinator fail if that changes.
//
// When items come in bursts, one epoll round per item costs more than the
// one EAGAIN per burst, so a sweep (reading until EAGAIN) every
// kSingleWakeups-th wake-up checks, and finding two or more items switches
// to sweeping on every wake-up until a sweep finds at most one again.
class ReadBatching {
 public:
  // After taking an item: true when this wake-up is done and the caller
  // should wait for the next one without reading again.
  bool wait_after_item() {
    ++items_;
    if (single_wakeups_ == 0) return false;
    --single_wakeups_;
    items_ = 0;
    return true;
  }

  // A read found nothing (EAGAIN): the caller waits for the next wake-up.
  void found_empty() {
    single_wakeups_ = items_ >= 2 ? 0 : kSingleWakeups;
    items_ = 0;
  }

  bool sweeping() const { return single_wakeups_ == 0; }

 private:
  static constexpr int kSingleWakeups = 16;
  int single_wakeups_ = 0;  // wake-ups with one item each until the next sweep
  int items_ = 0;           // taken in the current sweeping wake-up
};

}  // namespace occasional::workers
