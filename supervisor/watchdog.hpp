#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>

#include "supervisor/exit_record.hpp"

namespace occasional::supervisor {

// systemd's WatchdogSec= for one process: once kicked (its READY=1 or a
// first WATCHDOG=1), the next WATCHDOG=1 must come within the period, or
// `on_timeout` runs.
class Watchdog {
 public:
  explicit Watchdog(boost::asio::io_context& io) : timer_(io) {}

  // Arms, or re-arms, for `period`: `on_timeout` runs once unless kicked
  // again in time (a kick drops the previous callback).
  void kick(Duration period, std::function<void()> on_timeout);
  bool armed() const { return armed_; }
  // The process is gone: nothing to wait for until the next one is kicked.
  void disarm();

 private:
  boost::asio::steady_timer timer_;
  bool armed_ = false;
};

}  // namespace occasional::supervisor
