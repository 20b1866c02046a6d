#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "supervisor/exit_record.hpp"

namespace occasional::supervisor {

// Readiness `accepting` for one listen_fds worker process: looks whether it
// waits to accept on the listener (probe_accepting), often at first and then
// less and less, and says so once. A worker that cannot be looked at, or is
// not seen accepting by the deadline, is given up on instead: waiting for it
// could be waiting for ever, so it is to be taken as ready all the same.
class AcceptingWatch {
 public:
  struct Handlers {
    std::function<void()> on_accepting;
    // `why`: the probe's error, or that it was not seen in time.
    std::function<void(const std::string& why)> on_gave_up;
  };

  // A starting worker is looked at this often at first, then less and less.
  static constexpr Duration kFirstLook = std::chrono::milliseconds(10);
  static constexpr Duration kLongestLook = std::chrono::milliseconds(500);

  explicit AcceptingWatch(boost::asio::io_context& io) : timer_(io) {}
  AcceptingWatch(const AcceptingWatch&) = delete;
  AcceptingWatch& operator=(const AcceptingWatch&) = delete;

  // Watches `pid` for the listening socket with inode `listener` until
  // `give_up_at`; replaces any watch under way.
  void start(pid_t pid, ino_t listener, MonoTime give_up_at, Handlers handlers);
  // Nothing more is reported (the worker is ready, stopping, or gone).
  void cancel();

 private:
  void look_later();

  boost::asio::steady_timer timer_;
  pid_t pid_ = -1;
  ino_t listener_ = 0;
  MonoTime give_up_at_{};
  Duration every_{};
  Handlers handlers_;
  // A look that fell due may still be queued after a cancel: it is ignored.
  uint64_t generation_ = 0;
};

}  // namespace occasional::supervisor
