#pragma once

#include <atomic>
#include <cstdint>
#include <system_error>

#include "workers/unique_fd.hpp"

namespace occasional::workers {

// A shared page holding one number: how many connections a worker has
// finished. It replaces one `closed` message per connection, and with it a
// sendmsg in the worker and a wake-up and a recvmsg in the coordinator, by an
// atomic increment (docs/protocol.md, `closed_counter`).
//
// The coordinator creates it (a memfd) when a worker's `hello` asks for one
// and sends the fd in a `closed_counter` message; the worker maps it and calls
// add_one() where it would have sent `closed`. The worker keeps only the
// mapping; the coordinator keeps its fd too, so that a coordinator upgrade
// (an execve, which drops mappings) can map it again. The value is a 64-bit unsigned integer in host
// byte order at offset 0, only ever incremented by one. The file is sealed
// against shrinking and growing (F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_SEAL), so
// the page stays mapped whatever the worker does with its fd; its contents
// are still the worker's to write, and the coordinator checks what it reads
// (WorkerLink::counted_closed).
class ClosedCounter {
 public:
  ClosedCounter() = default;
  ~ClosedCounter();
  ClosedCounter(ClosedCounter&& other) noexcept;
  ClosedCounter& operator=(ClosedCounter&& other) noexcept;
  ClosedCounter(const ClosedCounter&) = delete;
  ClosedCounter& operator=(const ClosedCounter&) = delete;

  // Coordinator: a new counter at zero, and the fd to send (close it once sent).
  static ClosedCounter create(UniqueFd& fd_to_send, std::error_code& ec);
  // Worker: maps the fd a `closed_counter` message brought. Checks it is a
  // shared memory file large enough for the counter.
  static ClosedCounter map(int fd, std::error_code& ec);

  bool valid() const { return value_ != nullptr; }
  void add_one() { std::atomic_ref<uint64_t>(*value_).fetch_add(1, std::memory_order_relaxed); }
  uint64_t value() const {
    return valid() ? std::atomic_ref<uint64_t>(*value_).load(std::memory_order_relaxed) : 0;
  }

 private:
  explicit ClosedCounter(uint64_t* value) : value_(value) {}
  uint64_t* value_ = nullptr;
};

}  // namespace occasional::workers
